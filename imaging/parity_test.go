package imaging

import (
	"image"
	"image/color"
	"math"
	"path/filepath"
	"testing"
)

// Parity targets against Pillow, the same for every format: what the JPEG
// golden files are held to (TestGoldenParity).
const (
	parityMAE = 0.5
	parityMax = 8
)

// TestFormatGoldenParity holds the non-JPEG formats to the JPEG targets
// against Pillow's Image.open(f).convert("RGB").resize((224, 224),
// BILINEAR), on the golden pairs testdata/make_refs.py made with Debian's
// python3-pil (libwebp 1.2.4): a lossy WebP, a PNG whose alpha is 0, 128,
// 255 and a ramp over coloured pixels, and that PNG as a lossy WebP with
// alpha.
func TestFormatGoldenParity(t *testing.T) {
	for _, tc := range []struct {
		name, src, ref string
		format         string
	}{
		{"lossy webp q90", "fundus_q90.webp", "fundus_q90.224.png", FormatWebP},
		{"png with alpha", "alpha.png", "alpha.224.png", FormatPNG},
		{"lossy webp q90 with alpha", "alpha_q90.webp", "alpha_q90.224.png", FormatWebP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := readFile(t, filepath.Join("testdata", tc.src))
			want := readPNGRGB(t, readFile(t, filepath.Join("testdata", tc.ref)))
			res, err := Decode(src, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			if res.Format != tc.format || res.Width != 224 || res.Height != 224 {
				t.Fatalf("got %s %dx%d", res.Format, res.Width, res.Height)
			}
			mae, max := diff(res.RGB, want.Pix)
			t.Logf("%s: MAE %.3f max %d against Pillow", tc.src, mae, max)
			if mae > parityMAE || max > parityMax {
				t.Errorf("%s: parity MAE %.3f max %d, want <= %v / %d", tc.src, mae, max, parityMAE, parityMax)
			}
		})
	}
}

// TestWebPExactAtNativeSize compares the decode itself, before any resize,
// with Pillow's convert("RGB") at the stored size: libwebp's YUV->RGB and
// fancy chroma upsampling are reproduced bit for bit, on odd and even sizes
// (the last column and row take the edge cases), with and without alpha.
func TestWebPExactAtNativeSize(t *testing.T) {
	for _, tc := range []struct{ src, ref string }{
		{"odd_q75.webp", "odd_q75.rgb.png"},
		{"even_alpha_q75.webp", "even_alpha_q75.rgb.png"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			want := readPNGRGB(t, readFile(t, filepath.Join("testdata", tc.ref)))
			got, err := decodeFull(FormatWebP, readFile(t, filepath.Join("testdata", tc.src)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Width != want.Width || got.Height != want.Height {
				t.Fatalf("size %dx%d, want %dx%d", got.Width, got.Height, want.Width, want.Height)
			}
			if mae, max := diff(got.Pix, want.Pix); max != 0 {
				for i := range got.Pix {
					if got.Pix[i] != want.Pix[i] {
						p := i / 3
						t.Errorf("first difference at (%d,%d) channel %d: %d, Pillow %d", p%got.Width, p/got.Width, i%3, got.Pix[i], want.Pix[i])
						break
					}
				}
				t.Fatalf("MAE %.3f max %d, want an exact match", mae, max)
			}
		})
	}
}

// TestYUVToRGBLimitedRange pins the colours the issue reported: libwebp's
// BT.601 limited range maps Y 16 to black and Y 235 to white, where the
// full-range formula gave 16 and 235; and the fixed point stays within one
// level of the real-valued BT.601 formula over the whole legal range.
func TestYUVToRGBLimitedRange(t *testing.T) {
	for _, tc := range []struct {
		y, u, v int
		want    [3]byte
	}{
		{16, 128, 128, [3]byte{0, 0, 0}},
		{235, 128, 128, [3]byte{255, 255, 255}},
		{0, 128, 128, [3]byte{0, 0, 0}},
	} {
		var got [3]byte
		yuvToRGB(got[:], tc.y, tc.u, tc.v)
		if got != tc.want {
			t.Errorf("YUV(%d,%d,%d) = %v, want %v", tc.y, tc.u, tc.v, got, tc.want)
		}
	}
	clip := func(f float64) float64 { return math.Max(0, math.Min(255, f)) }
	for y := 16; y <= 235; y += 3 {
		for u := 16; u <= 240; u += 7 {
			for v := 16; v <= 240; v += 7 {
				yy, uu, vv := 1.164*float64(y-16), float64(u-128), float64(v-128)
				want := [3]float64{clip(yy + 1.596*vv), clip(yy - 0.391*uu - 0.813*vv), clip(yy + 2.018*uu)}
				var got [3]byte
				yuvToRGB(got[:], y, u, v)
				for c := range 3 {
					if math.Abs(float64(got[c])-want[c]) > 1 {
						t.Fatalf("YUV(%d,%d,%d) channel %d = %d, BT.601 says %.2f", y, u, v, c, got[c], want[c])
					}
				}
			}
		}
	}
}

// TestAlphaIsDropped checks per pixel, for every decoder type that carries
// alpha, that the stored colour survives whatever the alpha (Pillow's
// convert("RGB")), and that premultiplied TIFF pixels are unpremultiplied
// with Pillow's rule.
func TestAlphaIsDropped(t *testing.T) {
	nrgba := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	copy(nrgba.Pix, []byte{200, 80, 40, 0, 200, 80, 40, 128, 200, 80, 40, 255})
	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, 2, 1))
	copy(nrgba64.Pix, []byte{200, 1, 80, 2, 40, 3, 0, 0, 10, 9, 20, 9, 30, 9, 0x80, 0})
	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{color.NRGBA{10, 20, 30, 255}, color.NRGBA{255, 128, 0, 0}})
	pal.Pix[1] = 1
	// Premultiplied: (200,80,40) at alpha 128 is stored as 100,40,20.
	rgba := image.NewRGBA(image.Rect(0, 0, 3, 1))
	copy(rgba.Pix, []byte{100, 40, 20, 128, 7, 7, 7, 0, 1, 2, 3, 255})
	for _, tc := range []struct {
		name string
		img  image.Image
		want []byte
	}{
		{"nrgba", nrgba, []byte{200, 80, 40, 200, 80, 40, 200, 80, 40}},
		{"nrgba64", nrgba64, []byte{200, 80, 40, 10, 20, 30}},
		{"palette with transparency", pal, []byte{10, 20, 30, 255, 128, 0}},
		// 100*255/128 = 199, 40*255/128 = 79, 20*255/128 = 39 (truncated, as Pillow).
		{"premultiplied", rgba, []byte{199, 79, 39, 0, 0, 0, 1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := toRGB8(tc.img).Pix; string(got) != string(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
