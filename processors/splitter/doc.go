// Package splitter is the stage between resize and the classifier: it
// consumes eye.resized, assigns every labelled image to train or to one of
// three holdouts (the test part), publishes eye.split.<split>, and copies the
// processed PNG into the dataset layout the training and dashboard code read,
// transformed_eye_dataset/{train,test,holdout_1,holdout_2,holdout_3}/<class>/<image-id>.png
// in the processed bucket (a test image under test/ and under its holdout).
//
// The split is a pure function of (salt, split key): the first 64 bits of
// SHA-256 over the salt and the key are compared with fixed thresholds
// (train below 0.8 of the range, the rest cut into three equal holdouts). The
// split key is the patient when the upload names one (object metadata
// patient-id, a DICOM file's PatientID, or an operator-configured key
// pattern), so both eyes and every visit of a patient share a split;
// otherwise it is the image's content hash,
// so a duplicate photograph lands in the same split under any name, on any
// machine, on every replay. No state is kept and arrival order never matters.
// The class does not enter the hash, because a patient's two eyes may carry
// different classes and must still share a split; stratification per class
// therefore holds in expectation with binomial spread, which is the best any
// pure per-image function can do on unseen keys (see BENCHMARKS.md, "##
// Splitter", for the measurement and the rejected order-dependent scheme).
//
// A patient is keyed by PatientHash, the one home of the hashing rule: the
// salted SHA-256 of the id, which is also the patient's split hash. The
// resize stage hashes metadata and DICOM ids with the splitter's salt and
// publishes only the hash (Resized.PatientHash); the splitter hashes ids it
// finds itself (the key pattern, or a raw patient_id from another producer)
// the same way, and eye.split carries the hash and never a raw id.
//
// Unlabeled images go to the unlabeled split: they are published for the
// classifier but never copied into the dataset. The package also answers
// "which split would this file get?" (Explain) and counts the dataset by
// listing the bucket (Report).
package splitter
