package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"eyeflow/onnx"
	"eyeflow/schemas"
)

// Files of a model folder and of a registry entry.
const (
	FileModel  = "model.onnx"
	FileLabels = "labels.json"
	FileCard   = "model.json"
)

// Output kinds a card may declare.
const (
	OutputLogits        = "logits"
	OutputProbabilities = "probabilities"
)

const imageSize = onnx.ImageSize

// ImageNet normalisation, the torchvision default the models are trained with.
var (
	ImageNetMean = [3]float64{0.485, 0.456, 0.406}
	ImageNetStd  = [3]float64{0.229, 0.224, 0.225}
)

// Card is model.json: what the model expects and returns.
type Card struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch,omitempty"`
	Input   struct {
		Name string `json:"name"`
		// Shape is [-1, 3, 224, 224]: -1 is the dynamic batch axis.
		Shape []int64 `json:"shape"`
		DType string  `json:"dtype"`
	} `json:"input"`
	Output struct {
		Name string `json:"name"`
		// Kind is "logits" (softmax is applied in Go) or "probabilities".
		Kind string `json:"kind"`
	} `json:"output"`
	Mean [3]float64 `json:"mean"`
	Std  [3]float64 `json:"std"`
	// Labels is the number of classes in labels.json.
	Labels int `json:"labels"`
	// LabelOrder documents how labels.json is ordered: "imagefolder"
	// (sorted, as torchvision's ImageFolder assigns class indices).
	LabelOrder  string `json:"label_order"`
	Description string `json:"description,omitempty"`
	// Training says how a trained version was made; absent on synthetic
	// and hand-made models.
	Training *Training `json:"training,omitempty"`
	// Metrics are the evaluator's holdout figures, keyed by holdout split,
	// for versions evaluated before they were registered.
	Metrics map[string]schemas.HoldoutMetrics `json:"metrics,omitempty"`
	// MaxBatch, when set, is the largest batch the model is built for (a
	// TensorRT engine's profile, a memory budget): the classifier runs at
	// most this many images at once, and this many when --max-batch is not
	// given (MaxBatchFor).
	MaxBatch int `json:"max_batch,omitempty"`
}

// Training is the model card's account of a training run.
type Training struct {
	Engine string `json:"engine"`
	// DatasetDigest identifies the training set (image ids and classes).
	DatasetDigest string `json:"dataset_digest"`
	TrainImages   int    `json:"train_images"`
	SelectImages  int    `json:"select_images"`
	// Skipped counts images named by the request that could not be used,
	// by reason.
	Skipped  map[string]int `json:"skipped,omitempty"`
	Settings map[string]any `json:"settings,omitempty"`
	Device   string         `json:"device,omitempty"`
	Seconds  float64        `json:"seconds"`
	// ImagesPerSec is the training throughput (feature extraction for the
	// embedded engine, epochs x images for PyTorch).
	ImagesPerSec float64 `json:"images_per_sec,omitempty"`
	// Epochs are the per-epoch figures, when the engine has epochs.
	Epochs []map[string]any `json:"epochs,omitempty"`
	// Extra holds engine details: library versions, selection results.
	Extra map[string]any `json:"extra,omitempty"`
}

// NewCard is the card of a model with the standard input and output.
func NewCard(name, version, arch, kind string, labels int) Card {
	var c Card
	c.Name, c.Version, c.Arch = name, version, arch
	c.Input.Name, c.Input.Shape, c.Input.DType = onnx.InputName, []int64{-1, 3, imageSize, imageSize}, "float32"
	c.Output.Name, c.Output.Kind = onnx.OutputName, kind
	c.Mean, c.Std = ImageNetMean, ImageNetStd
	c.Labels = labels
	c.LabelOrder = "imagefolder"
	return c
}

// validate checks the card on its own (the model is checked against it at load).
func (c Card) validate() error {
	var errs []error
	if c.Name == "" || c.Version == "" {
		errs = append(errs, errors.New("name and version are required"))
	}
	if c.Input.Name == "" || c.Output.Name == "" {
		errs = append(errs, errors.New("input.name and output.name are required"))
	}
	if !slices.Equal(c.Input.Shape, []int64{-1, 3, imageSize, imageSize}) {
		errs = append(errs, fmt.Errorf("input.shape %v: the classifier feeds [-1, 3, %d, %d] (dynamic batch, RGB, resized)", c.Input.Shape, imageSize, imageSize))
	}
	if c.Input.DType != "float32" {
		errs = append(errs, fmt.Errorf("input.dtype %q: want float32", c.Input.DType))
	}
	if c.Output.Kind != OutputLogits && c.Output.Kind != OutputProbabilities {
		errs = append(errs, fmt.Errorf("output.kind %q: want %q or %q", c.Output.Kind, OutputLogits, OutputProbabilities))
	}
	for i := range 3 {
		if !(c.Std[i] > 0) {
			errs = append(errs, fmt.Errorf("std %v: every channel must be positive", c.Std))
			break
		}
	}
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("max_batch %d: want 0 (the device's default) or more", c.MaxBatch))
	}
	if c.LabelOrder != "" && c.LabelOrder != "imagefolder" {
		errs = append(errs, fmt.Errorf("label_order %q: only \"imagefolder\" (sorted class names) is supported", c.LabelOrder))
	}
	return errors.Join(errs...)
}

// ParseCard reads model.json and checks it on its own: the pure-Go half of
// LoadModel's validation, run before any byte reaches ONNX Runtime.
func ParseCard(data []byte) (Card, error) {
	var card Card
	if err := json.Unmarshal(data, &card); err != nil {
		return Card{}, fmt.Errorf("model.json: %w", err)
	}
	if err := card.validate(); err != nil {
		return Card{}, fmt.Errorf("model.json of %s %s: %w", card.Name, card.Version, err)
	}
	return card, nil
}

// ModelFiles are the three files of a model, in memory.
type ModelFiles struct {
	ONNX, Labels, Card []byte
}

// ReadModelDir reads a model folder.
func ReadModelDir(dir string) (ModelFiles, error) {
	var f ModelFiles
	for name, dst := range map[string]*[]byte{FileModel: &f.ONNX, FileLabels: &f.Labels, FileCard: &f.Card} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return ModelFiles{}, fmt.Errorf("model folder %s: %w", dir, err)
		}
		*dst = b
	}
	return f, nil
}

// WriteModelDir writes the three files into dir, creating it.
func WriteModelDir(dir string, f ModelFiles) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model folder %s: %w", dir, err)
	}
	for name, b := range map[string][]byte{FileModel: f.ONNX, FileLabels: f.Labels, FileCard: f.Card} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("model folder %s: %w", dir, err)
		}
	}
	return nil
}

// ParseLabels reads labels.json (a JSON array of class names) and checks it
// is in ImageFolder order: torchvision's ImageFolder assigns class indices
// to the class folders sorted by name, so output k of a model trained on it
// is the k-th name in sorted order. A list in any other order would silently
// mislabel every prediction, so it is refused.
func ParseLabels(data []byte) ([]string, error) {
	var labels []string
	if err := json.Unmarshal(data, &labels); err != nil {
		return nil, fmt.Errorf("labels.json: want a JSON array of class names: %w", err)
	}
	if len(labels) == 0 {
		return nil, errors.New("labels.json: no classes")
	}
	for i, l := range labels {
		if strings.TrimSpace(l) == "" {
			return nil, fmt.Errorf("labels.json: class %d is empty", i)
		}
		if i > 0 && labels[i-1] == l {
			return nil, fmt.Errorf("labels.json: class %q appears twice", l)
		}
	}
	if !sort.StringsAreSorted(labels) {
		return nil, fmt.Errorf("labels.json: classes are not in ImageFolder order (sorted by name), e.g. %q", firstUnsorted(labels))
	}
	return labels, nil
}

func firstUnsorted(l []string) string {
	for i := 1; i < len(l); i++ {
		if l[i] < l[i-1] {
			return l[i-1] + " before " + l[i]
		}
	}
	return ""
}
