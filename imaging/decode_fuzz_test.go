package imaging

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"

	"eyeflow/internal/dicomtest"

	"golang.org/x/image/tiff"
)

// fuzzMaxPixels keeps a fuzzed header from asking for much memory: the
// pixel buffers Decode may allocate are bounded by it (times 4 bytes per
// pixel and a few intermediate rows), about 1 MiB here.
const fuzzMaxPixels = 256 * 256

// fuzzImage is a small, structured image so the encoders produce real
// headers, Huffman tables and filters for the fuzzer to mutate.
func fuzzImage(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(x * 17), uint8(y * 29), uint8(x ^ y), uint8(255 - x)})
		}
	}
	return img
}

func addImageSeeds(f *testing.F) {
	f.Helper()
	img := fuzzImage(9, 7)
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(b.Bytes()))
	b.Reset()
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 50}); err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(b.Bytes()))
	b.Reset()
	if err := tiff.Encode(&b, img, &tiff.Options{Compression: tiff.Deflate}); err != nil {
		f.Fatal(err)
	}
	f.Add(bytes.Clone(b.Bytes()))
	addDICOMSeeds(f, img)
	// The checked-in WebP and PNG fixtures (a few KiB each).
	for _, name := range []string{"lossless.webp", "lossy.webp", "odd_q75.webp", "even_alpha_q75.webp", "resize_17x13.png"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	// Headers that declare far more pixels than they carry.
	f.Add([]byte("\xff\xd8\xff\xc0\x00\x11\x08\xff\xff\xff\xff\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"))
	f.Add([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x7f\xff\xff\xff\x7f\xff\xff\xff\x08\x02\x00\x00\x00"))
	f.Add([]byte("RIFF\x00\x00\x00\x00WEBPVP8X"))
	f.Add([]byte("II*\x00"))
}

// addDICOMSeeds adds DICOM files: native in both VR encodings and every
// photometric interpretation read, encapsulated JPEG Baseline, nested
// sequences (one of unknown VR), and a file in a refused transfer syntax.
func addDICOMSeeds(f *testing.F, img image.Image) {
	f.Helper()
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, img, &jpeg.Options{Quality: 50}); err != nil {
		f.Fatal(err)
	}
	b := img.Bounds()
	rows, cols := b.Dy(), b.Dx()
	rgb := make([]byte, 3*rows*cols)
	for i := range rgb {
		rgb[i] = byte(i * 5)
	}
	enc := dicomtest.Image(dicomtest.JPEGBaseline, "YBR_FULL_422", rows, cols, 3, nil)
	enc.Fragments = [][]byte{jb.Bytes()}
	nested := dicomtest.Image(dicomtest.ExplicitLE, "MONOCHROME2", rows, cols, 1, rgb[:rows*cols]).Set(
		dicomtest.Element{Tag: 0x00082218, Seq: []dicomtest.Element{dicomtest.Str(0x00080100, "SH", "Eye")}},
		dicomtest.Element{Tag: 0x00091010, VR: "UN", Seq: []dicomtest.Element{dicomtest.Str(0x00091011, "LO", "p")}})
	for _, d := range []dicomtest.File{
		dicomtest.Image(dicomtest.ExplicitLE, "RGB", rows, cols, 3, rgb),
		dicomtest.Image(dicomtest.ImplicitLE, "MONOCHROME1", rows, cols, 1, rgb[:rows*cols]),
		dicomtest.Image(dicomtest.ExplicitLE, "YBR_FULL", rows, cols, 3, rgb).Set(dicomtest.US(0x00280006, 1)),
		dicomtest.Image(dicomtest.ExplicitLE, "YBR_FULL_422", rows, cols&^1, 3, rgb[:2*rows*(cols&^1)]),
		dicomtest.Image(dicomtest.RLE, "RGB", rows, cols, 3, rgb),
		enc, nested,
	} {
		f.Add(d.Bytes())
	}
	f.Add(append(make([]byte, 128), "DICM"...))
}

// FuzzDecode feeds arbitrary bytes to the resize stage's decode path with a
// small pixel limit: no panic (the cgo JPEG path cannot be recovered), every
// error wraps exactly one sentinel, a success has exactly the requested
// output size, and nothing over the pixel limit is decoded.
func FuzzDecode(f *testing.F) {
	addImageSeeds(f)
	f.Fuzz(checkDecode)
}

// FuzzDecodeDICOM is FuzzDecode from DICOM seeds only, so the mutations
// explore the DICOM reader (element walking, sequences, encapsulation).
func FuzzDecodeDICOM(f *testing.F) {
	addDICOMSeeds(f, fuzzImage(9, 7))
	f.Fuzz(checkDecode)
}

// checkDecode is the fuzz targets' property check.
func checkDecode(t *testing.T, data []byte) {
	opts := Options{Width: 8, Height: 6, MaxPixels: fuzzMaxPixels}
	format, w, h, serr := Sniff(data)
	res, err := Decode(data, opts)
	if err != nil {
		n := 0
		for _, s := range []error{ErrTooLarge, ErrUnsupported, ErrCorrupt} {
			if errors.Is(err, s) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("error %q wraps %d sentinels, want exactly 1", err, n)
		}
		return
	}
	if serr != nil {
		t.Fatalf("Decode succeeded where Sniff failed: %v", serr)
	}
	if res.Width != opts.Width || res.Height != opts.Height || len(res.RGB) != 3*opts.Width*opts.Height {
		t.Fatalf("output %dx%d with %d bytes, want %dx%d", res.Width, res.Height, len(res.RGB), opts.Width, opts.Height)
	}
	if res.Format != format || res.SrcWidth != w || res.SrcHeight != h {
		t.Fatalf("result %s %dx%d disagrees with Sniff %s %dx%d", res.Format, res.SrcWidth, res.SrcHeight, format, w, h)
	}
	if int64(w)*int64(h) > fuzzMaxPixels {
		t.Fatalf("decoded %dx%d, over the %d pixel limit", w, h, fuzzMaxPixels)
	}
}
