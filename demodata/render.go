package demodata

import (
	"hash/fnv"
	"image"
	"math"
	"math/rand/v2"
)

// rgb is a linear-ish 0..255 colour used while drawing.
type rgb struct{ r, g, b float64 }

func (c rgb) scale(k float64) rgb { return rgb{c.r * k, c.g * k, c.b * k} }

func lerpRGB(a, b rgb, t float64) rgb {
	return rgb{a.r + (b.r-a.r)*t, a.g + (b.g-a.g)*t, a.b + (b.b-a.b)*t}
}

// canvas is one worker's reusable drawing state: the RGBA pixel buffer, two
// vessel masks (max-combined so that overlapping segments do not darken)
// and a scratch buffer for blurs.
type canvas struct {
	w, h   int
	img    *image.RGBA
	artery []uint8
	vein   []uint8
	tmp    []uint8
}

func newCanvas(w, h int) *canvas {
	return &canvas{
		w: w, h: h,
		img:    image.NewRGBA(image.Rect(0, 0, w, h)),
		artery: make([]uint8, w*h),
		vein:   make([]uint8, w*h),
	}
}

func (c *canvas) reset() {
	clear(c.artery)
	clear(c.vein)
	// Pix is fully overwritten by the background pass.
}

// vpt is one recorded point of a main vein (used to place lesions along it).
type vpt struct{ x, y, w, heading float64 }

// scene holds the geometry and appearance parameters of one image. All
// random choices come from rng, seeded by (seed, class, index).
type scene struct {
	class string
	rng   *rand.Rand
	w, h  int

	cx, cy, R      float64 // retina circle
	dir            float64 // +1: disc right of the fovea (right eye), -1: left eye
	bright         float64
	base           rgb
	illumX, illumY float64
	fovX, fovY     float64
	discX, discY   float64
	discRX, discRY float64
	discSoft       float64
	cupX, cupY     float64
	cdr            float64 // cup/disc ratio; 0 = no visible cup
	rim, cup       rgb
	tess           float64 // tessellation strength (myopia)
	ppa            bool    // peripapillary atrophy crescent
	arteryW        float64 // artery width multiplier
	veinW          float64 // vein width multiplier
	tort           float64 // vessel tortuosity multiplier
	rvoArcade      int     // which temporal vein is occluded (0 superior, 1 inferior), -1 none
	grainSeed      uint32

	coarse, fine, medium *valueNoise
	veins                map[string][]vpt
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func imageRNG(seed uint64, class string, index int) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(class))
	s1 := mix64(seed ^ 0x9e3779b97f4a7c15)
	s2 := mix64(h.Sum64() ^ mix64(uint64(index)+0x632be59bd9b4e019))
	return rand.New(rand.NewPCG(s1, s2^s1))
}

func uniform(r *rand.Rand, a, b float64) float64 { return a + (b-a)*r.Float64() }

func newScene(class string, index, w, h int, seed uint64) *scene {
	r := imageRNG(seed, class, index)
	s := &scene{class: class, rng: r, w: w, h: h}
	fw, fh := float64(w), float64(h)
	s.R = 0.47 * math.Min(fw, fh) * uniform(r, 0.97, 1.02)
	s.cx = fw/2 + uniform(r, -0.01, 0.01)*fw
	s.cy = fh/2 + uniform(r, -0.01, 0.01)*fh
	s.dir = 1
	if r.IntN(2) == 0 {
		s.dir = -1
	}
	R := s.R
	s.bright = uniform(r, 0.85, 1.12)
	// Fundus pigmentation varies from light orange to dark red-brown.
	pig := r.Float64()
	s.base = lerpRGB(rgb{232, 122, 62}, rgb{205, 88, 42}, pig)
	s.illumX = s.cx + uniform(r, -0.06, 0.06)*R
	s.illumY = s.cy + uniform(r, -0.06, 0.06)*R

	rot := r.NormFloat64() * 0.07
	s.fovX = s.cx - s.dir*uniform(r, 0.0, 0.12)*R
	s.fovY = s.cy + uniform(r, -0.04, 0.06)*R
	dd := uniform(r, 0.66, 0.76) * R
	ox, oy := s.dir*dd, -0.07*R
	cs, sn := math.Cos(rot), math.Sin(rot)
	s.discX = s.fovX + ox*cs - oy*sn
	s.discY = s.fovY + ox*sn + oy*cs
	s.discRX = uniform(r, 0.115, 0.135) * R
	s.discRY = s.discRX * uniform(r, 1.04, 1.14)
	s.discSoft = 0.16
	s.cdr = uniform(r, 0.28, 0.42)
	s.rim = rgb{240, 158, 98}
	s.cup = rgb{254, 226, 172}
	s.arteryW, s.veinW, s.tort = 1, 1, 1
	s.rvoArcade = -1

	switch class {
	case "glaucoma":
		s.cdr = uniform(r, 0.72, 0.86)
		s.cup = rgb{255, 240, 205}
		s.rim = rgb{238, 150, 95}
	case "optic_atrophy":
		s.rim = rgb{252, 243, 228}
		s.cup = rgb{255, 250, 240}
		s.discSoft = 0.06
		s.arteryW = 0.75
	case "papilledema":
		s.discRX *= 1.35
		s.discRY *= 1.35
		s.discSoft = 0.45
		s.cdr = 0
		s.rim = rgb{240, 150, 92}
		s.veinW = 1.3
		s.tort = 1.6
	case "retinitis_pigmentosa":
		s.rim = rgb{246, 215, 160}
		s.arteryW, s.veinW = 0.55, 0.65
	case "hypertensive_retinopathy":
		s.arteryW = 0.5
		s.tort = 0.6
	case "pathological_myopia":
		s.tess = uniform(r, 0.7, 1.0)
		s.ppa = true
		s.discRX *= 0.82 // tilted disc
		s.base = lerpRGB(s.base, rgb{238, 138, 80}, 0.5)
	case "retinal_vein_occlusion":
		s.rvoArcade = r.IntN(2)
	}
	// The cup sits slightly temporal (towards the fovea) in the disc.
	s.cupX = s.discX - s.dir*0.12*s.discRX
	s.cupY = s.discY + uniform(r, -0.05, 0.05)*s.discRY
	s.grainSeed = uint32(r.Uint64()) | 1

	s.coarse = newValueNoise(r, w, h, math.Max(4, R/4))
	s.fine = newValueNoise(r, w, h, math.Max(2, R/55))
	if s.tess > 0 {
		s.medium = newValueNoise(r, w, h, math.Max(2, R/11))
	}
	s.veins = map[string][]vpt{}
	return s
}

func (s *scene) render(c *canvas) {
	c.reset()
	s.background(c)
	s.drawDisc(c)
	s.deepLesions(c)
	s.drawVessels(c)
	s.composite(c)
	s.surfaceLesions(c)
	s.globalEffects(c)
}

// valueNoise is smooth 2D value noise on a coarse random grid.
type valueNoise struct {
	gw, gh int
	cell   float64
	inv    float64
	grid   []float64
}

func newValueNoise(r *rand.Rand, w, h int, cell float64) *valueNoise {
	n := &valueNoise{cell: cell, inv: 1 / cell}
	n.gw = int(float64(w)/cell) + 3
	n.gh = int(float64(h)/cell) + 3
	n.grid = make([]float64, n.gw*n.gh)
	for i := range n.grid {
		n.grid[i] = r.Float64()
	}
	return n
}

// row fills dst (len gw) with the noise interpolated vertically at y.
func (n *valueNoise) row(y float64, dst []float64) {
	gy := y * n.inv
	iy := int(gy)
	if iy > n.gh-2 {
		iy = n.gh - 2
	}
	f := gy - float64(iy)
	f = f * f * (3 - 2*f)
	a := n.grid[iy*n.gw : iy*n.gw+n.gw]
	b := n.grid[(iy+1)*n.gw : (iy+1)*n.gw+n.gw]
	for i := range dst {
		dst[i] = a[i] + (b[i]-a[i])*f
	}
}

func (n *valueNoise) at(x, y float64) float64 {
	if x < 0 {
		x = 0
	}
	if y < 0 {
		y = 0
	}
	gx, gy := x*n.inv, y*n.inv
	ix, iy := int(gx), int(gy)
	if ix > n.gw-2 {
		ix = n.gw - 2
	}
	if iy > n.gh-2 {
		iy = n.gh - 2
	}
	fx, fy := gx-float64(ix), gy-float64(iy)
	fx = fx * fx * (3 - 2*fx)
	fy = fy * fy * (3 - 2*fy)
	g := n.grid
	a := g[iy*n.gw+ix] + (g[iy*n.gw+ix+1]-g[iy*n.gw+ix])*fx
	b := g[(iy+1)*n.gw+ix] + (g[(iy+1)*n.gw+ix+1]-g[(iy+1)*n.gw+ix])*fx
	return a + (b-a)*fy
}

func clamp8(v float64) uint8 {
	if v <= 0 {
		return 0
	}
	if v >= 255 {
		return 255
	}
	return uint8(v + 0.5)
}

func clamp01(v float64) float64 {
	if v < 0 {
		return 0
	}
	if v > 1 {
		return 1
	}
	return v
}

func smoothstep(e0, e1, x float64) float64 {
	t := clamp01((x - e0) / (e1 - e0))
	return t * t * (3 - 2*t)
}

// background draws the black surround and the retina: base colour with
// radial falloff, choroidal texture, optional tessellation and the darker
// macula with its fovea.
func (s *scene) background(c *canvas) {
	w, h := c.w, c.h
	pix, stride := c.img.Pix, c.img.Stride
	R := s.R
	R2 := R * R
	edge := math.Max(1.2, 0.012*R)
	rin2 := (R - edge) * (R - edge)
	invR2 := 1 / R2
	rowC := make([]float64, s.coarse.gw)
	rowF := make([]float64, s.fine.gw)
	var rowM []float64
	if s.medium != nil {
		rowM = make([]float64, s.medium.gw)
	}
	mac2 := (0.30 * R) * (0.30 * R)
	invMac2 := 1 / mac2
	fov2 := (0.06 * R) * (0.06 * R)
	invFov2 := 1 / fov2
	refl2 := math.Max(0.6, 0.007*R)
	refl2 *= refl2
	br, bg, bb := s.base.r*s.bright, s.base.g*s.bright, s.base.b*s.bright
	tess := s.tess
	// Per-column terms are the same for every row: precompute them.
	type column struct {
		dx2, tx, mx2 float64
		ic, iF, iM   int
		fc, fF, fM   float64
	}
	split := func(gx float64, n int) (int, float64) {
		i := min(int(gx), n-2)
		f := gx - float64(i)
		return i, f * f * (3 - 2*f)
	}
	cols := make([]column, w)
	for x := range cols {
		fx := float64(x) + 0.5
		col := &cols[x]
		col.dx2 = (fx - s.cx) * (fx - s.cx)
		col.tx = (fx - s.illumX) * (fx - s.illumX) * invR2
		col.mx2 = (fx - s.fovX) * (fx - s.fovX)
		col.ic, col.fc = split(fx*s.coarse.inv, s.coarse.gw)
		col.iF, col.fF = split(fx*s.fine.inv, s.fine.gw)
		if s.medium != nil {
			col.iM, col.fM = split(fx*s.medium.inv, s.medium.gw)
		}
	}
	for y := 0; y < h; y++ {
		line := pix[y*stride : y*stride+w*4]
		fy := float64(y) + 0.5
		dy := fy - s.cy
		dy2 := dy * dy
		if dy2 >= R2 {
			for i := 0; i < len(line); i += 4 {
				line[i], line[i+1], line[i+2], line[i+3] = 0, 0, 0, 255
			}
			continue
		}
		half := math.Sqrt(R2 - dy2)
		x0 := max(int(s.cx-half), 0)
		x1 := min(int(s.cx+half)+1, w)
		for i := 0; i < x0*4; i += 4 {
			line[i], line[i+1], line[i+2], line[i+3] = 0, 0, 0, 255
		}
		for i := x1 * 4; i < len(line); i += 4 {
			line[i], line[i+1], line[i+2], line[i+3] = 0, 0, 0, 255
		}
		s.coarse.row(fy, rowC)
		s.fine.row(fy, rowF)
		if rowM != nil {
			s.medium.row(fy, rowM)
		}
		idy := fy - s.illumY
		idy2 := idy * idy * invR2
		mdy := fy - s.fovY
		mdy2 := mdy * mdy
		for x := x0; x < x1; x++ {
			o := x * 4
			col := &cols[x]
			r2 := col.dx2 + dy2
			if r2 >= R2 {
				line[o], line[o+1], line[o+2], line[o+3] = 0, 0, 0, 255
				continue
			}
			a := 1.0
			if r2 > rin2 {
				a = (R - math.Sqrt(r2)) / edge
			}
			t := col.tx + idy2
			t2 := t * t
			fr := max(1-0.26*t-0.20*t2, 0.10)
			fg := max(1-0.40*t-0.28*t2, 0.06)
			fb := max(1-0.42*t-0.26*t2, 0.06)
			nc := rowC[col.ic] + (rowC[col.ic+1]-rowC[col.ic])*col.fc
			nf := rowF[col.iF] + (rowF[col.iF+1]-rowF[col.iF])*col.fF
			tex := 0.90 + 0.20*nc + 0.07*(nf-0.5)
			fr *= tex
			fg *= tex * (0.96 + 0.08*nc)
			fb *= tex
			if tess > 0 {
				nm := 0.75*(rowM[col.iM]+(rowM[col.iM+1]-rowM[col.iM])*col.fM) + 0.25*nf
				ridge := 1 - math.Abs(2*nm-1)
				ridge *= ridge
				// Orange choroidal vessels between dark pigmented spaces.
				k := tess * (0.35 + 0.65*t)
				fr *= 1 - k*(0.22-0.32*ridge)
				fg *= 1 - k*(0.38-0.52*ridge)
				fb *= 1 - k*(0.32-0.42*ridge)
			}
			md2 := col.mx2 + mdy2
			if md2 < mac2 {
				m := 1 - md2*invMac2
				m *= m
				fr *= 1 - 0.16*m
				fg *= 1 - 0.30*m
				fb *= 1 - 0.26*m
				if md2 < fov2 {
					f := 1 - md2*invFov2
					f *= f
					fr *= 1 - 0.12*f
					fg *= 1 - 0.22*f
					fb *= 1 - 0.15*f
					if md2 < refl2 {
						fr, fg, fb = fr*1.12, fg*1.35, fb*1.35
					}
				}
			}
			line[o] = clamp8(br * fr * a)
			line[o+1] = clamp8(bg * fg * a)
			line[o+2] = clamp8(bb * fb * a)
			line[o+3] = 255
		}
	}
}

// bbox returns the clipped integer pixel box around (x, y) with radius r.
func (c *canvas) bbox(x, y, rx, ry float64) (x0, y0, x1, y1 int) {
	x0 = max(int(math.Floor(x-rx)), 0)
	y0 = max(int(math.Floor(y-ry)), 0)
	x1 = min(int(math.Ceil(x+rx))+1, c.w)
	y1 = min(int(math.Ceil(y+ry))+1, c.h)
	return
}

// drawDisc draws the optic disc (rim and cup) and, for myopia, the
// peripapillary atrophy crescent on its temporal side.
func (s *scene) drawDisc(c *canvas) {
	ext := 1 + s.discSoft + 0.05
	if s.ppa {
		ext = 2.0
	}
	x0, y0, x1, y1 := c.bbox(s.discX, s.discY, s.discRX*ext, s.discRY*ext)
	pix, stride := c.img.Pix, c.img.Stride
	lum := math.Min(s.bright*1.04, 1.1)
	rim, cup := s.rim.scale(lum), s.cup.scale(lum)
	ppaCol := rgb{232, 212, 172}.scale(lum)
	pigm := rgb{95, 55, 35}
	// PPA ellipse: shifted towards the fovea.
	px := s.discX - s.dir*0.42*s.discRX
	prx, pry := s.discRX*1.45, s.discRY*1.08
	soft := s.discSoft
	cs := 0.08
	for y := y0; y < y1; y++ {
		fy := float64(y) + 0.5
		v := (fy - s.discY) / s.discRY
		for x := x0; x < x1; x++ {
			fx := float64(x) + 0.5
			u := (fx - s.discX) / s.discRX
			q := math.Sqrt(u*u + v*v)
			a := 1 - smoothstep(1-soft, 1+soft, q)
			o := y*stride + x*4
			p := rgb{float64(pix[o]), float64(pix[o+1]), float64(pix[o+2])}
			if p.r == 0 && p.g == 0 && p.b == 0 {
				continue
			}
			if s.ppa && a < 1 {
				pu := (fx - px) / prx
				pv := (fy - s.discY) / pry
				pq := math.Sqrt(pu*pu + pv*pv)
				pa := 1 - smoothstep(0.94, 1.02, pq)
				if pa > 0 {
					// Pigmented border ring of the crescent.
					ring := 1 - smoothstep(0.0, 0.09, math.Abs(pq-0.93))
					col := lerpRGB(ppaCol, pigm, ring*0.7)
					p = lerpRGB(p, col, pa*(1-a))
				}
			}
			if a > 0 {
				col := rim
				if s.cdr > 0 {
					cu := (fx - s.cupX) / (s.cdr * s.discRX)
					cv := (fy - s.cupY) / (s.cdr * s.discRY)
					qc := math.Sqrt(cu*cu + cv*cv)
					ca := 1 - smoothstep(1-cs/s.cdr, 1+cs/s.cdr, qc)
					col = lerpRGB(rim, cup, ca)
				}
				// Slightly paler temporal half, mild radial shading.
				col = col.scale(1 - 0.06*q*q)
				p = lerpRGB(p, col, a)
			}
			pix[o], pix[o+1], pix[o+2] = clamp8(p.r), clamp8(p.g), clamp8(p.b)
		}
	}
}

// composite applies the vessel masks (multiplicative darkening, arteries
// lighter than veins) and adds per-pixel sensor grain.
func (s *scene) composite(c *canvas) {
	artF := [3]float64{0.80, 0.56, 0.62}
	veinF := [3]float64{0.60, 0.36, 0.46}
	var ta, tv [3][256]uint32
	for m := 0; m < 256; m++ {
		a := float64(m) / 255
		for ch := 0; ch < 3; ch++ {
			ta[ch][m] = uint32((1-a*(1-artF[ch]))*256 + 0.5)
			tv[ch][m] = uint32((1-a*(1-veinF[ch]))*256 + 0.5)
		}
	}
	pix, stride := c.img.Pix, c.img.Stride
	y0 := max(int(s.cy-s.R)-1, 0)
	y1 := min(int(s.cy+s.R)+2, c.h)
	rnd := s.grainSeed
	for y := y0; y < y1; y++ {
		line := pix[y*stride : y*stride+c.w*4]
		am := c.artery[y*c.w : (y+1)*c.w]
		vm := c.vein[y*c.w : (y+1)*c.w]
		for x := 0; x < c.w; x++ {
			o := x * 4
			r, g, b := uint32(line[o]), uint32(line[o+1]), uint32(line[o+2])
			if r|g|b == 0 {
				continue
			}
			if ma, mv := am[x], vm[x]; ma|mv != 0 {
				r = (r * ta[0][ma] * tv[0][mv]) >> 16
				g = (g * ta[1][ma] * tv[1][mv]) >> 16
				b = (b * ta[2][ma] * tv[2][mv]) >> 16
			}
			rnd ^= rnd << 13
			rnd ^= rnd >> 17
			rnd ^= rnd << 5
			n := int32(rnd&7) - 3
			line[o] = add8(r, n)
			line[o+1] = add8(g, n)
			line[o+2] = add8(b, n)
		}
	}
}

func add8(v uint32, n int32) uint8 {
	x := int32(v) + n
	if x < 0 {
		return 0
	}
	if x > 255 {
		return 255
	}
	return uint8(x)
}
