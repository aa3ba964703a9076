package trainer

import (
	"context"
	"errors"
	"time"

	"eyeflow/models"

	"github.com/rs/zerolog"
)

// Engines by name.
const (
	EngineEmbedded = "embedded"
	EngineTorch    = "torch"
	// EnginePushed marks a version a person registered (eyeflow model push).
	EnginePushed = "pushed"
)

// Example is one labelled image of the dataset: the 224x224 PNG the resize
// stage wrote, in the splitter's layout
// processed/transformed_eye_dataset/<split>/<class>/<image-id>.png.
type Example struct {
	ImageID string `json:"image_id"`
	Class   string `json:"class"`
	Split   string `json:"split"`
	Bucket  string `json:"bucket"`
	Key     string `json:"key"`
}

// ImageSource reads an example's PNG bytes.
type ImageSource interface {
	PNG(ctx context.Context, ex Example) ([]byte, error)
}

// Job is one training run. Engines train on Train, may use Select
// (holdout_1) for model selection, and never see holdout_2 or holdout_3.
type Job struct {
	// Name and Version the result is registered under.
	Name, Version string
	// Classes in labels.json (ImageFolder, sorted) order; every example's
	// class is one of them.
	Classes []string
	Train   []Example
	Select  []Example
	Images  ImageSource
	// Seed makes the run repeatable.
	Seed uint64
	// WorkDir is a scratch folder the engine may fill; the caller removes it.
	WorkDir string
	// Progress, when set, receives one report per epoch (or step of work).
	Progress func(Progress)
	Log      zerolog.Logger
}

// Progress is one step of a training run.
type Progress struct {
	Epoch  int `json:"epoch"`
	Epochs int `json:"epochs"`
	// Loss is the mean training loss of the epoch.
	Loss float64 `json:"loss"`
	// SelectAccuracy and SelectMacroF1 are the epoch's holdout_1 figures.
	SelectAccuracy float64 `json:"select_accuracy"`
	SelectMacroF1  float64 `json:"select_macro_f1"`
	ImagesPerSec   float64 `json:"images_per_sec"`
	Message        string  `json:"message,omitempty"`
}

// Result is a trained model: the three files of a registry version (the
// card's Training section filled in) ready to push.
type Result struct {
	Files models.ModelFiles
	// Skipped are examples the engine could not read; it trained without them.
	Skipped []Skipped
	// Seconds is the wall time of the run.
	Seconds time.Duration
}

// Engine trains a classifier. Implementations: the embedded Go engine (a
// head on frozen backbone features) and the PyTorch engine (full
// fine-tuning in a child process).
type Engine interface {
	// Name is the engine's name (EngineEmbedded, EngineTorch).
	Name() string
	// Settings are the hyperparameters that shape the result: they enter
	// the version's digest, so changing one trains a new version.
	Settings() map[string]any
	// Train runs a job. An error wrapping ErrRefused is a run that ended
	// without a usable model (one class, a non-finite loss, a crashed or
	// hung child): the trainer reports it as a refused event and does not
	// retry it.
	Train(ctx context.Context, job Job) (Result, error)
}

// Warmer is an engine that can prepare examples ahead of a run (the
// embedded engine computes their features); the trainer calls it for new
// dataset images while it waits for the dataset to settle.
type Warmer interface {
	Warm(ctx context.Context, exs []Example, images ImageSource) (int, error)
}

// ErrRefused marks a training run that cannot produce a model from this
// data or these settings: retrying the same request would fail the same way.
var ErrRefused = errors.New("training refused")
