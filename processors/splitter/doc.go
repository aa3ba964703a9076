// Package splitter is the stage between resize and the classifier: it
// consumes eye.resized, assigns every labelled image to train or to one of
// three holdouts (the test part), publishes eye.split.<split>, and copies the
// processed PNG into the dataset layout the training and dashboard code read,
// transformed_eye_dataset/{train,test,holdout_1,holdout_2,holdout_3}/<class>/<image-id>.png
// in the processed bucket (a test image under test/ and under its holdout).
//
// The split is a pure function of (salt, split key): the first 64 bits of
// SHA-256 over the salt and the key (for a patient, its pseudonym, itself
// made with the salt) are compared with fixed thresholds
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
// A patient is keyed by its pseudonym (package security/pseudonym, the one
// home of that rule: a keyed MAC of the id under the deployment's secret
// key, or the legacy salted hash for a deployment that recorded it), which
// is also the patient's split hash. The resize stage pseudonymises metadata
// and DICOM ids under the same rule and publishes only the pseudonym
// (Resized.PatientHash); the splitter pseudonymises ids it finds itself
// (the key pattern, or a raw patient_id from another producer) the same
// way, and eye.split carries the pseudonym and never a raw id.
//
// Unlabeled images go to the unlabeled split: they are published for the
// classifier but never copied into the dataset. The package also answers
// "which split would this file get?" (Explain) and counts the dataset by
// listing the bucket (Report).
package splitter
