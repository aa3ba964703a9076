package imaging

import (
	"errors"

	"eyeflow/schemas"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// ErrTooLarge, ErrUnsupported and ErrCorrupt, and an ErrUnsupported one
// exactly one of its refinements, ErrNotAnImage and ErrUnsupportedImage, so
// callers can classify with errors.Is (Reason does it for dead letters).
// All of them mean "bad input, do not retry".
var (
	// ErrTooLarge: the header declares more pixels than Options.MaxPixels
	// (decompression bomb guard); detected before pixel data is allocated.
	ErrTooLarge = errors.New("image too large")
	// ErrUnsupported: bytes this package does not decode, refined by
	// ErrNotAnImage or ErrUnsupportedImage.
	ErrUnsupported = errors.New("not decoded")
	// ErrCorrupt: a recognised, supported format whose data is empty,
	// truncated or otherwise malformed.
	ErrCorrupt = errors.New("corrupt image")
)

// refined is a sentinel that is also its parent for errors.Is, with a
// message of its own (so "not an image" does not read "not decoded: ...").
type refined struct {
	msg    string
	parent error
}

func (e *refined) Error() string { return e.msg }
func (e *refined) Unwrap() error { return e.parent }

var (
	// ErrNotAnImage refines ErrUnsupported: the bytes are no image at all
	// (no image format recognised; a DICOM object without pixel data).
	ErrNotAnImage error = &refined{"not an image", ErrUnsupported}
	// ErrUnsupportedImage refines ErrUnsupported: a recognised image that
	// eyeflow does not decode, in a format it does not read (GIF, BMP, JPEG
	// 2000, HEIF, ...) or an encoding or feature it does not read (a DICOM
	// transfer syntax such as JPEG-LS, 16-bit DICOM pixels, arithmetic-coded
	// JPEG, a PNG or TIFF feature the Go decoders lack). The message names
	// what was found.
	ErrUnsupportedImage error = &refined{"unsupported image", ErrUnsupported}
	// ErrUnsupportedEncoding is the former name of ErrUnsupportedImage.
	//
	// Deprecated: use ErrUnsupportedImage.
	ErrUnsupportedEncoding = ErrUnsupportedImage
)

// Reason is the dead-letter reason of a decode error, the one mapping from
// this package's errors to schemas' reasons (the rule is written there, at
// ReasonNotAnImage): too_large, not_an_image, unsupported_image, else
// corrupt_image (decoding is deterministic: any other failure of a
// recognised format is its data's).
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrTooLarge):
		return schemas.ReasonTooLarge
	case errors.Is(err, ErrNotAnImage):
		return schemas.ReasonNotAnImage
	case errors.Is(err, ErrUnsupported):
		return schemas.ReasonUnsupportedImage
	}
	return schemas.ReasonCorruptImage
}
