package imaging

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image/color"
	"strconv"
	"strings"
)

// DICOM input: the smallest reader the resize stage needs, since no
// maintained Go DICOM parser is served by the module proxy. It reads DICOM
// Part 10 files (128-byte preamble, "DICM", the file meta group) whose pixel
// data is native (Implicit or Explicit VR Little Endian) or baseline JPEG,
// with 8 bits per sample in MONOCHROME1, MONOCHROME2, RGB, YBR_FULL or
// YBR_FULL_422: what fundus cameras and PACS export as Ophthalmic
// Photography 8 Bit Image Storage or Secondary Capture. The first frame of a
// multi-frame object is used.
//
// The reader never allocates from a length a file declares: values are
// slices of the input, every length is checked against what is left, nested
// sequences of undefined length are walked to a bounded depth, and the pixel
// buffers are sized from Rows x Columns after the pixel limit was checked.
//
// Of the data set it keeps only what decoding needs, plus PatientID, which
// Result carries for the caller to pseudonymise (the resize stage hashes it
// into the split key and never publishes it). Names, birth dates and every
// other attribute are skipped unread.

// Transfer syntaxes read.
const (
	tsImplicitLE   = "1.2.840.10008.1.2"
	tsExplicitLE   = "1.2.840.10008.1.2.1"
	tsJPEGBaseline = "1.2.840.10008.1.2.4.50"
)

// unsupportedSyntaxes names the transfer syntaxes refused, for the error.
var unsupportedSyntaxes = map[string]string{
	"1.2.840.10008.1.2.1.99":  "Deflated Explicit VR Little Endian",
	"1.2.840.10008.1.2.2":     "Explicit VR Big Endian (retired)",
	"1.2.840.10008.1.2.4.51":  "JPEG Extended (Process 2 & 4)",
	"1.2.840.10008.1.2.4.57":  "JPEG Lossless, Non-Hierarchical (Process 14)",
	"1.2.840.10008.1.2.4.70":  "JPEG Lossless, First-Order Prediction (Process 14, SV1)",
	"1.2.840.10008.1.2.4.80":  "JPEG-LS Lossless",
	"1.2.840.10008.1.2.4.81":  "JPEG-LS Near-Lossless",
	"1.2.840.10008.1.2.4.90":  "JPEG 2000 Lossless Only",
	"1.2.840.10008.1.2.4.91":  "JPEG 2000",
	"1.2.840.10008.1.2.4.201": "High-Throughput JPEG 2000 Lossless Only",
	"1.2.840.10008.1.2.4.202": "High-Throughput JPEG 2000 with RPCL Options Lossless Only",
	"1.2.840.10008.1.2.4.203": "High-Throughput JPEG 2000",
	"1.2.840.10008.1.2.4.100": "MPEG2 Main Profile / Main Level",
	"1.2.840.10008.1.2.4.101": "MPEG2 Main Profile / High Level",
	"1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 High Profile",
	"1.2.840.10008.1.2.4.103": "MPEG-4 AVC/H.264 BD-compatible High Profile",
	"1.2.840.10008.1.2.4.104": "MPEG-4 AVC/H.264 High Profile For 2D Video",
	"1.2.840.10008.1.2.4.105": "MPEG-4 AVC/H.264 High Profile For 3D Video",
	"1.2.840.10008.1.2.4.106": "MPEG-4 AVC/H.264 Stereo High Profile",
	"1.2.840.10008.1.2.4.107": "HEVC/H.265 Main Profile",
	"1.2.840.10008.1.2.4.108": "HEVC/H.265 Main 10 Profile",
	"1.2.840.10008.1.2.5":     "RLE Lossless",
}

// Tags the reader looks at: group<<16 | element.
const (
	tagMetaGroupLength   = 0x00020000
	tagTransferSyntax    = 0x00020010
	tagSOPClassUID       = 0x00080016
	tagPatientID         = 0x00100020
	tagSamplesPerPixel   = 0x00280002
	tagPhotometric       = 0x00280004
	tagPlanarConfig      = 0x00280006
	tagNumberOfFrames    = 0x00280008
	tagRows              = 0x00280010
	tagColumns           = 0x00280011
	tagBitsAllocated     = 0x00280100
	tagBitsStored        = 0x00280101
	tagPixelRepresentate = 0x00280103
	tagPixelData         = 0x7fe00010
	tagItem              = 0xfffee000
	tagItemDelim         = 0xfffee00d
	tagSequenceDelim     = 0xfffee0dd
)

// undefinedLength marks a sequence, item or encapsulated pixel data whose
// end is a delimiter.
const undefinedLength = 0xffffffff

// maxDICOMDepth bounds nested sequences of undefined length.
const maxDICOMDepth = 32

// dicomFile is what the reader keeps of a DICOM file.
type dicomFile struct {
	transferSyntax string
	sopClass       string
	patientID      string
	samples        int
	photometric    string
	planar         int
	frames         int
	rows, cols     int
	bitsAllocated  int
	bitsStored     int
	pixelRep       int
	// pixels is the native PixelData value, or for encapsulated data the
	// first frame's compressed bitstream; encapsulated says which.
	pixels       []byte
	encapsulated bool
	hasPixels    bool
}

// isDICOM reports a DICOM Part 10 file: a 128-byte preamble, then "DICM".
func isDICOM(data []byte) bool {
	return len(data) >= 132 && string(data[128:132]) == "DICM"
}

func dicomErr(sentinel error, format string, args ...any) error {
	return fmt.Errorf("decode dicom: %s: %w", fmt.Sprintf(format, args...), sentinel)
}

// dicomReader walks elements; explicit selects Explicit VR encoding.
type dicomReader struct {
	data     []byte
	explicit bool
}

// element is one data element header: value is data[off:off+length]
// unless length is undefinedLength.
type element struct {
	tag    uint32
	vr     string
	length uint32
	off    int // first byte of the value
}

// longVR are the explicit VRs with a 2-byte reserved field and a 4-byte length.
func longVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

// next reads the element header at p.
func (r *dicomReader) next(p int) (element, error) {
	d := r.data
	if p < 0 || len(d)-p < 8 {
		return element{}, dicomErr(ErrCorrupt, "premature end of data at offset %d", p)
	}
	tag := uint32(binary.LittleEndian.Uint16(d[p:]))<<16 | uint32(binary.LittleEndian.Uint16(d[p+2:]))
	// Items and delimiters have no VR in either encoding.
	if tag>>16 == 0xfffe || !r.explicit {
		return element{tag: tag, length: binary.LittleEndian.Uint32(d[p+4:]), off: p + 8}, nil
	}
	vr := string(d[p+4 : p+6])
	if vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z' {
		return element{}, dicomErr(ErrCorrupt, "element (%04x,%04x) at offset %d has no valid VR", tag>>16, tag&0xffff, p)
	}
	if longVR(vr) {
		if len(d)-p < 12 {
			return element{}, dicomErr(ErrCorrupt, "premature end of data at offset %d", p)
		}
		return element{tag: tag, vr: vr, length: binary.LittleEndian.Uint32(d[p+8:]), off: p + 12}, nil
	}
	return element{tag: tag, vr: vr, length: uint32(binary.LittleEndian.Uint16(d[p+6:])), off: p + 8}, nil
}

// value returns the element's value, checked against the data left.
func (r *dicomReader) value(e element) ([]byte, error) {
	if e.length == undefinedLength {
		return nil, dicomErr(ErrCorrupt, "element (%04x,%04x) has an undefined length", e.tag>>16, e.tag&0xffff)
	}
	if int64(e.length) > int64(len(r.data)-e.off) {
		return nil, dicomErr(ErrCorrupt, "premature end of data in element (%04x,%04x): %d bytes declared, %d left", e.tag>>16, e.tag&0xffff, e.length, len(r.data)-e.off)
	}
	return r.data[e.off : e.off+int(e.length)], nil
}

// forValue is the reader for an element's contents: a UN element of
// undefined length holds an Implicit VR Little Endian sequence (PS3.5
// 6.2.2), whatever the data set's encoding.
func (r *dicomReader) forValue(e element) *dicomReader {
	if e.vr == "UN" && r.explicit {
		return &dicomReader{data: r.data, explicit: false}
	}
	return r
}

// skipUndefined walks the contents of a sequence or item of undefined
// length starting at p and returns the offset after its delimiter: end is
// tagSequenceDelim for a sequence, tagItemDelim for an item.
func (r *dicomReader) skipUndefined(p int, end uint32, depth int) (int, error) {
	if depth > maxDICOMDepth {
		return 0, dicomErr(ErrCorrupt, "sequences nested deeper than %d", maxDICOMDepth)
	}
	for {
		e, err := r.next(p)
		if err != nil {
			return 0, err
		}
		switch {
		case e.tag == end:
			return e.off, nil // delimiters have a zero length
		case e.tag == tagSequenceDelim || e.tag == tagItemDelim:
			return 0, dicomErr(ErrCorrupt, "unexpected delimiter (%04x,%04x) at offset %d", e.tag>>16, e.tag&0xffff, p)
		case e.length == undefinedLength && e.tag == tagItem:
			p, err = r.skipUndefined(e.off, tagItemDelim, depth+1)
		case e.length == undefinedLength:
			// A sequence (SQ, or UN / implicit VR of undefined length).
			p, err = r.forValue(e).skipUndefined(e.off, tagSequenceDelim, depth+1)
		default:
			var v []byte
			v, err = r.value(e)
			p = e.off + len(v)
		}
		if err != nil {
			return 0, err
		}
	}
}

// parseDICOM reads the file meta group and the data set up to the pixel data.
func parseDICOM(data []byte) (*dicomFile, error) {
	if !isDICOM(data) {
		return nil, dicomErr(ErrNotAnImage, "no DICM marker after the 128-byte preamble")
	}
	f := &dicomFile{frames: 1}
	// File meta information: always Explicit VR Little Endian, group 0002.
	meta := &dicomReader{data: data, explicit: true}
	p := 132
	for len(data)-p >= 4 && binary.LittleEndian.Uint16(data[p:]) == 0x0002 {
		e, err := meta.next(p)
		if err != nil {
			return nil, err
		}
		v, err := meta.value(e)
		if err != nil {
			return nil, err
		}
		if e.tag == tagTransferSyntax {
			f.transferSyntax = trimDICOMString(v)
		}
		p = e.off + len(v)
	}
	switch f.transferSyntax {
	case "":
		return nil, dicomErr(ErrCorrupt, "file meta information has no transfer syntax (0002,0010)")
	case tsImplicitLE, tsExplicitLE, tsJPEGBaseline:
	default:
		name := unsupportedSyntaxes[f.transferSyntax]
		if name == "" {
			name = "unknown"
		}
		return nil, dicomErr(ErrUnsupportedImage, "transfer syntax %s (%s) is not supported: eyeflow reads Implicit VR Little Endian, Explicit VR Little Endian and JPEG Baseline (Process 1)", f.transferSyntax, name)
	}
	r := &dicomReader{data: data, explicit: f.transferSyntax != tsImplicitLE}
	for p < len(data) {
		e, err := r.next(p)
		if err != nil {
			return nil, err
		}
		if e.tag == tagPixelData {
			if err := f.readPixelData(r, e); err != nil {
				return nil, err
			}
			break
		}
		if e.length == undefinedLength {
			end := uint32(tagSequenceDelim)
			if e.tag == tagItem {
				end = tagItemDelim
			}
			if p, err = r.forValue(e).skipUndefined(e.off, end, 1); err != nil {
				return nil, err
			}
			continue
		}
		v, err := r.value(e)
		if err != nil {
			return nil, err
		}
		if err := f.set(e.tag, v); err != nil {
			return nil, err
		}
		p = e.off + len(v)
	}
	return f, nil
}

// set records the attributes decoding needs.
func (f *dicomFile) set(tag uint32, v []byte) error {
	us := func() (int, error) {
		if len(v) < 2 {
			return 0, dicomErr(ErrCorrupt, "(%04x,%04x) holds %d bytes, want a 2-byte US", tag>>16, tag&0xffff, len(v))
		}
		return int(binary.LittleEndian.Uint16(v)), nil
	}
	var err error
	switch tag {
	case tagSOPClassUID:
		f.sopClass = trimDICOMString(v)
	case tagPatientID:
		f.patientID = trimDICOMString(v)
	case tagPhotometric:
		f.photometric = trimDICOMString(v)
	case tagNumberOfFrames:
		s := trimDICOMString(v)
		n, perr := strconv.Atoi(s)
		if perr != nil || n < 1 {
			return dicomErr(ErrCorrupt, "number of frames %q", s)
		}
		f.frames = n
	case tagSamplesPerPixel:
		f.samples, err = us()
	case tagPlanarConfig:
		f.planar, err = us()
	case tagRows:
		f.rows, err = us()
	case tagColumns:
		f.cols, err = us()
	case tagBitsAllocated:
		f.bitsAllocated, err = us()
	case tagBitsStored:
		f.bitsStored, err = us()
	case tagPixelRepresentate:
		f.pixelRep, err = us()
	}
	return err
}

// readPixelData keeps the native value, or the first frame of
// encapsulated (compressed) data: the fragments after the Basic Offset
// Table up to the one that ends the JPEG stream (EOI), joined.
func (f *dicomFile) readPixelData(r *dicomReader, e element) error {
	f.hasPixels = true
	if e.length != undefinedLength {
		if f.transferSyntax == tsJPEGBaseline {
			return dicomErr(ErrCorrupt, "JPEG Baseline pixel data is not encapsulated")
		}
		v, err := r.value(e)
		if err != nil {
			return err
		}
		f.pixels = v
		return nil
	}
	if f.transferSyntax != tsJPEGBaseline {
		return dicomErr(ErrCorrupt, "native pixel data has an undefined length")
	}
	f.encapsulated = true
	var frags [][]byte
	p := e.off
	for first := true; ; first = false {
		it, err := r.next(p)
		if err != nil {
			return err
		}
		if it.tag == tagSequenceDelim {
			break
		}
		if it.tag != tagItem {
			return dicomErr(ErrCorrupt, "encapsulated pixel data holds (%04x,%04x), want items", it.tag>>16, it.tag&0xffff)
		}
		v, err := r.value(it)
		if err != nil {
			return err
		}
		p = it.off + len(v)
		if first {
			continue // the Basic Offset Table
		}
		frags = append(frags, v)
		if endsJPEG(v) {
			break // the first frame is complete
		}
	}
	switch len(frags) {
	case 0:
		return dicomErr(ErrCorrupt, "encapsulated pixel data has no fragments")
	case 1:
		f.pixels = frags[0]
	default:
		f.pixels = bytes.Join(frags, nil)
	}
	return nil
}

// endsJPEG reports a fragment that ends a JPEG stream (EOI, then at most
// the one byte of padding that keeps fragments even).
func endsJPEG(b []byte) bool {
	b = bytes.TrimSuffix(b, []byte{0})
	return len(b) >= 2 && b[len(b)-2] == 0xff && b[len(b)-1] == 0xd9
}

func trimDICOMString(v []byte) string { return strings.Trim(string(v), " \x00") }

// dicomSize is Sniff for DICOM: Columns x Rows of the image.
func dicomSize(data []byte) (w, h int, f *dicomFile, err error) {
	f, err = parseDICOM(data)
	if err != nil {
		return 0, 0, nil, err
	}
	if !f.hasPixels {
		return 0, 0, nil, dicomErr(ErrNotAnImage, "the object has no pixel data (SOP class %s)", orNone(f.sopClass))
	}
	if f.rows <= 0 || f.cols <= 0 {
		return 0, 0, nil, dicomErr(ErrCorrupt, "rows %d, columns %d", f.rows, f.cols)
	}
	return f.cols, f.rows, f, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// checkPixelModule refuses images outside what decodeDICOM reads.
func (f *dicomFile) checkPixelModule() error {
	if f.bitsAllocated == 0 {
		return dicomErr(ErrCorrupt, "no bits allocated (0028,0100)")
	}
	if f.bitsAllocated != 8 || (f.bitsStored != 0 && f.bitsStored != 8) {
		return dicomErr(ErrUnsupportedImage, "%d bits allocated, %d stored: only 8-bit images are supported", f.bitsAllocated, f.bitsStored)
	}
	if f.pixelRep != 0 {
		return dicomErr(ErrUnsupportedImage, "signed pixel data is not supported")
	}
	switch f.photometric {
	case "MONOCHROME1", "MONOCHROME2":
		if f.samples != 1 {
			return dicomErr(ErrCorrupt, "%s with %d samples per pixel", f.photometric, f.samples)
		}
	case "RGB", "YBR_FULL", "YBR_FULL_422":
		if f.samples != 3 {
			return dicomErr(ErrCorrupt, "%s with %d samples per pixel", f.photometric, f.samples)
		}
	case "":
		return dicomErr(ErrCorrupt, "no photometric interpretation (0028,0004)")
	default:
		return dicomErr(ErrUnsupportedImage, "photometric interpretation %s is not supported: eyeflow reads MONOCHROME1, MONOCHROME2, RGB, YBR_FULL and YBR_FULL_422", f.photometric)
	}
	return nil
}

// decodeDICOM decodes the first frame of a parsed DICOM file and resizes
// it. The caller has checked Rows x Columns against the pixel limit.
func decodeDICOM(f *dicomFile, opts Options) (*RGB8, error) {
	if err := f.checkPixelModule(); err != nil {
		return nil, err
	}
	if f.encapsulated {
		return decodeDICOMJPEG(f, opts)
	}
	src, err := dicomNativeRGB(f)
	if err != nil {
		return nil, err
	}
	return Resize(src, opts.Width, opts.Height), nil
}

// decodeDICOMJPEG decodes a JPEG Baseline frame with the JPEG path (libjpeg
// converts YBR_FULL_422 to RGB itself), after checking that the frame is
// the size the DICOM header declared, so the pixel limit checked on the
// header holds for the frame.
func decodeDICOMJPEG(f *dicomFile, opts Options) (*RGB8, error) {
	if !bytes.HasPrefix(f.pixels, []byte{0xff, 0xd8, 0xff}) {
		return nil, dicomErr(ErrCorrupt, "JPEG Baseline frame does not start with a JPEG marker")
	}
	w, h, err := jpegSize(f.pixels)
	if err != nil {
		return nil, fmt.Errorf("decode dicom: frame: %w", err)
	}
	if w != f.cols || h != f.rows {
		return nil, dicomErr(ErrCorrupt, "JPEG frame is %dx%d, the header says %dx%d", w, h, f.cols, f.rows)
	}
	out, _, err := decodeJPEGResized(f.pixels, opts)
	if err != nil {
		return nil, fmt.Errorf("decode dicom: frame: %w", err)
	}
	if f.photometric == "MONOCHROME1" {
		invert(out.Pix)
	}
	return out, nil
}

// dicomNativeRGB converts the first native frame to packed RGB.
func dicomNativeRGB(f *dicomFile) (*RGB8, error) {
	w, h := f.cols, f.rows
	n := w * h
	need := n * f.samples
	if f.photometric == "YBR_FULL_422" {
		if w%2 != 0 {
			return nil, dicomErr(ErrCorrupt, "YBR_FULL_422 with an odd width %d", w)
		}
		need = 2 * n // Y Y Cb Cr for every two pixels
	}
	if len(f.pixels) < need {
		return nil, dicomErr(ErrCorrupt, "pixel data holds %d bytes, one %dx%d frame needs %d", len(f.pixels), w, h, need)
	}
	px := f.pixels[:need]
	out := NewRGB8(w, h)
	d := out.Pix
	switch f.photometric {
	case "MONOCHROME1", "MONOCHROME2":
		for i, v := range px {
			d[3*i], d[3*i+1], d[3*i+2] = v, v, v
		}
		if f.photometric == "MONOCHROME1" {
			invert(d)
		}
	case "RGB", "YBR_FULL":
		if f.planar == 1 {
			for i := range n {
				d[3*i], d[3*i+1], d[3*i+2] = px[i], px[n+i], px[2*n+i]
			}
		} else {
			copy(d, px)
		}
		if f.photometric == "YBR_FULL" {
			for i := 0; i < len(d); i += 3 {
				d[i], d[i+1], d[i+2] = color.YCbCrToRGB(d[i], d[i+1], d[i+2])
			}
		}
	case "YBR_FULL_422":
		if f.planar != 0 {
			return nil, dicomErr(ErrCorrupt, "YBR_FULL_422 with planar configuration %d", f.planar)
		}
		for i := 0; i < n; i += 2 {
			y0, y1, cb, cr := px[2*i], px[2*i+1], px[2*i+2], px[2*i+3]
			d[3*i], d[3*i+1], d[3*i+2] = color.YCbCrToRGB(y0, cb, cr)
			d[3*i+3], d[3*i+4], d[3*i+5] = color.YCbCrToRGB(y1, cb, cr)
		}
	}
	return out, nil
}

func invert(b []byte) {
	for i, v := range b {
		b[i] = 255 - v
	}
}
