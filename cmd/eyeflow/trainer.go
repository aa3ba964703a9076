package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/objstore"
	"eyeflow/processors/trainer"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

// trainerFlags configure the trainer (`eyeflow trainer`, `eyeflow up`,
// `eyeflow train`). ONNX Runtime settings are the classifier's (runtimeFlags).
type trainerFlags struct {
	engine       string
	name         string
	minPerClass  int
	settle       time.Duration
	bootstrap    bool
	manifestWait time.Duration
	margin       float64
	canaryMin    int
	rollback     int
	autoPromote  bool
	poll         time.Duration
	timeout      time.Duration
	torch        trainer.TorchConfig
}

func (f *trainerFlags) register(fs *flagSet) {
	def := trainer.DefaultConfig()
	fs.stringVar(&f.engine, "train-engine", trainer.EngineEmbedded, "training engine: embedded (Go, CPU: a new head on frozen DenseNet121 features) or torch (PyTorch child process: full fine-tuning, GPU when there is one)")
	fs.stringVar(&f.torch.Python, "torch-python", "", "torch engine: Python interpreter with torch and torchvision (default $EYEFLOW_PYTHON, /usr/bin/python3, python3)")
	fs.stringVar(&f.torch.Arch, "torch-arch", trainer.DefaultTorchArch, "torch engine: torchvision architecture (densenet121, resnet18, ...)")
	fs.intVar(&f.torch.Epochs, "torch-epochs", trainer.DefaultTorchEpochs, "torch engine: epochs (the best holdout_1 macro-F1 epoch is kept)")
	fs.intVar(&f.torch.BatchSize, "torch-batch-size", trainer.DefaultTorchBatchSize, "torch engine: batch size per process")
	fs.float64Var(&f.torch.LR, "torch-lr", trainer.DefaultTorchLR, "torch engine: AdamW peak learning rate")
	fs.intVar(&f.torch.NProc, "torch-nproc", 1, "torch engine: processes under torchrun with DistributedDataParallel (NCCL on GPUs, gloo on the CPU)")
	fs.stringVar(&f.torch.InitWeights, "torch-init-weights", "", "torch engine: a torchvision state dict to start from (nothing is downloaded)")
	fs.stringVar(&f.torch.Device, "torch-device", "auto", "torch engine: auto, cpu, cuda or cuda:N")
	fs.stringVar(&f.name, "train-name", def.Name, "registry name of trained versions")
	fs.intVar(&f.minPerClass, "train-min-per-class", def.MinPerClass, "train images a class needs to count; a run needs 2 such classes")
	fs.durationVar(&f.settle, "train-settle", def.Settle, "bootstrap trains once no new train image arrived for this long")
	fs.boolVar(&f.bootstrap, "train-bootstrap", def.Bootstrap, "train version 1 by itself while prod serves no trained model")
	fs.durationVar(&f.manifestWait, "train-manifest-wait", def.ManifestWait, "how long a retrain manifest's new images may take to reach the dataset")
	fs.float64Var(&f.margin, "promote-margin", def.Gate.Margin, "holdout_2 macro-F1 a candidate must beat prod by to go to canary")
	fs.intVar(&f.canaryMin, "canary-min", def.Gate.CanaryMin, "live predictions the canary serves before it can go to prod")
	fs.intVar(&f.rollback, "rollback-window", def.Gate.RollbackWindow, "prod predictions after a promotion within which drift (and worse labelled feedback) rolls it back")
	fs.boolVar(&f.autoPromote, "auto-promote", def.AutoPromote, "promote a qualifying canary to prod by itself (false: wait for eyeflow model promote --to prod --reason)")
	fs.durationVar(&f.poll, "rollout-interval", def.Poll, "how often the rollout and bootstrap look at the registry and the streams")
	fs.durationVar(&f.timeout, "train-timeout", 30*time.Minute, "longest a training run may take")
}

func (f *trainerFlags) config(prefix string) (trainer.Config, error) {
	cfg := trainer.DefaultConfig()
	cfg.Name, cfg.MinPerClass, cfg.Settle, cfg.Bootstrap, cfg.ManifestWait = f.name, f.minPerClass, f.settle, f.bootstrap, f.manifestWait
	cfg.Gate.Margin, cfg.Gate.CanaryMin, cfg.Gate.RollbackWindow = f.margin, f.canaryMin, f.rollback
	cfg.AutoPromote, cfg.Poll = f.autoPromote, f.poll
	if prefix != "" {
		cfg.DatasetPrefix = prefix
	}
	return cfg, cfg.Validate()
}

func (f *trainerFlags) validate() error {
	if !contains(trainerEngines(), f.engine) {
		return fmt.Errorf("--train-engine %q: want one of %v", f.engine, trainerEngines())
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--train-timeout %s: must be positive", f.timeout)
	}
	_, err := f.config("")
	return err
}

func trainerEngines() []string { return []string{trainer.EngineEmbedded, trainer.EngineTorch} }

// build loads ONNX Runtime and the backbone and returns the trainer.
func (f *trainerFlags) build(ctx context.Context, p *proc, rt *runtimeFlags, js jetstream.JetStream, store objstore.Store, prefix string, replicas int) (*trainer.Trainer, func(), error) {
	cfg, err := f.config(prefix)
	if err != nil {
		return nil, nil, err
	}
	if err := rt.init(); err != nil {
		return nil, nil, err
	}
	reg, err := openRegistry(ctx, js, store, 1)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range []string{objstore.BucketFeatures, objstore.BucketModels} {
		if err := store.EnsureBucket(ctx, b); err != nil {
			return nil, nil, err
		}
	}
	kv, err := openKeyValue(ctx, js, bus.KVTrainer, replicas)
	if err != nil {
		return nil, nil, fmt.Errorf("trainer: kv %s: %w", bus.KVTrainer, err)
	}
	feats, err := trainer.NewFeatures(store, rt.session())
	if err != nil {
		return nil, nil, err
	}
	var engine trainer.Engine = trainer.NewEmbedded(feats, trainer.EmbeddedConfig{})
	if f.engine == trainer.EngineTorch {
		tc := f.torch
		tc.Timeout = f.timeout
		// $EYEFLOW_PYTHON: the interpreter's name before --torch-python.
		tc.Python = cmp.Or(tc.Python, os.Getenv("EYEFLOW_PYTHON"))
		te, err := trainer.NewTorchEngine(tc)
		if err != nil {
			feats.Close()
			return nil, nil, err
		}
		engine = te
	}
	eval := &trainer.Evaluator{Images: trainer.StoreImages(store), Session: rt.session()}
	t, err := trainer.New(cfg, store, reg, kv, stage.PublisherOf(js), stage.StreamReaderOf(js), engine, eval, trainer.NewMetrics(p.reg), p.log)
	if err != nil {
		feats.Close()
		return nil, nil, err
	}
	p.log.Info().Str("engine", engine.Name()).Str("backbone", feats.Digest()).Str("provider", feats.Provider()).
		Bool("bootstrap", cfg.Bootstrap).Bool("auto_promote", cfg.AutoPromote).Msg("trainer ready")
	return t, feats.Close, nil
}

// tasks are the trainer stage's parts: retrain requests, bootstrap, rollout.
func (f *trainerFlags) tasks(t *trainer.Trainer, p *proc, js jetstream.JetStream) []task {
	return []task{
		stageTask(js, t.Processor(p.metrics)),
		{name: "trainer-bootstrap", run: t.RunBootstrap},
		{name: "trainer-rollout", run: t.RunRollout},
	}
}

func runTrainer(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var rt runtimeFlags
	var tf trainerFlags
	var prefix string
	fs := newFlagSet("trainer", "", "Runs the trainer: trains on eye.retrain manifest_ready (and bootstraps version 1), evaluates every\n"+
		"candidate on the holdouts, promotes staging -> canary -> prod by the gate, rolls back; events on eye.models.", out, errOut)
	s.register(fs)
	rt.register(fs)
	tf.register(fs)
	registerSplitPrefix(fs, &prefix)
	if err := fs.parse(args, s.validate, rt.validate, tf.validate); err != nil {
		return err
	}
	return s.run(ctx, schemas.StageTrainer, errOut, stageNeeds(schemas.StageTrainer, nil), func(e standaloneEnv) ([]task, error) {
		t, _, err := tf.build(ctx, e.p, &rt, e.js, e.store, prefix, s.replicas)
		if err != nil {
			return nil, err
		}
		return tf.tasks(t, e.p, e.js), nil
	})
}

// runTrain is `eyeflow train`: one training run now, with progress on the
// terminal; the running trainer stage's rollout takes the candidate from there.
func runTrain(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var rt runtimeFlags
	var tf trainerFlags
	var prefix, reason string
	fs := newFlagSet("train", "", "Trains a model version now on the dataset's train split, evaluates it on the holdouts and registers it\n"+
		"as a candidate (the trainer stage stages and promotes it). The same data, engine and settings give the\n"+
		"same version: a repeat trains nothing.", out, errOut)
	s.log.register(fs)
	s.nats.register(fs, defaultNATS(), natsClientUsage)
	s.store.register(fs)
	rt.register(fs)
	tf.register(fs)
	registerSplitPrefix(fs, &prefix)
	fs.stringVar(&reason, "reason", "requested with eyeflow train", "why: recorded in the model event")
	fs.deprecate("engine", "train-engine")
	if err := fs.parse(args, s.nats.validate, s.store.validate, rt.validate, tf.validate); err != nil {
		return err
	}
	log, err := s.log.logger(errOut)
	if err != nil {
		return err
	}
	p := newProc(log)
	nc, js, err := s.nats.dial(s.nats.url, "eyeflow-train", p.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := s.store.open(js, 1)
	if err != nil {
		return err
	}
	if err := checkStore(ctx, js, &s.store, store, func(err error) { log.Warn().Err(err).Msg("object store not checked") }); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	t, closeFn, err := tf.build(ctx, p, &rt, js, store, prefix, 1)
	if err != nil {
		return err
	}
	defer closeFn()
	res, err := t.Run(ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: reason, Progress: func(pr trainer.Progress) {
		fmt.Fprintf(errOut, "\r%-60s", progressBar(pr))
	}})
	fmt.Fprintln(errOut)
	if err != nil {
		return err
	}
	ev := res.Event
	switch {
	case ev.Kind == schemas.ModelRefused:
		return fmt.Errorf("training refused: %s", ev.Reason)
	case res.Existing:
		fmt.Fprintf(out, "%s %s was already trained on this data with these settings\n", ev.Name, ev.Version)
	default:
		fmt.Fprintf(out, "trained %s %s on %d images: holdout_2 accuracy %.3f, holdout_3 accuracy %.3f (macro-F1 %.3f)\n",
			ev.Name, ev.Version, ev.TrainImages, ev.Metrics[trainer.GateHoldout].Accuracy,
			ev.Metrics[trainer.ReportHoldout].Accuracy, ev.Metrics[trainer.ReportHoldout].MacroF1)
	}
	if len(res.Skipped) > 0 {
		fmt.Fprintf(out, "skipped %d unusable images\n", len(res.Skipped))
	}
	return nil
}

// progressBar renders one progress report as a bar and its figures.
func progressBar(p trainer.Progress) string {
	const width = 20
	done := 0
	if p.Epochs > 0 {
		done = min(width, width*p.Epoch/p.Epochs)
	}
	bar := "[" + strings.Repeat("#", done) + strings.Repeat(".", width-done) + "]"
	s := fmt.Sprintf("%s %d/%d", bar, p.Epoch, p.Epochs)
	if p.Message != "" {
		s += " " + p.Message
	}
	if p.SelectMacroF1 > 0 {
		s += fmt.Sprintf(" holdout_1 macro-F1 %.3f", p.SelectMacroF1)
	}
	return s
}
