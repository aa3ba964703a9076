package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"eyeflow/models"
	"eyeflow/onnx"
)

// EmbeddedConfig configures the embedded engine.
type EmbeddedConfig struct {
	// Lambdas are the L2 penalties tried; holdout_1 macro-F1 picks one
	// (default 1e-3 and 1e-2: of 1e-4..1e-1 tried on the 600-image demo,
	// these two scored best on holdout_1; BENCHMARKS.md, "Trainer").
	Lambdas []float64
	// MaxIterations bounds each L-BFGS fit (default 300).
	MaxIterations int
}

// Embedded is the engine that needs nothing beyond eyeflow itself: it
// fine-tunes the classifier head (multinomial logistic regression, L2,
// class-balanced) on the frozen backbone's pooled features, and writes the
// backbone plus the new head as one ONNX graph, standardisation folded into
// the weights. Deterministic: the same data gives the same bytes.
type Embedded struct {
	cfg      EmbeddedConfig
	features *Features
}

// NewEmbedded returns the embedded engine on a loaded backbone.
func NewEmbedded(f *Features, cfg EmbeddedConfig) *Embedded {
	if len(cfg.Lambdas) == 0 {
		cfg.Lambdas = []float64{1e-3, 1e-2}
	}
	if cfg.MaxIterations <= 0 {
		cfg.MaxIterations = 300
	}
	return &Embedded{cfg: cfg, features: f}
}

// Name implements Engine.
func (e *Embedded) Name() string { return EngineEmbedded }

// Settings implements Engine.
func (e *Embedded) Settings() map[string]any {
	return map[string]any{
		"method": "logistic_regression_head", "backbone": "densenet121-synthetic-torchvision-init",
		"backbone_digest": e.features.Digest(), "lambdas": e.cfg.Lambdas, "max_iterations": e.cfg.MaxIterations,
		"class_balanced": true,
	}
}

// Warm computes and caches the features of examples not seen yet, so a
// training run that follows finds them ready: the trainer calls it while it
// waits for the dataset to settle.
func (e *Embedded) Warm(ctx context.Context, exs []Example, images ImageSource) (int, error) {
	todo := e.features.Unknown(exs)
	if len(todo) == 0 {
		return 0, nil
	}
	// A bounded chunk per call: the caller holds the trainer meanwhile.
	todo = todo[:min(len(todo), 64)]
	_, _, _, st, err := e.features.Extract(ctx, todo, images, nil)
	return st.Computed, err
}

// Train implements Engine.
func (e *Embedded) Train(ctx context.Context, job Job) (Result, error) {
	start := time.Now()
	progress := func(p Progress) {
		if job.Progress != nil {
			job.Progress(p)
		}
	}
	all := append(slices.Clone(job.Train), job.Select...)
	for i := range job.Select {
		all[len(job.Train)+i].Split = SelectHoldout
	}
	exs, feats, skipped, st, err := e.features.Extract(ctx, all, job.Images, func(done, total int) {
		if done%64 == 0 || done == total {
			progress(Progress{Epoch: 0, Epochs: 1, Message: fmt.Sprintf("features %d/%d", done, total)})
		}
	})
	if err != nil {
		return Result{}, fmt.Errorf("embedded engine: features: %w", err)
	}
	idx := map[string]int{}
	for i, c := range job.Classes {
		idx[c] = i
	}
	var xt, xs [][]float32
	var yt, ys []int
	for i, ex := range exs {
		k, ok := idx[ex.Class]
		if !ok {
			return Result{}, fmt.Errorf("embedded engine: image %s has class %q, not one of the job's classes: %w", ex.ImageID, ex.Class, ErrRefused)
		}
		if ex.Split != SelectHoldout {
			xt, yt = append(xt, feats[i]), append(yt, k)
		} else {
			xs, ys = append(xs, feats[i]), append(ys, k)
		}
	}
	var best *LogReg
	bestF1 := math.Inf(-1)
	var tried []map[string]any
	for i, lam := range e.cfg.Lambdas {
		m, err := FitLogReg(xt, yt, len(job.Classes), LogRegOptions{Lambda: lam, Balanced: true, MaxIterations: e.cfg.MaxIterations})
		if err != nil {
			return Result{}, fmt.Errorf("embedded engine: lambda %g: %v: %w", lam, err, ErrRefused)
		}
		f1, acc := -1.0, -1.0
		if len(xs) > 0 {
			pred := m.Predict(xs)
			acc = accuracy(ys, pred)
			f1 = macroF1(ys, pred, len(job.Classes))
		}
		tried = append(tried, map[string]any{"lambda": lam, "loss": m.Loss, "iterations": m.Iterations, "select_accuracy": acc, "select_macro_f1": f1})
		progress(Progress{Epoch: i + 1, Epochs: len(e.cfg.Lambdas), Loss: m.Loss, SelectAccuracy: acc, SelectMacroF1: f1,
			Message: fmt.Sprintf("lambda %g", lam)})
		// Ties go to the later, more regularised fit.
		if f1 >= bestF1 {
			best, bestF1 = m, f1
		}
	}
	w, b := best.Folded()
	bb := e.features.Backbone
	bb.FeaturesOnly = false
	bb.Head = &onnx.Head{W: w, B: b}
	graph := onnx.DenseNet(bb)
	card := models.NewCard(job.Name, job.Version, models.ArchDenseNet121, models.OutputLogits, len(job.Classes))
	card.Description = "synthetic DenseNet121 backbone (torchvision initialisation, frozen) with a logistic-regression head trained by eyeflow's embedded engine"
	secs := time.Since(start).Seconds()
	card.Training = &models.Training{
		Engine: EngineEmbedded, DatasetDigest: Digest(job.Train), TrainImages: len(xt), SelectImages: len(xs),
		Settings: e.Settings(), Device: e.features.Provider(), Seconds: secs, ImagesPerSec: st.PerSec(),
		Epochs: tried,
		Extra: map[string]any{"chosen_lambda": best.Lambda, "features_computed": st.Computed, "features_cached": st.Cached,
			"features_seconds": st.Seconds},
	}
	labels, err := json.MarshalIndent(job.Classes, "", "  ")
	if err != nil {
		return Result{}, err
	}
	cardJSON, err := json.MarshalIndent(card, "", "  ")
	if err != nil {
		return Result{}, err
	}
	return Result{Files: models.ModelFiles{ONNX: graph, Labels: labels, Card: cardJSON}, Skipped: skipped, Seconds: time.Since(start)}, nil
}
