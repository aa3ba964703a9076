package imaging

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"slices"
	"strings"
	"testing"

	"eyeflow/internal/dicomtest"

	"golang.org/x/image/bmp"
)

// photo is a small colour image with edges and gradients in every channel.
func photo(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(x * 255 / (w - 1)), uint8(y * 255 / (h - 1)), uint8((x*7 + y*3) % 256), 255}
			if (x/16+y/16)%2 == 0 {
				c.B = 255 - c.B
			}
			img.SetNRGBA(x, y, c)
		}
	}
	return img
}

func grey(w, h int) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i*13%251) / 2
	}
	return img
}

func encBMP(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := bmp.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func mustDecode(t *testing.T, data []byte, opts Options) Result {
	t.Helper()
	res, err := Decode(data, opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestDecodeDICOM reads DICOM files written by dcmtk (an independent
// implementation) and by the test writer, in every supported transfer
// syntax and photometric interpretation, and compares the pixels with the
// same picture decoded from JPEG or PNG: exactly where the compressed bytes
// are the same, within the JPEG parity targets where dcmtk decompressed
// them with its own libjpeg.
func TestDecodeDICOM(t *testing.T) {
	const w, h = 300, 200
	src := photo(w, h)
	jpg := encJPEG(t, src)
	greyJPG := encJPEG(t, grey(w, h))
	opDCM := dicomtest.Img2DCM(t, jpg, "JPEG", dicomtest.OphthalmicArgs()...)
	fromJPEG := mustDecode(t, jpg, DefaultOptions()).RGB
	fromGreyJPEG := mustDecode(t, greyJPG, DefaultOptions()).RGB
	fromPNG := mustDecode(t, encPNG(t, src), DefaultOptions()).RGB
	rgbDCM := dicomtest.Img2DCM(t, encBMP(t, src), "BMP") // Explicit VR LE, RGB, secondary capture

	// Exact YBR_FULL_422 and MONOCHROME1 pixels from the test writer: two
	// pixels Y=16 and Y=235 sharing Cb=Cr=128 (black and white, full
	// range: 16 and 235), then a saturated red pair.
	ybr422 := dicomtest.Image(dicomtest.ExplicitLE, "YBR_FULL_422", 1, 4, 3, []byte{16, 235, 128, 128, 76, 76, 85, 255})
	var want422 [12]byte
	for i, yy := range []uint8{16, 235} {
		want422[3*i], want422[3*i+1], want422[3*i+2] = color.YCbCrToRGB(yy, 128, 128)
	}
	for i := 2; i < 4; i++ {
		want422[3*i], want422[3*i+1], want422[3*i+2] = color.YCbCrToRGB(76, 85, 255)
	}
	mono1 := dicomtest.Image(dicomtest.ImplicitLE, "MONOCHROME1", 2, 2, 1, []byte{0, 100, 200, 255})
	multi := dicomtest.Image(dicomtest.ExplicitLE, "MONOCHROME2", 1, 2, 1, []byte{10, 20, 30, 40}).
		Set(dicomtest.Str(0x00280008, "IS", "2"))
	// Sequences of undefined length before the pixel module, one of them of
	// unknown VR (its contents Implicit VR whatever the data set's encoding).
	nested := dicomtest.Image(dicomtest.ExplicitLE, "MONOCHROME2", 1, 2, 1, []byte{1, 2}).Set(
		dicomtest.Element{Tag: 0x00082218, Seq: []dicomtest.Element{dicomtest.Str(0x00080100, "SH", "Eye"),
			{Tag: 0x00082228, Seq: []dicomtest.Element{dicomtest.Str(0x00080104, "LO", "nested")}}}},
		dicomtest.Element{Tag: 0x00091010, VR: "UN", Seq: []dicomtest.Element{dicomtest.Str(0x00091011, "LO", "private")}})
	fragmented := dicomtest.Image(dicomtest.JPEGBaseline, "YBR_FULL_422", h, w, 3, nil)
	fragmented.Fragments = [][]byte{jpg[:len(jpg)/3], jpg[len(jpg)/3:]}

	for _, tc := range []struct {
		name    string
		data    []byte
		opts    Options
		want    []byte // exact output
		near    []byte // within the parity targets
		patient string
	}{
		{name: "ophthalmic photography, jpeg baseline (img2dcm -oph)", data: opDCM, want: fromJPEG, patient: dicomtest.PatientID},
		{name: "secondary capture, jpeg baseline, monochrome2", data: dicomtest.Img2DCM(t, greyJPG, "JPEG"), want: fromGreyJPEG, patient: dicomtest.PatientID},
		{name: "secondary capture, explicit VR LE, RGB (from BMP)", data: rgbDCM, want: fromPNG, patient: dicomtest.PatientID},
		{name: "implicit VR LE, RGB (dcmconv +ti)", data: dicomtest.Convert(t, rgbDCM, "dcmconv", "+ti"), want: fromPNG, patient: dicomtest.PatientID},
		{name: "RGB by plane (dcmdjpeg +pl)", data: dicomtest.Convert(t, opDCM, "dcmdjpeg", "+pl"), near: fromJPEG, patient: dicomtest.PatientID},
		{name: "YBR_FULL native (dcmdjpeg +cn)", data: dicomtest.Convert(t, opDCM, "dcmdjpeg", "+cn"), near: fromJPEG, patient: dicomtest.PatientID},
		{name: "jpeg frame in two fragments", data: fragmented.Bytes(), want: fromJPEG, patient: dicomtest.PatientID},
		{name: "YBR_FULL_422 native", data: ybr422.Bytes(), opts: Options{Width: 4, Height: 1}, want: want422[:], patient: dicomtest.PatientID},
		{name: "MONOCHROME1 inverted", data: mono1.Bytes(), opts: Options{Width: 2, Height: 2}, want: []byte{255, 255, 255, 155, 155, 155, 55, 55, 55, 0, 0, 0}, patient: dicomtest.PatientID},
		{name: "multi-frame: the first frame", data: multi.Bytes(), opts: Options{Width: 2, Height: 1}, want: []byte{10, 10, 10, 20, 20, 20}, patient: dicomtest.PatientID},
		{name: "nested sequences and an UN sequence", data: nested.Bytes(), opts: Options{Width: 2, Height: 1}, want: []byte{1, 1, 1, 2, 2, 2}, patient: dicomtest.PatientID},
		{name: "no patient id", data: dicomtest.Image(dicomtest.ExplicitLE, "MONOCHROME2", 1, 1, 1, []byte{7}).Set(dicomtest.Str(0x00100020, "LO", "")).Bytes(),
			opts: Options{Width: 1, Height: 1}, want: []byte{7, 7, 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			if opts.Width == 0 {
				opts = DefaultOptions()
			}
			res := mustDecode(t, tc.data, opts)
			if res.Format != FormatDICOM || res.Width != opts.Width || res.Height != opts.Height {
				t.Fatalf("got %s %dx%d", res.Format, res.Width, res.Height)
			}
			if res.PatientID != tc.patient {
				t.Errorf("patient id %q, want %q", res.PatientID, tc.patient)
			}
			switch {
			case tc.want != nil:
				if mae, max := diff(res.RGB, tc.want); max != 0 {
					t.Errorf("MAE %.3f max %d against the reference, want exact", mae, max)
				}
			case tc.near != nil:
				mae, max := diff(res.RGB, tc.near)
				t.Logf("MAE %.3f max %d against libjpeg-turbo's decode of the same JPEG", mae, max)
				if mae > parityMAE || max > parityMax {
					t.Errorf("MAE %.3f max %d, want <= %v / %d", mae, max, parityMAE, parityMax)
				}
			}
		})
	}
}

// TestDecodeDICOMRefusals: unsupported transfer syntaxes (written by
// dcmtk) and features are refused as ErrUnsupportedEncoding with a reason
// naming them; malformed files as ErrCorrupt; a header over the pixel limit
// as ErrTooLarge before any pixel memory is allocated.
func TestDecodeDICOMRefusals(t *testing.T) {
	jpg := encJPEG(t, photo(64, 48))
	op := dicomtest.Img2DCM(t, jpg, "JPEG", dicomtest.OphthalmicArgs()...)
	native := dicomtest.Convert(t, op, "dcmdjpeg")
	grey8 := func(rows, cols int) dicomtest.File {
		return dicomtest.Image(dicomtest.ExplicitLE, "MONOCHROME2", rows, cols, 1, make([]byte, rows*cols))
	}
	deep := grey8(2, 2)
	nest := dicomtest.Element{Tag: 0x00081115, Seq: []dicomtest.Element{dicomtest.Str(0x00080100, "SH", "x")}}
	for range 40 {
		nest = dicomtest.Element{Tag: 0x00081115, Seq: []dicomtest.Element{nest}}
	}
	deep = deep.Set(nest)
	noPixels := grey8(2, 2)
	noPixels.Pixels = nil
	mismatch := dicomtest.Image(dicomtest.JPEGBaseline, "YBR_FULL_422", 480, 640, 3, nil)
	mismatch.Fragments = [][]byte{jpg}
	badVR := grey8(2, 2).Bytes()
	i := bytes.Index(badVR, []byte("US"))
	copy(badVR[i:], "u\x01")
	short := grey8(20, 20)
	short.Pixels = short.Pixels[:100]
	longLen := grey8(2, 2).Bytes()
	i = bytes.Index(longLen, []byte("OB\x00\x00"))
	copy(longLen[i+4:], []byte{0xf0, 0xff, 0xff, 0x7f})

	for _, tc := range []struct {
		name string
		data []byte
		err  error
		msg  []string
	}{
		{"jpeg-ls (dcmcjpls)", dicomtest.Convert(t, native, "dcmcjpls"), ErrUnsupportedEncoding, []string{"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"}},
		{"rle (dcmcrle)", dicomtest.Convert(t, native, "dcmcrle"), ErrUnsupportedEncoding, []string{"1.2.840.10008.1.2.5", "RLE Lossless"}},
		{"jpeg lossless (dcmcjpeg)", dicomtest.Convert(t, native, "dcmcjpeg"), ErrUnsupportedEncoding, []string{"1.2.840.10008.1.2.4.70", "JPEG Lossless"}},
		{"big endian (dcmconv +tb)", dicomtest.Convert(t, native, "dcmconv", "+tb"), ErrUnsupportedEncoding, []string{"1.2.840.10008.1.2.2", "Big Endian"}},
		{"deflated (dcmconv +td)", dicomtest.Convert(t, native, "dcmconv", "+td"), ErrUnsupportedEncoding, []string{"1.2.840.10008.1.2.1.99", "Deflated"}},
		{"jpeg 2000 uid", dicomtest.Image(dicomtest.JPEG2000, "YBR_ICT", 2, 2, 3, nil).Bytes(), ErrUnsupportedEncoding, []string{"1.2.840.10008.1.2.4.91", "JPEG 2000"}},
		{"unknown uid", dicomtest.Image("1.2.3.4", "RGB", 2, 2, 3, nil).Bytes(), ErrUnsupportedEncoding, []string{"1.2.3.4 (unknown)"}},
		{"16 bits", grey8(2, 2).Set(dicomtest.US(0x00280100, 16), dicomtest.US(0x00280101, 12)).Bytes(), ErrUnsupportedEncoding, []string{"16 bits allocated"}},
		{"palette colour", grey8(2, 2).Set(dicomtest.Str(0x00280004, "CS", "PALETTE COLOR")).Bytes(), ErrUnsupportedEncoding, []string{"PALETTE COLOR"}},
		{"signed", grey8(2, 2).Set(dicomtest.US(0x00280103, 1)).Bytes(), ErrUnsupportedEncoding, []string{"signed"}},
		{"no pixel data", noPixels.Bytes(), ErrUnsupported, []string{"no pixel data", "not an image"}},

		{"truncated jpeg dicom", op[:len(op)*2/3], ErrCorrupt, []string{"decode dicom"}},
		{"truncated header", op[:300], ErrCorrupt, []string{"decode dicom: premature end of data"}},
		{"preamble and DICM only", op[:132], ErrCorrupt, []string{"no transfer syntax"}},
		{"no transfer syntax", func() []byte { f := grey8(2, 2); f.TransferSyntax = ""; return f.Bytes() }(), ErrCorrupt, []string{"no transfer syntax"}},
		{"bad VR", badVR, ErrCorrupt, []string{"no valid VR"}},
		{"length past the end", longLen, ErrCorrupt, []string{"bytes declared"}},
		{"sequences nested 40 deep", deep.Bytes(), ErrCorrupt, []string{"nested deeper than 32"}},
		{"pixel data too short", short.Bytes(), ErrCorrupt, []string{"pixel data holds 100 bytes, one 20x20 frame needs 400"}},
		{"jpeg frame size differs from header", mismatch.Bytes(), ErrCorrupt, []string{"JPEG frame is 64x48, the header says 640x480"}},
		{"odd width YBR_FULL_422", dicomtest.Image(dicomtest.ExplicitLE, "YBR_FULL_422", 1, 3, 3, make([]byte, 6)).Bytes(), ErrCorrupt, []string{"odd width"}},
		{"samples disagree", grey8(2, 2).Set(dicomtest.US(0x00280002, 3)).Bytes(), ErrCorrupt, []string{"MONOCHROME2 with 3 samples"}},
		{"no bits allocated", func() []byte {
			f := grey8(2, 2)
			f.Elements = slices.DeleteFunc(slices.Clone(f.Elements), func(e dicomtest.Element) bool { return e.Tag == 0x00280100 })
			return f.Bytes()
		}(), ErrCorrupt, []string{"no bits allocated"}},
		{"rows zero", grey8(2, 2).Set(dicomtest.US(0x00280010, 0)).Bytes(), ErrCorrupt, []string{"rows 0"}},

		{"65535x65535 header", dicomtest.Image(dicomtest.ExplicitLE, "RGB", 65535, 65535, 3, make([]byte, 12)).Bytes(), ErrTooLarge, []string{"65535x65535"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data, DefaultOptions())
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("err = %q, want it to name %q", err, m)
				}
			}
		})
	}
}
