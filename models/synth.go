package models

import (
	"encoding/json"
	"fmt"

	"eyeflow/demodata"
	"eyeflow/onnx"
)

// Architectures of synthetic models.
const (
	ArchDenseNet121 = "densenet121"
	ArchTiny        = "tiny"
)

// Synthetic model identity: what `eyeflow up` registers on an empty registry.
const (
	SyntheticName    = "densenet121-synthetic"
	SyntheticVersion = "0.0.0-synthetic"
	TinyName         = "tiny-mean-colour"
	TinyVersion      = "0.0.0-tiny"
	// SyntheticSeed fixes the random weights: every eyeflow build writes
	// the same bytes, so benchmarks are comparable.
	SyntheticSeed = 121
)

// SynthOptions select a synthetic model.
type SynthOptions struct {
	Arch string // ArchDenseNet121 or ArchTiny
	// Name and Version default to the constants above.
	Name, Version string
	// Probabilities makes the tiny model end in a Softmax (output kind
	// "probabilities"); DenseNet121 always outputs logits.
	Probabilities bool
	// FP16 makes DenseNet121 compute in half precision (onnx.Graph.Float16:
	// float16 weights, float32 in and out): a GPU variant, named with an
	// "-fp16" suffix.
	FP16 bool
}

// Synthesize builds a model folder's files: model.onnx from the Go ONNX
// builder (no download), labels.json with demodata's 15 classes in
// ImageFolder (sorted) order, and model.json.
func Synthesize(o SynthOptions) (ModelFiles, error) {
	classes := demodata.Classes() // already sorted, as ImageFolder would
	var (
		f    ModelFiles
		card Card
	)
	switch o.Arch {
	case ArchDenseNet121, "":
		g := onnx.DenseNet121Graph(len(classes), SyntheticSeed)
		name := SyntheticName
		if o.FP16 {
			g, name = g.Float16(), SyntheticName+"-fp16"
		}
		f.ONNX = g.Encode()
		desc := "torchvision densenet121(num_classes=15) architecture with deterministic random weights: for benchmarks and out-of-the-box runs, not for diagnosis"
		if o.FP16 {
			desc += "; computes in float16 (weights rounded from the float32 model's), float32 in and out"
		}
		card = NewCard(or(o.Name, name), or(o.Version, SyntheticVersion), ArchDenseNet121, OutputLogits, len(classes))
		card.Description = desc
	case ArchTiny:
		if o.FP16 {
			return ModelFiles{}, fmt.Errorf("arch %s: fp16 is for densenet121", ArchTiny)
		}
		f.ONNX = onnx.Tiny(len(classes), o.Probabilities)
		kind := OutputLogits
		if o.Probabilities {
			kind = OutputProbabilities
		}
		card = NewCard(or(o.Name, TinyName), or(o.Version, TinyVersion), ArchTiny, kind, len(classes))
		card.Description = "outputs a fixed linear function of the mean normalised colour (onnx.TinyWeights): for exact end-to-end tests"
	default:
		return ModelFiles{}, fmt.Errorf("arch %q: want %s or %s", o.Arch, ArchDenseNet121, ArchTiny)
	}
	var err error
	if f.Labels, err = json.MarshalIndent(classes, "", "  "); err != nil {
		return ModelFiles{}, err
	}
	if f.Card, err = json.MarshalIndent(card, "", "  "); err != nil {
		return ModelFiles{}, err
	}
	return f, nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// IsPlaceholder reports whether a registered model is the untrained
// synthetic one `eyeflow up` serves until a trained model replaces it.
func IsPlaceholder(name string) bool {
	return name == SyntheticName || name == SyntheticName+"-fp16" || name == TinyName
}
