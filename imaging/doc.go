// Package imaging owns the decode + resize step that every eyeflow stage uses
// to turn an uploaded image (JPEG, PNG, TIFF, WebP or DICOM) into the model's fixed
// size 8-bit RGB input: format sniffing and header checks (pixel limits
// against decompression bombs), decoding with EXIF orientation and alpha
// dropped as Pillow's convert("RGB") drops it, lossy WebP converted with
// libwebp's own BT.601 limited-range arithmetic and chroma upsampling (what
// Pillow links), and a bit-exact re-implementation of Pillow's
// Image.resize(..., BILINEAR) so that inference sees the same pixels the
// training side (torchvision Resize on PIL images) saw. JPEGs are decoded with
// libjpeg-turbo via cgo using DCT-domain downscaling, which is what makes this
// path fast. DICOM Part 10 files (Ophthalmic Photography, Secondary Capture:
// 8-bit native or JPEG Baseline pixel data, see dicom.go) are read by a small
// fuzzed reader of this package; their PatientID is returned for the caller
// to pseudonymise, nothing else identifying is read. All failures are typed
// (ErrTooLarge, ErrUnsupported, ErrCorrupt; ErrUnsupported is refined by
// ErrNotAnImage, bytes of no image format, and ErrUnsupportedImage, an image
// eyeflow does not decode) so callers can treat them as bad input that must
// not be retried, and Reason names each one's dead-letter reason.
package imaging
