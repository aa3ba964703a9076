package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/tiff"

	"eyeflow/imaging/internal/jpegtest"
)

// TestResizeMatchesPillow checks the filter alone against Pillow's own output
// (testdata/make_refs.py) on a lossless source: it must be bit-exact.
func TestResizeMatchesPillow(t *testing.T) {
	srcData := readFile(t, filepath.Join("testdata", "resize_src.png"))
	src := readPNGRGB(t, srcData)
	for _, sz := range [][2]int{{17, 13}, {7, 5}, {64, 20}, {30, 48}, {100, 70}, {1, 1}} {
		name := fmt.Sprintf("resize_%dx%d.png", sz[0], sz[1])
		t.Run(name, func(t *testing.T) {
			want := readPNGRGB(t, readFile(t, filepath.Join("testdata", name)))
			got := Resize(src, sz[0], sz[1])
			if mae, max := diff(got.Pix, want.Pix); max != 0 {
				t.Errorf("Resize: MAE %.4f max %d, want exact", mae, max)
			}
			// Same through Decode (PNG path).
			res, err := Decode(srcData, Options{Width: sz[0], Height: sz[1]})
			if err != nil {
				t.Fatal(err)
			}
			if mae, max := diff(res.RGB, want.Pix); max != 0 {
				t.Errorf("Decode: MAE %.4f max %d, want exact", mae, max)
			}
		})
	}
}

// --- corpus builders -------------------------------------------------------

func pattern(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / max(w-1, 1)), uint8(y * 255 / max(h-1, 1)), 128, 255})
		}
	}
	return img
}

func encPNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encJPEG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// libjpeg encodes a uniform w x h image of one pixel value px (1, 3 or 4 samples).
func libjpeg(t *testing.T, w, h int, px []byte, cs jpegtest.ColorSpace, progressive bool) []byte {
	t.Helper()
	pix := bytes.Repeat(px, w*h)
	b, err := jpegtest.Encode(pix, w, h, cs, 95, progressive)
	if err != nil {
		t.Log(err) // without cgo: the case is skipped
		return nil
	}
	return b
}

// quadrants: top-left red, top-right green, bottom-left blue, bottom-right white.
func quadrants(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	cols := [4]color.NRGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 255, 255}, {255, 255, 255, 255}}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			q := 0
			if x >= w/2 {
				q++
			}
			if y >= h/2 {
				q += 2
			}
			img.SetNRGBA(x, y, cols[q])
		}
	}
	return img
}

// withEXIF inserts an APP1 EXIF segment carrying only IFD0/Orientation right
// after SOI, big-endian ("MM") like most cameras.
func withEXIF(jpg []byte, orientation int) []byte {
	var p bytes.Buffer
	p.WriteString("Exif\x00\x00MM\x00\x2a")
	binary.Write(&p, binary.BigEndian, uint32(8)) // IFD0 offset
	binary.Write(&p, binary.BigEndian, uint16(1)) // one entry
	binary.Write(&p, binary.BigEndian, []uint16{0x0112, 3})
	binary.Write(&p, binary.BigEndian, uint32(1))
	binary.Write(&p, binary.BigEndian, []uint16{uint16(orientation), 0})
	binary.Write(&p, binary.BigEndian, uint32(0)) // no next IFD
	seg := []byte{0xff, 0xe1, 0, 0}
	binary.BigEndian.PutUint16(seg[2:], uint16(p.Len()+2))
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	out = append(out, p.Bytes()...)
	return append(out, jpg[2:]...)
}

// pngHeaderOnly is a PNG whose IHDR claims w x h and has no pixel data.
func pngHeaderOnly(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 17)
	copy(ihdr, "IHDR")
	binary.BigEndian.PutUint32(ihdr[4:], w)
	binary.BigEndian.PutUint32(ihdr[8:], h)
	ihdr[12], ihdr[13] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(ihdr)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(ihdr))
	return b.Bytes()
}

// jpegSOF patches the frame header dimensions of a valid JPEG.
func jpegSOF(t *testing.T, jpg []byte, w, h int) []byte {
	out := append([]byte{}, jpg...)
	for i := 2; i+9 < len(out); i++ {
		if out[i] == 0xff && (out[i+1] == 0xc0 || out[i+1] == 0xc2) {
			binary.BigEndian.PutUint16(out[i+5:], uint16(h))
			binary.BigEndian.PutUint16(out[i+7:], uint16(w))
			return out
		}
	}
	t.Fatal("no SOF")
	return nil
}

// --- corpus test -----------------------------------------------------------

type rgb [3]int

// meanRGB is the average colour of an output.
func meanRGB(res Result) rgb {
	var s rgb
	n := len(res.RGB) / 3
	for i := 0; i < n; i++ {
		for c := 0; c < 3; c++ {
			s[c] += int(res.RGB[3*i+c])
		}
	}
	return rgb{s[0] / n, s[1] / n, s[2] / n}
}

func pixel(res Result, x, y int) rgb {
	i := 3 * (y*res.Width + x)
	return rgb{int(res.RGB[i]), int(res.RGB[i+1]), int(res.RGB[i+2])}
}

func near(a, b rgb, tol int) bool {
	for c := 0; c < 3; c++ {
		if d := a[c] - b[c]; d > tol || d < -tol {
			return false
		}
	}
	return true
}

func TestDecodeCorpus(t *testing.T) {
	solid := func(c color.Color, w, h int) *image.NRGBA {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				img.Set(x, y, c)
			}
		}
		return img
	}
	orange := color.NRGBA{200, 100, 50, 255}
	pal := image.NewPaletted(image.Rect(0, 0, 40, 30), color.Palette{color.NRGBA{10, 20, 30, 255}, color.NRGBA{255, 255, 255, 0}})
	for i := range pal.Pix {
		pal.Pix[i] = uint8(i % 2) // half the pixels fully transparent: white, their stored colour
	}
	rgba64 := image.NewRGBA64(image.Rect(0, 0, 50, 40))
	gray16 := image.NewGray16(image.Rect(0, 0, 50, 40))
	for y := 0; y < 40; y++ {
		for x := 0; x < 50; x++ {
			rgba64.SetRGBA64(x, y, color.RGBA64{0x8080, 0x4040, 0x2020, 0xffff})
			gray16.SetGray16(x, y, color.Gray16{0x6464})
		}
	}
	gray := image.NewGray(image.Rect(0, 0, 33, 21))
	for i := range gray.Pix {
		gray.Pix[i] = 77
	}
	alpha := solid(color.NRGBA{200, 100, 50, 128}, 20, 20) // half transparent: alpha dropped, as Pillow's convert("RGB")
	var tiffBuf bytes.Buffer
	if err := tiff.Encode(&tiffBuf, solid(orange, 64, 48), nil); err != nil {
		t.Fatal(err)
	}
	baseline := encJPEG(t, pattern(300, 200))
	progressive := libjpeg(t, 300, 200, []byte{200, 100, 50}, jpegtest.YCbCr, true)
	progTrunc := baseline[:len(baseline)/2] // no cgo: libjpeg encoder unavailable
	if progressive != nil {
		progTrunc = progressive[:len(progressive)*2/3]
	}
	// Adobe CMYK is stored inverted: ink 0 -> 255. Pure red = C0 M255 Y255 K0.
	cmykRed := []byte{255, 0, 0, 255}
	truncated := func(b []byte) []byte { return b[:len(b)/2] }
	random := make([]byte, 4096)
	rand.New(rand.NewSource(1)).Read(random)

	cases := []struct {
		name   string
		data   []byte
		opts   Options
		err    error  // sentinel, nil for success
		msg    string // substring of the error message
		format string
		mean   *rgb // expected mean colour (tolerance 6)
	}{
		{name: "jpeg baseline", data: baseline, format: FormatJPEG},
		{name: "jpeg progressive", data: progressive, format: FormatJPEG, mean: &rgb{200, 100, 50}},
		{name: "jpeg progressive large (DCT scaled)", data: libjpeg(t, 1200, 1000, []byte{10, 200, 90}, jpegtest.YCbCr, true), format: FormatJPEG, mean: &rgb{10, 200, 90}},
		{name: "jpeg grey", data: libjpeg(t, 100, 80, []byte{90}, jpegtest.Gray, false), format: FormatJPEG, mean: &rgb{90, 90, 90}},
		{name: "jpeg cmyk adobe", data: libjpeg(t, 64, 64, cmykRed, jpegtest.CMYK, false), format: FormatJPEG, mean: &rgb{255, 0, 0}},
		{name: "jpeg ycck adobe", data: libjpeg(t, 64, 64, cmykRed, jpegtest.YCCK, true), format: FormatJPEG, mean: &rgb{255, 0, 0}},
		{name: "jpeg 1x1", data: encJPEG(t, solid(orange, 1, 1)), format: FormatJPEG, mean: &rgb{200, 100, 50}},
		{name: "jpeg 10000x10", data: encJPEG(t, solid(orange, 10000, 10)), format: FormatJPEG, mean: &rgb{200, 100, 50}},
		{name: "png rgb8", data: encPNG(t, solid(orange, 64, 48)), format: FormatPNG, mean: &rgb{200, 100, 50}},
		{name: "png rgba16", data: encPNG(t, rgba64), format: FormatPNG, mean: &rgb{0x80, 0x40, 0x20}},
		{name: "png grey8", data: encPNG(t, gray), format: FormatPNG, mean: &rgb{77, 77, 77}},
		{name: "png grey16", data: encPNG(t, gray16), format: FormatPNG, mean: &rgb{0x64, 0x64, 0x64}},
		{name: "png palette+trns", data: encPNG(t, pal), format: FormatPNG, mean: &rgb{132, 137, 142}},
		{name: "png alpha", data: encPNG(t, alpha), format: FormatPNG, mean: &rgb{200, 100, 50}},
		{name: "png 1x1", data: encPNG(t, solid(orange, 1, 1)), format: FormatPNG, mean: &rgb{200, 100, 50}},
		{name: "png 10000x10", data: encPNG(t, solid(orange, 10000, 10)), format: FormatPNG, mean: &rgb{200, 100, 50}},
		{name: "tiff", data: tiffBuf.Bytes(), format: FormatTIFF, mean: &rgb{200, 100, 50}},
		// cwebp stores black under lossless transparent pixels, the colour under lossy ones.
		{name: "webp lossless", data: readFile(t, "testdata/lossless.webp"), format: FormatWebP, mean: &rgb{100, 50, 25}},
		{name: "webp lossy", data: readFile(t, "testdata/lossy.webp"), format: FormatWebP, mean: &rgb{202, 100, 51}},

		{name: "zero bytes", data: nil, err: ErrCorrupt, msg: "empty input"},
		{name: "random bytes", data: random, err: ErrUnsupported, msg: "unknown image format"},
		{name: "jpeg truncated", data: baseline[:len(baseline)/2], err: ErrCorrupt, msg: "decode jpeg: premature end of data"},
		{name: "jpeg progressive truncated", data: progTrunc, err: ErrCorrupt, msg: "decode jpeg: premature end of data"},
		{name: "jpeg header only", data: baseline[:20], err: ErrCorrupt, msg: "decode jpeg"},
		{name: "jpeg soi only", data: []byte{0xff, 0xd8, 0xff}, err: ErrCorrupt, msg: "decode jpeg"},
		{name: "png truncated", data: truncated(encPNG(t, pattern(64, 48))), err: ErrCorrupt, msg: "decode png"},
		{name: "png claims 60000x60000", data: pngHeaderOnly(60000, 60000), err: ErrTooLarge, msg: "60000x60000"},
		{name: "jpeg claims 60000x60000", data: jpegSOF(t, baseline, 60000, 60000), err: ErrTooLarge},
		{name: "custom pixel limit", data: baseline, opts: Options{Width: 224, Height: 224, MaxPixels: 300*200 - 1}, err: ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.data == nil && tc.err == nil {
				t.Fatal("libjpeg test encoder unavailable: build with cgo (CGO_ENABLED=1) and libjpeg62-turbo-dev (scripts/setup.sh)")
			}
			opts := tc.opts
			if opts.Width == 0 {
				opts = DefaultOptions()
			}
			res, err := Decode(tc.data, opts)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err = %q, want it to mention %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Format != tc.format || res.Width != opts.Width || res.Height != opts.Height || len(res.RGB) != 3*opts.Width*opts.Height {
				t.Fatalf("got format %q %dx%d len %d", res.Format, res.Width, res.Height, len(res.RGB))
			}
			if tc.mean != nil {
				if m := meanRGB(res); !near(m, *tc.mean, 6) {
					t.Errorf("mean colour %v, want %v", m, *tc.mean)
				}
			}
		})
	}
}

// TestWebPAlphaDropped checks per pixel that a transparent area keeps the
// colour stored under it, as Pillow's convert("RGB") does. The expected
// values are Pillow's (9.4, libwebp 1.2.4): cwebp stores black under the
// lossless file's transparent half and the colour under the lossy one's.
func TestWebPAlphaDropped(t *testing.T) {
	for _, tc := range []struct {
		file                string
		transparent, opaque rgb
	}{
		{"lossless.webp", rgb{0, 0, 0}, rgb{200, 100, 50}},
		{"lossy.webp", rgb{201, 100, 50}, rgb{203, 99, 52}},
	} {
		res, err := Decode(readFile(t, filepath.Join("testdata", tc.file)), Options{Width: 16, Height: 12})
		if err != nil {
			t.Fatal(err)
		}
		if p := pixel(res, 2, 6); p != tc.transparent {
			t.Errorf("%s: transparent pixel = %v, want %v", tc.file, p, tc.transparent)
		}
		if p := pixel(res, 13, 6); p != tc.opaque {
			t.Errorf("%s: opaque pixel = %v, want %v", tc.file, p, tc.opaque)
		}
	}
}

func TestEXIFOrientation(t *testing.T) {
	const W, H = 64, 48
	red, green, blue, white := rgb{255, 0, 0}, rgb{0, 255, 0}, rgb{0, 0, 255}, rgb{255, 255, 255}
	// Colour expected at the displayed top-left and top-right corners.
	want := map[int][2]rgb{
		1: {red, green}, 2: {green, red}, 3: {white, blue}, 4: {blue, white},
		5: {red, blue}, 6: {blue, red}, 7: {white, green}, 8: {green, white},
	}
	base := encJPEG(t, quadrants(W, H))
	for o := 1; o <= 8; o++ {
		t.Run(fmt.Sprint(o), func(t *testing.T) {
			dw, dh := W, H
			if o >= 5 {
				dw, dh = H, W
			}
			// Output size == displayed size: no resampling, corners stay pure.
			res, err := Decode(withEXIF(base, o), Options{Width: dw, Height: dh})
			if err != nil {
				t.Fatal(err)
			}
			if res.Orientation != o || res.SrcWidth != W || res.SrcHeight != H {
				t.Fatalf("orientation %d src %dx%d", res.Orientation, res.SrcWidth, res.SrcHeight)
			}
			tl, tr := pixel(res, 4, 4), pixel(res, dw-5, 4)
			if !near(tl, want[o][0], 40) || !near(tr, want[o][1], 40) {
				t.Errorf("corners %v %v, want %v %v", tl, tr, want[o][0], want[o][1])
			}
			// And at model size: must still decode (rotation then resize).
			if _, err := Decode(withEXIF(base, o), DefaultOptions()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		data   []byte
		format string
		w, h   int
	}{
		{encJPEG(t, pattern(30, 20)), FormatJPEG, 30, 20},
		{libjpeg(t, 31, 21, []byte{1, 2, 3}, jpegtest.YCbCr, true), FormatJPEG, 31, 21},
		{encPNG(t, pattern(30, 20)), FormatPNG, 30, 20},
		{pngHeaderOnly(60000, 60000), FormatPNG, 60000, 60000},
		{readFile(t, "testdata/lossless.webp"), FormatWebP, 16, 12},
	} {
		if tc.data == nil {
			continue // no cgo
		}
		f, w, h, err := Sniff(tc.data)
		if err != nil || f != tc.format || w != tc.w || h != tc.h {
			t.Errorf("Sniff = %q %dx%d %v, want %q %dx%d", f, w, h, err, tc.format, tc.w, tc.h)
		}
	}
}

func TestEncodePNGRoundTrip(t *testing.T) {
	src := readPNGRGB(t, readFile(t, filepath.Join("testdata", "resize_17x13.png")))
	var b bytes.Buffer
	if err := EncodePNG(&b, src.Pix, src.Width, src.Height); err != nil {
		t.Fatal(err)
	}
	got := readPNGRGB(t, b.Bytes())
	if !bytes.Equal(got.Pix, src.Pix) {
		t.Fatal("PNG round trip is not lossless")
	}
	if err := EncodePNG(&b, src.Pix[:10], src.Width, src.Height); err == nil {
		t.Fatal("want error for short buffer")
	}
}

// TestConcurrentDecode exercises the pools and coefficient cache under -race.
func TestConcurrentDecode(t *testing.T) {
	data := encJPEG(t, pattern(1000, 900))
	ref, err := Decode(data, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			res, err := Decode(data, DefaultOptions())
			if err == nil && !bytes.Equal(res.RGB, ref.RGB) {
				err = errors.New("concurrent decode differs")
			}
			errs <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
