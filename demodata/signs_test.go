package demodata

import (
	"math"
	"testing"
)

const (
	testW, testH = 256, 192
	signImages   = 6 // images averaged per class
)

// metrics are per-image measurements of the visible signs; each is
// averaged over signImages images of a class.
type metrics struct {
	discPale   float64 // mean blue inside the disc (pallor)
	cupFrac    float64 // fraction of disc pixels that are pale (cup)
	contrast   float64 // mean |horizontal gradient| in the retina
	yellow     float64 // yellow pixels outside the disc
	macYellow  float64 // yellow pixels within 0.3R of the fovea
	foveaR     float64 // mean red at the fovea
	foveaG     float64 // mean green within 0.1R of the fovea
	periDark   float64 // very dark pixels in the mid-periphery
	grey       float64 // desaturated pixels outside the disc
	discBright float64 // bright disc-coloured pixels around the disc
	ppa        float64 // pale pixels in a ring around the disc
	haem       float64 // dark-red pixels in the retina
	pale       float64 // pale (scar) pixels outside the disc
	arteryMass float64 // sum of the artery mask
	discMargin float64 // mean |gradient| in the disc margin band
}

func measure(t testing.TB, class string, index int) metrics {
	t.Helper()
	s := newScene(class, index, testW, testH, 7)
	c := newCanvas(testW, testH)
	s.render(c)
	img := c.img
	var m metrics
	var nDisc, nRet, nFov, nFovG, nBand float64
	for y := 0; y < testH; y++ {
		for x := 0; x < testW; x++ {
			o := img.PixOffset(x, y)
			r, g, b := float64(img.Pix[o]), float64(img.Pix[o+1]), float64(img.Pix[o+2])
			fx, fy := float64(x)+0.5, float64(y)+0.5
			rr := math.Hypot(fx-s.cx, fy-s.cy) / s.R
			if rr > 0.95 {
				continue
			}
			q := s.discDist(fx, fy)
			// Distance from the disc in units of a normal disc radius.
			qn := q * s.discRX / (0.125 * s.R)
			fd := math.Hypot(fx-s.fovX, fy-s.fovY) / s.R
			if q < 0.8 {
				m.discPale += b
				if b > 150 {
					m.cupFrac++
				}
				nDisc++
			}
			if rr < 0.85 && x+1 < testW {
				o2 := img.PixOffset(x+1, y)
				m.contrast += math.Abs(float64(img.Pix[o2])-r) + math.Abs(float64(img.Pix[o2+1])-g)
				nRet++
			}
			if q > 0.9 && q < 1.1 && x+1 < testW {
				o2 := img.PixOffset(x+1, y)
				m.discMargin += math.Abs(float64(img.Pix[o2+1]) - g)
				nBand++
			}
			yellow := r > 170 && g > 0.62*r && b < 0.75*g
			if yellow && qn > 1.6 {
				m.yellow++
				if fd < 0.3 {
					m.macYellow++
				}
			}
			if fd < 0.03 {
				m.foveaR += r
				nFov++
			}
			if fd < 0.1 {
				m.foveaG += g
				nFovG++
			}
			if rr > 0.45 && rr < 0.8 && r < 60 {
				m.periDark++
			}
			mx := math.Max(r, math.Max(g, b))
			mn := math.Min(r, math.Min(g, b))
			if qn > 1.6 && mx > 60 && mx-mn < 0.4*mx {
				m.grey++
			}
			if qn < 2.2 && r > 200 && g > 120 {
				m.discBright++
			}
			if qn > 1.05 && qn < 2.2 && b > 120 {
				m.ppa++
			}
			if r < 150 && g < 0.33*r && qn > 1.2 {
				m.haem++
			}
			if qn > 1.6 && r > 180 && b > 120 {
				m.pale++
			}
		}
	}
	m.discPale /= nDisc
	m.cupFrac /= nDisc
	m.contrast /= nRet
	m.foveaR /= nFov
	m.foveaG /= nFovG
	m.discMargin /= nBand
	for _, v := range c.artery {
		m.arteryMass += float64(v) / 255
	}
	return m
}

func classMetrics(t testing.TB, class string) metrics {
	var sum metrics
	for i := range signImages {
		m := measure(t, class, i)
		sum.discPale += m.discPale
		sum.cupFrac += m.cupFrac
		sum.contrast += m.contrast
		sum.yellow += m.yellow
		sum.macYellow += m.macYellow
		sum.foveaR += m.foveaR
		sum.foveaG += m.foveaG
		sum.periDark += m.periDark
		sum.grey += m.grey
		sum.discBright += m.discBright
		sum.ppa += m.ppa
		sum.haem += m.haem
		sum.pale += m.pale
		sum.arteryMass += m.arteryMass
		sum.discMargin += m.discMargin
	}
	k := 1.0 / signImages
	return metrics{
		sum.discPale * k, sum.cupFrac * k, sum.contrast * k, sum.yellow * k, sum.macYellow * k,
		sum.foveaR * k, sum.foveaG * k, sum.periDark * k, sum.grey * k, sum.discBright * k,
		sum.ppa * k, sum.haem * k, sum.pale * k, sum.arteryMass * k, sum.discMargin * k,
	}
}

// TestClassesVisiblyDiffer asserts that every disease class shows its own
// sign relative to normal images, measured on small renders.
func TestClassesVisiblyDiffer(t *testing.T) {
	normal := classMetrics(t, "normal")
	tests := []struct {
		class  string
		sign   string
		metric func(metrics) float64
		ok     func(got, normal float64) bool
	}{
		{"optic_atrophy", "very pale disc (mean blue in disc)", func(m metrics) float64 { return m.discPale },
			func(g, n float64) bool { return g >= n+60 }},
		{"glaucoma", "large pale cup (pale fraction of disc)", func(m metrics) float64 { return m.cupFrac },
			func(g, n float64) bool { return g >= n+0.3 }},
		{"cataract", "clouding: low local contrast", func(m metrics) float64 { return m.contrast },
			func(g, n float64) bool { return g <= 0.5*n }},
		{"diabetic_retinopathy", "hard exudates (yellow pixels)", func(m metrics) float64 { return m.yellow },
			func(g, n float64) bool { return g >= n+15 }},
		{"amd", "macular drusen (yellow pixels near fovea)", func(m metrics) float64 { return m.macYellow },
			func(g, n float64) bool { return g >= n+20 }},
		{"macular_hole", "dark foveal hole (mean red at fovea)", func(m metrics) float64 { return m.foveaR },
			func(g, n float64) bool { return g <= n-25 }},
		{"central_serous_chorioretinopathy", "macular blister (green near fovea)", func(m metrics) float64 { return m.foveaG },
			func(g, n float64) bool { return g >= 1.15*n }},
		{"retinitis_pigmentosa", "bone spicules (dark mid-periphery)", func(m metrics) float64 { return m.periDark },
			func(g, n float64) bool { return g >= n+100 }},
		{"retinal_detachment", "grey elevated retina (desaturated pixels)", func(m metrics) float64 { return m.grey },
			func(g, n float64) bool { return g >= n+500 }},
		{"chorioretinitis", "pale scars", func(m metrics) float64 { return m.pale },
			func(g, n float64) bool { return g >= n+50 }},
		{"retinal_vein_occlusion", "haemorrhages along a vein (dark-red pixels)", func(m metrics) float64 { return m.haem },
			func(g, n float64) bool { return g >= 1.4*n }},
		{"hypertensive_retinopathy", "narrowed arteries (artery mask mass)", func(m metrics) float64 { return m.arteryMass },
			func(g, n float64) bool { return g <= 0.6*n }},
		{"papilledema", "blurred disc margin (margin gradient)", func(m metrics) float64 { return m.discMargin },
			func(g, n float64) bool { return g <= 0.6*n }},
		{"pathological_myopia", "peripapillary atrophy (pale ring by disc)", func(m metrics) float64 { return m.ppa },
			func(g, n float64) bool { return g >= n+20 }},
	}
	seen := map[string]bool{"normal": true}
	for _, tc := range tests {
		seen[tc.class] = true
		t.Run(tc.class, func(t *testing.T) {
			got, base := tc.metric(classMetrics(t, tc.class)), tc.metric(normal)
			if !tc.ok(got, base) {
				t.Errorf("%s: %s = %.3g, normal = %.3g: sign not visible", tc.class, tc.sign, got, base)
			}
		})
	}
	for _, c := range Classes() {
		if !seen[c] {
			t.Errorf("class %s has no visible-sign check", c)
		}
	}
}
