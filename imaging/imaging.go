package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"strings"

	"golang.org/x/image/tiff"
	"golang.org/x/image/webp"
)

// Format names reported by Sniff and Result.Format.
const (
	FormatJPEG = "jpeg"
	FormatPNG  = "png"
	FormatTIFF = "tiff"
	FormatWebP = "webp"
	// FormatDICOM: DICOM Part 10 (see dicom.go for what is read).
	FormatDICOM = "dicom"
)

// Options controls Decode.
type Options struct {
	// Width, Height: exact output size (aspect ratio is not kept, as in
	// torchvision Resize((h, w))).
	Width, Height int
	// MaxPixels: images whose header declares more pixels are refused with
	// ErrTooLarge before any pixel memory is allocated. <= 0 means the default.
	MaxPixels int64
}

// DefaultMaxPixels is the default decompression-bomb limit (100 megapixels).
const DefaultMaxPixels = 100_000_000

// DefaultOptions returns the model input settings: 224x224, 100 MP limit.
func DefaultOptions() Options {
	return Options{Width: 224, Height: 224, MaxPixels: DefaultMaxPixels}
}

// Result is a decoded, oriented and resized image.
type Result struct {
	RGB           []byte // packed RGB, 3*Width*Height bytes
	Width, Height int
	// SrcWidth, SrcHeight: dimensions stored in the file header (before EXIF
	// orientation and before any DCT-domain downscaling).
	SrcWidth, SrcHeight int
	Format              string // FormatJPEG, FormatPNG, FormatTIFF, FormatWebP or FormatDICOM
	Orientation         int    // EXIF orientation applied (1..8; 1 = none)
	// PatientID is a DICOM file's PatientID (0010,0020), trimmed; empty for
	// other formats. It identifies a person: pseudonymise it before it
	// leaves the process (the resize stage publishes only a salted hash).
	PatientID string
}

// Decode detects the format of data, decodes it to 8-bit RGB (alpha dropped,
// as Pillow's convert("RGB") does; EXIF orientation applied for JPEG) and
// resizes it to exactly
// opts.Width x opts.Height with Pillow BILINEAR semantics. Errors wrap
// ErrTooLarge, ErrUnsupported (ErrNotAnImage or ErrUnsupportedImage) or
// ErrCorrupt.
func Decode(data []byte, opts Options) (res Result, err error) {
	if opts.Width <= 0 || opts.Height <= 0 {
		return Result{}, fmt.Errorf("imaging: invalid output size %dx%d", opts.Width, opts.Height)
	}
	if opts.MaxPixels <= 0 {
		opts.MaxPixels = DefaultMaxPixels
	}
	format, w, h, dcm, err := sniff(data)
	if err != nil {
		return Result{}, err
	}
	if err := checkSize(format, w, h, opts.MaxPixels); err != nil {
		return Result{}, err
	}
	res = Result{SrcWidth: w, SrcHeight: h, Format: format, Orientation: 1}
	var out *RGB8
	switch format {
	case FormatJPEG:
		out, res.Orientation, err = decodeJPEGResized(data, opts)
	case FormatDICOM:
		out, err = decodeDICOM(dcm, opts)
		res.PatientID = dcm.patientID
	default:
		out, err = decodeStd(format, data, opts)
	}
	if err != nil {
		return Result{}, err
	}
	res.RGB, res.Width, res.Height = out.Pix, out.Width, out.Height
	return res, nil
}

func checkSize(format string, w, h int, max int64) error {
	if w <= 0 || h <= 0 {
		return fmt.Errorf("decode %s: invalid dimensions %dx%d: %w", format, w, h, ErrCorrupt)
	}
	if int64(w)*int64(h) > max {
		return fmt.Errorf("decode %s: %dx%d is %d pixels, limit %d: %w",
			format, w, h, int64(w)*int64(h), max, ErrTooLarge)
	}
	return nil
}

// jpegScaleDenom picks the largest libjpeg DCT scaling 1/d (d in 8,4,2) that
// keeps the decoded image at least twice the target in both dimensions, so
// the triangle filter still does the final antialiasing (Pillow's
// draft() to 2x target measures MAE 0.10 / max 4 against a full decode).
func jpegScaleDenom(w, h, tw, th int) int {
	for _, d := range []int{8, 4, 2} {
		if (w+d-1)/d >= 2*tw && (h+d-1)/d >= 2*th {
			return d
		}
	}
	return 1
}

// scaledDim is libjpeg's output size for 1/denom scaling (jdiv_round_up).
func scaledDim(n, denom int) int { return (n + denom - 1) / denom }

// Sniff identifies the format from magic bytes and reads the dimensions from
// the header only (as stored, before EXIF orientation; for DICOM, Columns x
// Rows of the image).
func Sniff(data []byte) (format string, w, h int, err error) {
	format, w, h, _, err = sniff(data)
	return format, w, h, err
}

// sniff is Sniff, also returning a DICOM file's parsed header.
func sniff(data []byte) (format string, w, h int, dcm *dicomFile, err error) {
	switch {
	case len(data) == 0:
		return "", 0, 0, nil, fmt.Errorf("decode: empty input: %w", ErrCorrupt)
	case bytes.HasPrefix(data, []byte{0xff, 0xd8, 0xff}):
		w, h, err = jpegSize(data)
		return FormatJPEG, w, h, nil, err
	case isDICOM(data):
		w, h, dcm, err = dicomSize(data)
		return FormatDICOM, w, h, dcm, err
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		format = FormatPNG
	case bytes.HasPrefix(data, []byte("II*\x00")), bytes.HasPrefix(data, []byte("MM\x00*")):
		format = FormatTIFF
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		format = FormatWebP
	default:
		if name := otherFormat(data); name != "" {
			return "", 0, 0, nil, fmt.Errorf("decode: %s is an image format eyeflow does not read (it reads JPEG, PNG, TIFF, WebP and DICOM): %w", name, ErrUnsupportedImage)
		}
		return "", 0, 0, nil, fmt.Errorf("decode: unknown image format: %w", ErrNotAnImage)
	}
	var cfg image.Config
	switch format {
	case FormatPNG:
		cfg, err = png.DecodeConfig(bytes.NewReader(data))
	case FormatTIFF:
		cfg, err = tiff.DecodeConfig(bytes.NewReader(data))
	case FormatWebP:
		cfg, err = webp.DecodeConfig(bytes.NewReader(data))
	}
	if err != nil {
		return format, 0, 0, nil, classify(format, err)
	}
	return format, cfg.Width, cfg.Height, nil, nil
}

// otherFormat names an image format eyeflow recognises by its magic bytes
// but does not decode, "" for bytes of none: the line between
// unsupported_image and not_an_image.
func otherFormat(data []byte) string {
	has := func(off int, magic string) bool {
		return len(data) >= off+len(magic) && string(data[off:off+len(magic)]) == magic
	}
	switch {
	case has(0, "GIF87a"), has(0, "GIF89a"):
		return "GIF"
	case has(0, "BM") && len(data) >= 26 && bmpHeader(data):
		return "BMP"
	case has(0, "\x00\x00\x00\x0cjP  \r\n\x87\n"), has(0, "\xff\x4f\xff\x51"):
		return "JPEG 2000"
	case has(0, "\xff\x0a"), has(0, "\x00\x00\x00\x0cJXL \r\n\x87\n"):
		return "JPEG XL"
	case has(4, "ftypheic"), has(4, "ftypheix"), has(4, "ftyphevc"), has(4, "ftypmif1"), has(4, "ftypmsf1"):
		return "HEIF"
	case has(4, "ftypavif"), has(4, "ftypavis"):
		return "AVIF"
	case has(0, "8BPS"):
		return "Photoshop"
	case has(0, "\x00\x00\x01\x00") && len(data) >= 6 && data[4]|data[5] != 0:
		return "ICO"
	case has(0, "qoif"):
		return "QOI"
	}
	return ""
}

// bmpHeader reports a plausible BITMAPFILEHEADER and DIB header after
// "BM", so text starting with "BM" stays not an image.
func bmpHeader(data []byte) bool {
	switch binary.LittleEndian.Uint32(data[14:]) { // DIB header size
	case 12, 40, 52, 56, 64, 108, 124:
		return binary.LittleEndian.Uint32(data[2:]) >= 26 || binary.LittleEndian.Uint32(data[2:]) == 0
	}
	return false
}

// jpegSize walks the marker segments up to the first SOFn frame header.
func jpegSize(data []byte) (w, h int, err error) {
	p := 2
	for {
		// Skip fill bytes; a marker is 0xFF followed by a non-0xFF code.
		if p+1 >= len(data) || data[p] != 0xff {
			if p+1 >= len(data) {
				return 0, 0, fmt.Errorf("decode jpeg: premature end of data before frame header: %w", ErrCorrupt)
			}
			return 0, 0, fmt.Errorf("decode jpeg: bad marker at offset %d: %w", p, ErrCorrupt)
		}
		for p < len(data) && data[p] == 0xff {
			p++
		}
		if p >= len(data) {
			return 0, 0, fmt.Errorf("decode jpeg: premature end of data before frame header: %w", ErrCorrupt)
		}
		m := data[p]
		p++
		switch {
		case m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7):
			continue // standalone markers
		case m == 0xd9 || m == 0xda:
			return 0, 0, fmt.Errorf("decode jpeg: no frame header: %w", ErrCorrupt)
		}
		if p+2 > len(data) {
			return 0, 0, fmt.Errorf("decode jpeg: premature end of data: %w", ErrCorrupt)
		}
		n := int(binary.BigEndian.Uint16(data[p:]))
		if n < 2 || p+n > len(data) {
			return 0, 0, fmt.Errorf("decode jpeg: premature end of data in marker 0x%02x: %w", m, ErrCorrupt)
		}
		if m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc {
			if n < 8 {
				return 0, 0, fmt.Errorf("decode jpeg: short frame header: %w", ErrCorrupt)
			}
			h = int(binary.BigEndian.Uint16(data[p+3:]))
			w = int(binary.BigEndian.Uint16(data[p+5:]))
			return w, h, nil
		}
		p += n
	}
}

// classify maps a Go decoder error to the package's sentinel errors.
func classify(format string, err error) error {
	var pngU png.UnsupportedError
	var tiffU tiff.UnsupportedError
	switch {
	case errors.As(err, &pngU), errors.As(err, &tiffU):
		return fmt.Errorf("decode %s: %v: %w", format, err, ErrUnsupportedImage)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF),
		strings.Contains(err.Error(), "short Huffman data"): // image/jpeg's word for truncation
		return fmt.Errorf("decode %s: premature end of data: %w", format, ErrCorrupt)
	}
	return fmt.Errorf("decode %s: %v: %w", format, err, ErrCorrupt)
}

// decodeStd decodes PNG, TIFF and WebP with
// the Go decoders, converts to RGB and resizes.
func decodeStd(format string, data []byte, opts Options) (*RGB8, error) {
	src, err := decodeFull(format, data)
	if err != nil {
		return nil, err
	}
	return Resize(src, opts.Width, opts.Height), nil
}

// decodeFull decodes PNG, TIFF or WebP at its stored size to packed RGB as
// Pillow's Image.open(f).convert("RGB") does: alpha dropped, lossy WebP
// converted with libwebp's arithmetic (webpYUVToRGB).
func decodeFull(format string, data []byte) (out *RGB8, err error) {
	// The x/image decoders are not hardened against every malformed input;
	// a panic there must not take the stage down.
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("decode %s: decoder panic: %v: %w", format, r, ErrCorrupt)
		}
	}()
	var img image.Image
	rd := bytes.NewReader(data)
	switch format {
	case FormatPNG:
		img, err = png.Decode(rd)
	case FormatTIFF:
		img, err = tiff.Decode(rd)
	case FormatWebP:
		img, err = webp.Decode(rd)
	default:
		return nil, fmt.Errorf("decode: unknown image format: %w", ErrNotAnImage)
	}
	if err != nil {
		return nil, classify(format, err)
	}
	switch m := img.(type) {
	case *image.YCbCr: // lossy WebP
		if rgb := webpYUVToRGB(m); rgb != nil {
			return rgb, nil
		}
	case *image.NYCbCrA: // lossy WebP with alpha: the alpha is dropped
		if rgb := webpYUVToRGB(&m.YCbCr); rgb != nil {
			return rgb, nil
		}
	}
	return toRGB8(img), nil
}
