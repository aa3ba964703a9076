// Package dicomtest makes DICOM files for tests: a small writer in Go for
// exact and malformed files (any transfer syntax UID, native or
// encapsulated pixel data, nested sequences), and the dcmtk tools (Debian's
// dcmtk: img2dcm, dcmconv, dcmdjpeg, dcmcjpls, dcmcrle) for files written by
// an independent, widely used implementation. A missing tool fails the test
// (scripts/setup.sh installs dcmtk); it is never skipped.
package dicomtest

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Transfer syntax UIDs.
const (
	ImplicitLE   = "1.2.840.10008.1.2"
	ExplicitLE   = "1.2.840.10008.1.2.1"
	ExplicitBE   = "1.2.840.10008.1.2.2"
	JPEGBaseline = "1.2.840.10008.1.2.4.50"
	JPEG2000     = "1.2.840.10008.1.2.4.91"
	RLE          = "1.2.840.10008.1.2.5"
)

// SOP classes.
const (
	OphthalmicPhotography8Bit = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
	SecondaryCapture          = "1.2.840.10008.5.1.4.1.1.7"
)

// Identifying values the fixtures carry, for tests that check none of them
// leaves the resize stage.
const (
	PatientID        = "P-0042"
	PatientName      = "Doe^Jane"
	PatientBirthDate = "19470312"
)

// Element is one data element. Tag is group<<16 | element. A Seq element
// is written as a sequence of undefined length holding one item of
// undefined length with the given elements; with VR "UN" it is written as
// an unknown-VR element of undefined length whose contents are Implicit VR
// Little Endian, as PS3.5 6.2.2 prescribes.
type Element struct {
	Tag   uint32
	VR    string
	Value []byte
	Seq   []Element
}

// Str is a string element, padded to an even length as DICOM requires.
func Str(tag uint32, vr, s string) Element {
	if len(s)%2 == 1 {
		pad := " "
		if vr == "UI" {
			pad = "\x00"
		}
		s += pad
	}
	return Element{Tag: tag, VR: vr, Value: []byte(s)}
}

// US is an unsigned short element.
func US(tag uint32, v uint16) Element {
	return Element{Tag: tag, VR: "US", Value: binary.LittleEndian.AppendUint16(nil, v)}
}

// File is a DICOM Part 10 file to write.
type File struct {
	// TransferSyntax goes into the file meta group; empty: none is written.
	TransferSyntax string
	// Implicit writes the data set in Implicit VR (default: as the
	// transfer syntax says).
	Implicit bool
	Elements []Element
	// Pixels is native pixel data; Fragments, when set, is written as
	// encapsulated pixel data (an empty Basic Offset Table, then one item
	// per fragment). Neither: no pixel data.
	Pixels    []byte
	Fragments [][]byte
}

// Image is a File with the image pixel module and patient module filled
// in: 8-bit unsigned samples, the given photometric interpretation, one
// frame (set NumberOfFrames in Elements for more), an Ophthalmic
// Photography SOP class, and the identifying fixture values.
func Image(ts, photometric string, rows, cols, samples int, pixels []byte) File {
	return File{
		TransferSyntax: ts,
		Elements: []Element{
			Str(0x00080016, "UI", OphthalmicPhotography8Bit),
			Str(0x00080060, "CS", "OP"),
			Str(0x00100010, "PN", PatientName),
			Str(0x00100020, "LO", PatientID),
			Str(0x00100030, "DA", PatientBirthDate),
			US(0x00280002, uint16(samples)),
			Str(0x00280004, "CS", photometric),
			US(0x00280006, 0),
			US(0x00280010, uint16(rows)),
			US(0x00280011, uint16(cols)),
			US(0x00280100, 8),
			US(0x00280101, 8),
			US(0x00280102, 7),
			US(0x00280103, 0),
		},
		Pixels: pixels,
	}
}

// Set replaces (or adds, keeping tag order) elements.
func (f File) Set(es ...Element) File {
	out := append([]Element(nil), f.Elements...)
	for _, e := range es {
		i := 0
		for i < len(out) && out[i].Tag < e.Tag {
			i++
		}
		if i < len(out) && out[i].Tag == e.Tag {
			out[i] = e
		} else {
			out = append(out[:i], append([]Element{e}, out[i:]...)...)
		}
	}
	f.Elements = out
	return f
}

// Bytes encodes the file.
func (f File) Bytes() []byte {
	var meta bytes.Buffer
	writeExplicit(&meta, Element{Tag: 0x00020001, VR: "OB", Value: []byte{0, 1}})
	if f.TransferSyntax != "" {
		writeExplicit(&meta, Str(0x00020010, "UI", f.TransferSyntax))
	}
	var b bytes.Buffer
	b.Write(make([]byte, 128))
	b.WriteString("DICM")
	writeExplicit(&b, Element{Tag: 0x00020000, VR: "UL", Value: binary.LittleEndian.AppendUint32(nil, uint32(meta.Len()))})
	b.Write(meta.Bytes())
	implicit := f.Implicit || f.TransferSyntax == ImplicitLE
	for _, e := range f.Elements {
		writeElement(&b, e, implicit)
	}
	switch {
	case f.Fragments != nil:
		tag(&b, 0x7fe00010)
		if implicit {
			u32(&b, 0xffffffff)
		} else {
			b.WriteString("OB\x00\x00")
			u32(&b, 0xffffffff)
		}
		tag(&b, 0xfffee000)
		u32(&b, 0) // empty Basic Offset Table
		for _, fr := range f.Fragments {
			tag(&b, 0xfffee000)
			u32(&b, uint32(len(fr)))
			b.Write(fr)
		}
		tag(&b, 0xfffee0dd)
		u32(&b, 0)
	case f.Pixels != nil:
		writeElement(&b, Element{Tag: 0x7fe00010, VR: "OB", Value: f.Pixels}, implicit)
	}
	return b.Bytes()
}

func tag(b *bytes.Buffer, t uint32) {
	b.Write(binary.LittleEndian.AppendUint16(nil, uint16(t>>16)))
	b.Write(binary.LittleEndian.AppendUint16(nil, uint16(t)))
}

func u32(b *bytes.Buffer, v uint32) { b.Write(binary.LittleEndian.AppendUint32(nil, v)) }

func writeElement(b *bytes.Buffer, e Element, implicit bool) {
	if e.Seq != nil {
		tag(b, e.Tag)
		inner := implicit
		if !implicit {
			if e.VR == "UN" {
				b.WriteString("UN\x00\x00")
				inner = true
			} else {
				b.WriteString("SQ\x00\x00")
			}
		}
		u32(b, 0xffffffff)
		tag(b, 0xfffee000)
		u32(b, 0xffffffff)
		for _, c := range e.Seq {
			writeElement(b, c, inner)
		}
		tag(b, 0xfffee00d)
		u32(b, 0)
		tag(b, 0xfffee0dd)
		u32(b, 0)
		return
	}
	if implicit {
		tag(b, e.Tag)
		u32(b, uint32(len(e.Value)))
		b.Write(e.Value)
		return
	}
	writeExplicit(b, e)
}

func writeExplicit(b *bytes.Buffer, e Element) {
	tag(b, e.Tag)
	b.WriteString(e.VR)
	switch e.VR {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		b.Write([]byte{0, 0})
		u32(b, uint32(len(e.Value)))
	default:
		b.Write(binary.LittleEndian.AppendUint16(nil, uint16(len(e.Value))))
	}
	b.Write(e.Value)
}

// Tool runs one of dcmtk's tools in dir and fails the test with its output
// when it fails or is missing.
func Tool(t testing.TB, dir, name string, args ...string) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found: install Debian's dcmtk (scripts/setup.sh does): %v", name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// Img2DCM converts an image (JPEG, or BMP with inputFormat "BMP") into a
// DICOM file with dcmtk's img2dcm and returns it. args are extra img2dcm
// options (e.g. "-oph" for Ophthalmic Photography, "-k", "PatientID=...").
// The fixture's PatientID, PatientName and PatientBirthDate are set.
func Img2DCM(t testing.TB, img []byte, inputFormat string, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	all := []string{"-i", inputFormat,
		"-k", "PatientID=" + PatientID, "-k", "PatientName=" + PatientName, "-k", "PatientBirthDate=" + PatientBirthDate}
	all = append(all, args...)
	all = append(all, "in", "out.dcm")
	Tool(t, dir, "img2dcm", all...)
	return readFile(t, filepath.Join(dir, "out.dcm"))
}

// OphthalmicArgs are the img2dcm options for an Ophthalmic Photography 8 Bit
// object (its type 1 attributes that img2dcm cannot invent), written with
// sequences of undefined length.
func OphthalmicArgs() []string {
	return []string{"-oph", "-e", "-k", "ImageLaterality=R",
		"-k", "AcquisitionDeviceTypeCodeSequence[0].CodeValue=R-1021A",
		"-k", "AcquisitionDeviceTypeCodeSequence[0].CodingSchemeDesignator=SRT",
		"-k", "AcquisitionDeviceTypeCodeSequence[0].CodeMeaning=Fundus Camera"}
}

// Convert runs a dcmtk tool that reads one DICOM file and writes another
// (dcmconv, dcmdjpeg, dcmcjpls, dcmcrle, dcmcjpeg) with the given options.
func Convert(t testing.TB, dcm []byte, tool string, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.dcm"), dcm, 0o644); err != nil {
		t.Fatal(err)
	}
	Tool(t, dir, tool, append(append([]string(nil), args...), "in.dcm", "out.dcm")...)
	return readFile(t, filepath.Join(dir, "out.dcm"))
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
