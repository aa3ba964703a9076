package schemas

// Subjects are stable public names: consumers subscribe to them directly.
const (
	SubjectUploads = "eye.uploads"
	SubjectResized = "eye.resized"
	SubjectRetrain = "eye.retrain"
	// SubjectModels carries every step of a model's life: trained,
	// evaluated, promoted, refused, rolled back.
	SubjectModels = "eye.models"

	subjectSplitPrefix      = "eye.split."
	subjectPredictionPrefix = "eye.predictions."
	subjectDriftPrefix      = "eye.drift."
	subjectDLQPrefix        = "eye.dlq."
)

// Splits an image can be assigned to.
const (
	SplitTrain     = "train"
	SplitHoldout1  = "holdout_1"
	SplitHoldout2  = "holdout_2"
	SplitHoldout3  = "holdout_3"
	SplitUnlabeled = "unlabeled"
)

// Splits lists every split in a stable order.
func Splits() []string {
	return []string{SplitTrain, SplitHoldout1, SplitHoldout2, SplitHoldout3, SplitUnlabeled}
}

// Environments a model version can be promoted to.
const (
	EnvProd    = "prod"
	EnvCanary  = "canary"
	EnvStaging = "staging"
)

// Envs lists every environment in a stable order.
func Envs() []string { return []string{EnvProd, EnvCanary, EnvStaging} }

// Stage names, used in DLQ subjects, consumer names and metrics labels.
const (
	StageResize     = "resize"
	StageSplitter   = "splitter"
	StageClassifier = "classifier"
	StageDriftwatch = "driftwatch"
	StageLabelsink  = "labelsink"
	StageTrainer    = "trainer"
	// StageIngest names the upload ledger (ingest.LedgerProcessor) in dead
	// letters, consumer names and metrics; it is not a pipeline stage, so
	// Stages does not list it.
	StageIngest = "ingest"
)

// Stages lists every stage in pipeline order.
func Stages() []string {
	return []string{StageResize, StageSplitter, StageClassifier, StageDriftwatch, StageLabelsink, StageTrainer}
}

// SplitSubject is eye.split.<split>.
func SplitSubject(split string) string { return subjectSplitPrefix + split }

// PredictionSubject is eye.predictions.<env>.
func PredictionSubject(env string) string { return subjectPredictionPrefix + env }

// DriftSubject is eye.drift.<env>.
func DriftSubject(env string) string { return subjectDriftPrefix + env }

// DLQSubject is eye.dlq.<stage>.
func DLQSubject(stage string) string { return subjectDLQPrefix + stage }

// Wildcards covering each family of subjects.
const (
	SubjectSplitAll       = subjectSplitPrefix + "*"
	SubjectPredictionsAll = subjectPredictionPrefix + "*"
	SubjectDriftAll       = subjectDriftPrefix + "*"
	SubjectDLQAll         = subjectDLQPrefix + "*"
)
