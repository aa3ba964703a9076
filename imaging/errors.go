package imaging

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them, so callers can classify with errors.Is. All three mean "bad input, do
// not retry".
var (
	// ErrTooLarge: the header declares more pixels than Options.MaxPixels
	// (decompression bomb guard); detected before pixel data is allocated.
	ErrTooLarge = errors.New("image too large")
	// ErrUnsupported: not an image, or a format/feature this package does not decode.
	ErrUnsupported = errors.New("unsupported image")
	// ErrCorrupt: empty, truncated or otherwise malformed image data.
	ErrCorrupt = errors.New("corrupt image")
)

// ErrUnsupportedEncoding refines ErrUnsupported (and wraps it): a file in a
// recognised format whose encoding or feature is not read, e.g. a DICOM
// transfer syntax such as JPEG 2000, 16-bit DICOM pixel data, a PNG or TIFF
// feature the Go decoders lack. It is an image, just not one eyeflow reads;
// the message names what was found.
var ErrUnsupportedEncoding = fmt.Errorf("unsupported encoding: %w", ErrUnsupported)
