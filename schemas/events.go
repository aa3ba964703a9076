package schemas

import "time"

// Schema identifiers carried in every event's "schema" field.
const (
	SchemaResized    = "eyeflow.resized.v1"
	SchemaSplit      = "eyeflow.split.v1"
	SchemaPrediction = "eyeflow.prediction.v1"
	SchemaDrift      = "eyeflow.drift.v1"
	SchemaRetrain    = "eyeflow.retrain.v1"
	SchemaDeadLetter = "eyeflow.deadletter.v1"
	SchemaModel      = "eyeflow.model.v1"
)

// ObjectRef points at one object in a bucket.
type ObjectRef struct {
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	ETag      string `json:"etag,omitempty"`
	VersionID string `json:"version_id,omitempty"`
	Size      int64  `json:"size,omitempty"`
}

// Resized is published on eye.resized once an upload has been decoded and
// resized to the model's input size.
type Resized struct {
	Schema  string `json:"schema"`
	ImageID string `json:"image_id"` // sha256 of the original bytes, hex
	// UploadID is the upload identity (bucket/key@version-or-etag).
	UploadID string    `json:"upload_id"`
	Source   ObjectRef `json:"source"`
	// Original dimensions and format of the uploaded image.
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Format string `json:"format"`
	// Label is the class from the key (<prefix>/<class>/<file>), empty when unknown.
	Label string `json:"label,omitempty"`
	// PatientID is a raw patient identifier. eyeflow's resize stage never
	// sets it (raw ids do not leave the resize stage: it publishes
	// PatientHash); another producer may, and the splitter then
	// pseudonymises it the same way and drops it from its output.
	PatientID string `json:"patient_id,omitempty"`
	// PatientHash is the pseudonym (package security/pseudonym: 64
	// lowercase hex digits, keyed by the deployment's secret) of the
	// patient id found for the image (upload metadata patient-id, or a
	// DICOM file's PatientID): every image of a patient carries the same
	// value, and it is the patient's split key. Empty when no patient id was found.
	PatientHash string `json:"patient_hash,omitempty"`
	// PatientSaltVersion is the split salt version PatientHash was made with.
	PatientSaltVersion string `json:"patient_salt_version,omitempty"`
	// PatientSource says where the patient id came from: PatientFromMetadata,
	// PatientFromDICOM or PatientFromKey.
	PatientSource string `json:"patient_source,omitempty"`
	// Processed is the resized PNG in the processed bucket.
	Processed ObjectRef `json:"processed"`
	// RGB holds the resized pixels inline (row-major RGB, 8 bit) when the stage
	// carries them in the message; empty when consumers must read Processed.
	RGB           []byte    `json:"rgb,omitempty"`
	ResizedWidth  int       `json:"resized_width"`
	ResizedHeight int       `json:"resized_height"`
	Time          time.Time `json:"time"`
}

// Where a patient id came from (Resized.PatientSource).
const (
	// PatientFromMetadata: the upload's user metadata patient-id
	// (x-amz-meta-patient-id).
	PatientFromMetadata = "metadata"
	// PatientFromDICOM: the DICOM file's PatientID (0010,0020).
	PatientFromDICOM = "dicom"
	// PatientFromKey: the splitter's key pattern matched the object key.
	PatientFromKey = "key"
)

// Split is published on eye.split.<split>: everything the classifier needs,
// plus the split assignment and how it was computed.
type Split struct {
	Schema string `json:"schema"`
	Resized
	Split       string `json:"split"`
	Holdout     string `json:"holdout,omitempty"`
	SplitKey    string `json:"split_key_kind"` // "patient" or "content"
	SplitFunc   string `json:"split_func"`
	SaltVersion string `json:"salt_version"`
}

// ClassProb is one class and its probability.
type ClassProb struct {
	Class       string  `json:"class"`
	Probability float64 `json:"probability"`
}

// Prediction is published on eye.predictions.<env>.
type Prediction struct {
	Schema           string      `json:"schema"`
	ImageID          string      `json:"image_id"`
	UploadID         string      `json:"upload_id"`
	Source           ObjectRef   `json:"source"`
	Split            string      `json:"split,omitempty"`
	Holdout          string      `json:"holdout,omitempty"`
	TrueLabel        string      `json:"true_label,omitempty"`
	Env              string      `json:"env"`
	ModelName        string      `json:"model_name"`
	ModelVersion     string      `json:"model_version"`
	Provider         string      `json:"provider"`
	PredictedClass   string      `json:"predicted_class"`
	Confidence       float64     `json:"confidence"`
	TopK             []ClassProb `json:"top_k"`
	BatchSize        int         `json:"batch_size"`
	InferenceSeconds float64     `json:"inference_seconds"`
	Time             time.Time   `json:"time"`
}

// DriftAlert is published on eye.drift.<env> when a drift signal starts
// (state "firing") or stops (state "resolved").
type DriftAlert struct {
	Schema       string    `json:"schema"`
	AlertID      string    `json:"alert_id"`
	Env          string    `json:"env"`
	ModelVersion string    `json:"model_version"`
	Signal       string    `json:"signal"`
	State        string    `json:"state"`
	ImageIDs     []string  `json:"image_ids,omitempty"`
	Confidences  []float64 `json:"confidences,omitempty"`
	From         time.Time `json:"from,omitzero"`
	To           time.Time `json:"to,omitzero"`
	Detail       string    `json:"detail,omitempty"`
	Time         time.Time `json:"time"`
	// Statistic and PValue are the test result of a distribution signal
	// (entropy_ks: the KS D statistic; class_chi2: the chi-square statistic).
	Statistic float64 `json:"statistic,omitempty"`
	PValue    float64 `json:"p_value,omitempty"`
	// Threshold is the rule's threshold: the confidence bound of
	// low_confidence_streak, the p-value bound of a distribution signal.
	Threshold float64 `json:"threshold,omitempty"`
	// SampleSize is the number of predictions the signal was computed over;
	// ReferenceSize the size of the reference it was compared with.
	SampleSize    int `json:"sample_size,omitempty"`
	ReferenceSize int `json:"reference_size,omitempty"`
}

// Retrain kinds: driftwatch asks for labels (requested); labelsink answers
// with the training set once they are in (manifest_ready), which the trainer
// trains on.
const (
	RetrainRequested     = "requested"
	RetrainManifestReady = "manifest_ready"
)

// ManifestLine is one line of a retrain manifest (manifest.jsonl), the
// training set labelsink writes for the trainer.
type ManifestLine struct {
	Bucket  string `json:"bucket"`
	Key     string `json:"key"`
	Class   string `json:"class"`
	ImageID string `json:"image_id,omitempty"`
	// Origin is ManifestOriginTrain (the training split) or
	// ManifestOriginLabelled (newly labelled for this event).
	Origin string `json:"origin"`
}

// Manifest line origins.
const (
	ManifestOriginTrain    = "train"
	ManifestOriginLabelled = "labelled"
)

// Retrain is published on eye.retrain when retraining is requested, and again
// when its manifest is ready.
type Retrain struct {
	Schema       string      `json:"schema"`
	EventID      string      `json:"event_id"`
	Kind         string      `json:"kind"` // RetrainRequested or RetrainManifestReady
	Reason       string      `json:"reason"`
	Env          string      `json:"env"`
	ModelVersion string      `json:"model_version"`
	AlertID      string      `json:"alert_id,omitempty"`
	Samples      []ObjectRef `json:"samples,omitempty"`
	Manifest     *ObjectRef  `json:"manifest,omitempty"`
	Time         time.Time   `json:"time"`
	// Predictions are the predictions behind Samples, in the same order, so
	// a labelling tool can show the model's answer as a pre-annotation.
	Predictions []Prediction `json:"predictions,omitempty"`
	// Labelled counts the newly labelled images in the manifest
	// (manifest_ready only).
	Labelled int `json:"labelled,omitempty"`
}

// DeadLetter is published on eye.dlq.<stage> when a stage gives up on a
// message: bad input (Permanent) or too many failed deliveries.
type DeadLetter struct {
	Schema     string    `json:"schema"`
	Stage      string    `json:"stage"`
	Subject    string    `json:"subject"`
	Stream     string    `json:"stream"`
	Sequence   uint64    `json:"sequence"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"` // short machine-readable cause, e.g. "bad_input", "max_deliveries"
	Error      string    `json:"error"`
	Permanent  bool      `json:"permanent"`
	MsgID      string    `json:"msg_id,omitempty"`
	Payload    []byte    `json:"payload"` // the original message body
	Time       time.Time `json:"time"`
}

// Kinds of a ModelEvent.
const (
	// ModelTrained: a trainer produced and registered a new version.
	ModelTrained = "trained"
	// ModelEvaluated: the evaluator scored a version on the holdouts.
	ModelEvaluated = "evaluated"
	// ModelPromoted: a version now serves ToEnv (FromEnv is where it served
	// before, empty for a new candidate).
	ModelPromoted = "promoted"
	// ModelRefused: a training run or a candidate was stopped; Reason says why.
	ModelRefused = "refused"
	// ModelAwaitingSignoff: the canary qualifies for prod, but automatic
	// promotion is off: a person promotes it (eyeflow model promote --to prod).
	ModelAwaitingSignoff = "awaiting_signoff"
	// ModelRolledBack: ToEnv went back from Version to PreviousVersion.
	ModelRolledBack = "rolled_back"
)

// HoldoutMetrics are one model's figures on one holdout split, computed by
// running the model through the classifier's own inference path.
type HoldoutMetrics struct {
	Images   int     `json:"images"`
	Accuracy float64 `json:"accuracy"`
	// AccuracyCI95 and MacroF1CI95 are bootstrap 95% intervals (holdouts are small).
	AccuracyCI95 [2]float64 `json:"accuracy_ci95"`
	MacroF1      float64    `json:"macro_f1"`
	MacroF1CI95  [2]float64 `json:"macro_f1_ci95"`
	// ECE is the expected calibration error over 15 equal-width confidence bins.
	ECE float64 `json:"ece"`
	// Recall and Support are per class (classes with holdout images only).
	Recall  map[string]float64 `json:"recall"`
	Support map[string]int     `json:"support"`
	// Confusion[i][j] counts images of Classes[i] predicted as Classes[j].
	Classes   []string `json:"classes"`
	Confusion [][]int  `json:"confusion"`
}

// ModelEvent is published on eye.models for every step of a model version's
// life, refusals included, so operators and the dashboard can follow it.
type ModelEvent struct {
	Schema  string `json:"schema"`
	EventID string `json:"event_id"`
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Version string `json:"version"`
	// Engine trained the version ("embedded", "torch", "pushed" for a model
	// a person registered).
	Engine  string `json:"engine,omitempty"`
	FromEnv string `json:"from_env,omitempty"`
	ToEnv   string `json:"to_env,omitempty"`
	// PreviousVersion is what ToEnv served before (promotions, rollbacks).
	PreviousVersion string `json:"previous_version,omitempty"`
	// Metrics per holdout split (holdout_1, holdout_2, holdout_3).
	Metrics     map[string]HoldoutMetrics `json:"metrics,omitempty"`
	TrainImages int                       `json:"train_images,omitempty"`
	Reason      string                    `json:"reason"`
	Time        time.Time                 `json:"time"`
}
