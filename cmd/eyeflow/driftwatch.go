package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"eyeflow/processors/driftwatch"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

// driftwatchFlags configure the drift watcher (`eyeflow driftwatch`, `eyeflow up`).
type driftwatchFlags struct {
	threshold   float64
	count       int
	ksOff       bool
	ksWindow    int
	ksReference int
	ksMinRef    int
	ksP         float64
	chiOff      bool
	chiWindow   int
	chiMinTrain int
	chiP        float64
	trainDist   string
	samples     int
}

func (f *driftwatchFlags) register(fs *flagSet) {
	def := driftwatch.DefaultConfig()
	fs.float64Var(&f.threshold, "drift-threshold", def.Threshold, "low_confidence_streak: a prediction below this confidence is low")
	fs.intVar(&f.count, "drift-count", def.Count, "low_confidence_streak: this many consecutive low predictions (per env and model version) fire")
	fs.boolVar(&f.ksOff, "drift-ks-off", false, "disable entropy_ks (prediction entropy vs holdout reference, Kolmogorov-Smirnov)")
	fs.intVar(&f.ksWindow, "drift-ks-window", def.KS.Window, "entropy_ks: live predictions per tested window (tumbling)")
	fs.intVar(&f.ksReference, "drift-ks-reference", def.KS.Reference, "entropy_ks: holdout predictions kept as the reference (the latest)")
	fs.intVar(&f.ksMinRef, "drift-ks-min-reference", def.KS.MinReference, "entropy_ks: test only once the reference holds this many")
	fs.float64Var(&f.ksP, "drift-ks-p", def.KS.PValue, "entropy_ks: fire when a window's p-value is below this")
	fs.boolVar(&f.chiOff, "drift-chi2-off", false, "disable class_chi2 (predicted classes vs training distribution, chi-square)")
	fs.intVar(&f.chiWindow, "drift-chi2-window", def.Chi2.Window, "class_chi2: live predictions per tested window (tumbling)")
	fs.intVar(&f.chiMinTrain, "drift-chi2-min-train", def.Chi2.MinTrain, "class_chi2: train-split predictions needed before the learnt distribution is used")
	fs.float64Var(&f.chiP, "drift-chi2-p", def.Chi2.PValue, "class_chi2: fire when a window's p-value is below this")
	fs.intVar(&f.samples, "drift-label-samples", def.LabelSamples, "images of a drifted window a firing entropy_ks or class_chi2 alert asks to have labelled (eye.retrain)")
	fs.stringVar(&f.trainDist, "drift-train-distribution", "", "class_chi2: training distribution as class=count,... (default: learnt from train-split predictions)")
}

func (f *driftwatchFlags) config() (driftwatch.Config, error) {
	cfg := driftwatch.DefaultConfig()
	cfg.Threshold, cfg.Count, cfg.LabelSamples = f.threshold, f.count, f.samples
	cfg.KS = driftwatch.KSConfig{Enabled: !f.ksOff, Window: f.ksWindow, Reference: f.ksReference, MinReference: f.ksMinRef, PValue: f.ksP}
	cfg.Chi2.Enabled, cfg.Chi2.Window, cfg.Chi2.MinTrain, cfg.Chi2.PValue = !f.chiOff, f.chiWindow, f.chiMinTrain, f.chiP
	if f.trainDist != "" {
		cfg.Chi2.TrainDistribution = map[string]float64{}
		for _, part := range strings.Split(f.trainDist, ",") {
			class, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			w, err := strconv.ParseFloat(v, 64)
			if !ok || class == "" || err != nil {
				return cfg, fmt.Errorf("--drift-train-distribution %q: want class=count,... (at %q)", f.trainDist, part)
			}
			cfg.Chi2.TrainDistribution[class] = w
		}
	}
	return cfg, cfg.Validate()
}

func (f *driftwatchFlags) validate() error {
	_, err := f.config()
	return err
}

// processor opens the watcher's state and returns its stage. The
// driftwatch consumer's one-at-a-time delivery is the topology's
// (the catalogue, package pipeline).
func (f *driftwatchFlags) processor(ctx context.Context, p *proc, js jetstream.JetStream, replicas int) (stage.Processor[schemas.Prediction], error) {
	cfg, err := f.config()
	if err != nil {
		return stage.Processor[schemas.Prediction]{}, err
	}
	kv, err := openKeyValue(ctx, js, driftwatch.KVBucket, replicas)
	if err != nil {
		return stage.Processor[schemas.Prediction]{}, fmt.Errorf("driftwatch: state bucket: %w", err)
	}
	w, err := driftwatch.New(ctx, kv, cfg, driftwatch.NewMetrics(p.reg))
	if err != nil {
		return stage.Processor[schemas.Prediction]{}, err
	}
	return driftwatch.Processor(w, p.log, p.metrics), nil
}

func runDriftwatch(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var df driftwatchFlags
	fs := newFlagSet("driftwatch", "", "Runs the drift watcher: eye.predictions.* -> eye.drift.<env> alerts (low_confidence_streak,\n"+
		"entropy_ks, class_chi2) and eye.retrain requests; state in the KV bucket "+driftwatch.KVBucket+".", out, errOut)
	s.register(fs)
	df.register(fs)
	if err := fs.parse(args, s.validate, df.validate); err != nil {
		return err
	}
	return s.run(ctx, "driftwatch", errOut, stageNeeds(schemas.StageDriftwatch, nil), func(e standaloneEnv) ([]task, error) {
		dp, err := df.processor(ctx, e.p, e.js, s.replicas)
		if err != nil {
			return nil, err
		}
		return []task{stageTask(e.js, dp)}, nil
	})
}
