// Package resize is the first stage of the pipeline: for every eye.uploads
// event it reads the uploaded object, decodes and resizes it to the model's
// 224x224 RGB input with the imaging package (PIL-bilinear parity), stores the
// result as a PNG in the processed bucket and publishes eye.resized with the
// image id (sha256 of the original bytes), the source, the class from the key
// and the pixels themselves. Uploads may be JPEG, PNG, TIFF, WebP or DICOM.
//
// The patient of an upload (its user metadata patient-id, else a DICOM file's
// PatientID) is published only as its pseudonym under the deployment's rule
// (package security/pseudonym, the same rule the splitter keys patients
// with): raw ids, names, birth dates and other identifying DICOM attributes
// never leave this stage.
//
// Bad input (empty, corrupt, not an image, an unsupported encoding such as a
// DICOM transfer syntax eyeflow does not read, too large, deleted before it
// was read) is reported as a permanent error with a reason, so the runtime
// dead-letters it and the next image flows.
package resize
