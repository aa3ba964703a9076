package imaging

import "errors"

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
