//go:build !cgo

package imaging

import (
	"bytes"
	"image/jpeg"
)

// decodeJPEGResized without cgo: a full-size decode with image/jpeg. Correct
// but several times slower than the libjpeg-turbo path and without CMYK
// Adobe handling parity; production builds use cgo.
func decodeJPEGResized(data []byte, opts Options) (*RGB8, int, error) {
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, 1, classify(FormatJPEG, err)
	}
	orient := 1
	if app1 := jpegEXIF(data); app1 != nil {
		orient = exifOrientation(app1)
	}
	return Resize(Orient(toRGB8(img), orient), opts.Width, opts.Height), orient, nil
}

// jpegEXIF returns the first APP1 "Exif" segment payload, or nil.
func jpegEXIF(data []byte) []byte {
	p := 2
	for p+4 <= len(data) && data[p] == 0xff {
		m := data[p+1]
		if m == 0xda || m == 0xd9 {
			return nil
		}
		n := int(data[p+2])<<8 | int(data[p+3])
		if n < 2 || p+2+n > len(data) {
			return nil
		}
		seg := data[p+4 : p+2+n]
		if m == 0xe1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return seg
		}
		p += 2 + n
	}
	return nil
}
