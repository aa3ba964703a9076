package imaging_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/color/palette"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"strings"
	"testing"

	"eyeflow/imaging"
	"eyeflow/internal/dicomtest"
	"eyeflow/schemas"

	"golang.org/x/image/bmp"
)

func sample(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 13)
	}
	return img
}

func encode(t *testing.T, enc func(*bytes.Buffer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestReasons is the rule of schemas' decode reasons over real bytes: no
// image at all is not_an_image; a recognised image eyeflow does not decode
// (another format, a DICOM transfer syntax or pixel format it does not
// read) is unsupported_image; a supported format that fails to decode is
// corrupt_image. The error text says the same as the reason.
func TestReasons(t *testing.T) {
	img := sample(16, 12)
	gifData := encode(t, func(b *bytes.Buffer) error {
		p := image.NewPaletted(img.Bounds(), palette.Plan9)
		p.Set(1, 1, color.RGBA{200, 100, 50, 255})
		return gif.Encode(b, p, nil)
	})
	bmpData := encode(t, func(b *bytes.Buffer) error { return bmp.Encode(b, img) })
	pngData := encode(t, func(b *bytes.Buffer) error { return png.Encode(b, img) })
	jpgData := encode(t, func(b *bytes.Buffer) error { return jpeg.Encode(b, img, nil) })
	dcm := dicomtest.Image(dicomtest.ExplicitLE, "RGB", 16, 16, 3, make([]byte, 16*16*3)).Bytes()
	random := make([]byte, 4096)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	bigPNG := append([]byte(nil), pngData[:33]...) // signature and IHDR
	copy(bigPNG[16:], []byte{0, 0, 0xea, 0x60, 0, 0, 0xea, 0x60})
	binary.BigEndian.PutUint32(bigPNG[29:], crc32.ChecksumIEEE(bigPNG[12:29]))

	for _, tt := range []struct {
		name   string
		data   []byte
		reason string // "" decodes
		names  string // the error also names this
	}{
		{"png", pngData, "", ""},
		{"jpeg", jpgData, "", ""},
		{"dicom native rgb", dcm, "", ""},

		{"gif", gifData, schemas.ReasonUnsupportedImage, "GIF"},
		{"gif header only", gifData[:6], schemas.ReasonUnsupportedImage, "GIF"},
		{"bmp", bmpData, schemas.ReasonUnsupportedImage, "BMP"},
		{"jpeg 2000 codestream", append([]byte{0xff, 0x4f, 0xff, 0x51}, random[:64]...), schemas.ReasonUnsupportedImage, "JPEG 2000"},
		{"heif", append([]byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), random[:64]...), schemas.ReasonUnsupportedImage, "HEIF"},
		{"dicom jpeg 2000", dicomtest.Image(dicomtest.JPEG2000, "YBR_ICT", 2, 2, 3, nil).Bytes(), schemas.ReasonUnsupportedImage, "JPEG 2000"},
		{"dicom unknown transfer syntax", dicomtest.Image("1.2.3.4", "RGB", 2, 2, 3, nil).Bytes(), schemas.ReasonUnsupportedImage, "1.2.3.4"},
		{"dicom 16 bit", dicomtest.Image(dicomtest.ExplicitLE, "MONOCHROME2", 2, 2, 1, make([]byte, 8)).Set(dicomtest.US(0x00280100, 16)).Bytes(), schemas.ReasonUnsupportedImage, "16 bits"},

		{"random bytes", random, schemas.ReasonNotAnImage, "unknown image format"},
		{"text", []byte("patient notes, not a picture"), schemas.ReasonNotAnImage, ""},
		{"text starting BM", []byte("BM: patient notes, not a bitmap at all"), schemas.ReasonNotAnImage, ""},
		{"dicom without pixels", dicomtest.File{TransferSyntax: dicomtest.ExplicitLE, Elements: []dicomtest.Element{dicomtest.Str(0x00100020, "LO", "P-1")}}.Bytes(), schemas.ReasonNotAnImage, "no pixel data"},

		{"png truncated", pngData[:len(pngData)-20], schemas.ReasonCorruptImage, "decode png"},
		{"jpeg truncated", jpgData[:len(jpgData)/2], schemas.ReasonCorruptImage, "decode jpeg"},
		{"dicom truncated", dcm[:len(dcm)/2], schemas.ReasonCorruptImage, "decode dicom"},
		{"empty", []byte{}, schemas.ReasonCorruptImage, "empty"},

		{"png claims 60000x60000", bigPNG, schemas.ReasonTooLarge, "60000x60000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := imaging.Decode(tt.data, imaging.DefaultOptions())
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("a supported image: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("decoded; want %s", tt.reason)
			}
			if got := imaging.Reason(err); got != tt.reason {
				t.Fatalf("reason %s for %q, want %s", got, err, tt.reason)
			}
			// The text agrees with the reason (a GIF read "unsupported image"
			// while it was dead-lettered not_an_image).
			words := strings.ReplaceAll(tt.reason, "_", " ")
			if !strings.Contains(err.Error(), words) || !strings.Contains(err.Error(), tt.names) {
				t.Fatalf("error %q does not say %q and %q", err, words, tt.names)
			}
			for _, other := range []string{"not an image", "unsupported image", "corrupt image"} {
				if other != words && strings.Contains(err.Error(), other) {
					t.Fatalf("error %q of a %s also says %q", err, tt.reason, other)
				}
			}
		})
	}
}

// TestReasonOfErrors: Reason over the sentinels themselves, wrapped, and
// errors of no sentinel; the deprecated name is the same error.
func TestReasonOfErrors(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{imaging.ErrTooLarge, schemas.ReasonTooLarge},
		{imaging.ErrNotAnImage, schemas.ReasonNotAnImage},
		{imaging.ErrUnsupportedImage, schemas.ReasonUnsupportedImage},
		{imaging.ErrUnsupportedEncoding, schemas.ReasonUnsupportedImage},
		{imaging.ErrUnsupported, schemas.ReasonUnsupportedImage},
		{imaging.ErrCorrupt, schemas.ReasonCorruptImage},
		{fmt.Errorf("decode x: %w", imaging.ErrNotAnImage), schemas.ReasonNotAnImage},
		{errors.New("anything else"), schemas.ReasonCorruptImage},
	} {
		if got := imaging.Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	// Both refinements stay ErrUnsupported, for callers that ask only that
	// (the classifier's 415).
	for _, e := range []error{imaging.ErrNotAnImage, imaging.ErrUnsupportedImage} {
		if !errors.Is(e, imaging.ErrUnsupported) || errors.Is(e, imaging.ErrCorrupt) {
			t.Errorf("%v is not only ErrUnsupported", e)
		}
	}
	if errors.Is(imaging.ErrNotAnImage, imaging.ErrUnsupportedImage) || errors.Is(imaging.ErrUnsupportedImage, imaging.ErrNotAnImage) {
		t.Error("the two refinements overlap")
	}
}
