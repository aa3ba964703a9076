//go:build !cgo

package jpegtest

import "errors"

// ColorSpace selects the encoded colour space.
type ColorSpace int

const (
	Gray ColorSpace = iota
	YCbCr
	CMYK
	YCCK
)

// ErrNoCgo: the encoder needs libjpeg; tests skip the affected cases.
var ErrNoCgo = errors.New("jpegtest: built without cgo")

// Encode is unavailable without cgo.
func Encode(pix []byte, w, h int, cs ColorSpace, quality int, progressive bool) ([]byte, error) {
	return nil, ErrNoCgo
}
