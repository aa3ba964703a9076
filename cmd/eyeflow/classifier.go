package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"eyeflow/bus"
	"eyeflow/inference"
	"eyeflow/internal/deployment"
	"eyeflow/internal/nice"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/processors/classifier"
	"eyeflow/schemas"
	"eyeflow/stage"
	"eyeflow/telemetry"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// runtimeFlags select the ONNX Runtime library, device and threads; shared
// by the classifier, `eyeflow predict` and `eyeflow up`.
type runtimeFlags struct {
	ortLib        string
	device        string
	webgpuOptions string
	threads       int
	parallel      int
	interOp       int
	spin          bool
	nice          int
	maxBatch      int
	maxWait       time.Duration
	topK          int
	parsedDevice  inference.Device
	parsedWebGPU  inference.WebGPUOptions

	// resolved is where --device landed, set by init (once per process:
	// `eyeflow up` shares these flags between the classifier and the trainer).
	initOnce sync.Once
	initErr  error
	resolved inference.Resolution
}

func (f *runtimeFlags) register(fs *flagSet) {
	fs.stringVar(&f.ortLib, "ort-lib", "", "path of libonnxruntime.so "+inference.ORTVersion+" (scripts/install-ort.sh installs it and prints the path)")
	fs.stringVar(&f.device, "device", "cpu", "where models run: cpu, cuda[:N], tensorrt[:N], webgpu (the GPU through ONNX Runtime's WebGPU provider on Vulkan: `eyeflow doctor` says whether this host can), or auto (CUDA, else WebGPU, else the CPU, chosen and logged at start); a GPU device that cannot be used fails at start with the provider's reason")
	fs.stringVar(&f.webgpuOptions, "webgpu-options", "", "WebGPU provider options as key=value,... by ONNX Runtime's names, e.g. preferredLayout=NCHW,validationMode=disabled,enableGraphCapture=1 (default: ONNX Runtime's, on Vulkan with the high-performance adapter)")
	fs.intVar(&f.threads, "threads", 0, "ONNX Runtime intra-op threads per session run (0: on the CPU, the cores divided among --parallel-runs; on a GPU, ONNX Runtime's default)")
	fs.intVar(&f.parallel, "parallel-runs", 0, "session runs of one loaded model at once (0: on the CPU, enough to fill the cores with --threads each, by default one single-threaded run per core, as many as memory holds; on a GPU, 1)")
	fs.intVar(&f.interOp, "inter-op-threads", 0, "ONNX Runtime inter-op threads (0: its default)")
	fs.boolVar(&f.spin, "ort-spin", false, "let ONNX Runtime's threads busy-wait between ops (faster only when nothing else needs the cores)")
	fs.intVar(&f.nice, "ort-nice", 19, "lower the CPU priority of the threads models run on (the CPU device) by this nice increment, 1 to 19 (0: leave it): the NATS server, the other stages and the HTTP endpoints on the same cores then answer without waiting behind model runs")
	fs.intVar(&f.maxBatch, "max-batch", 0, "most images per session run (dynamic batching; 0: the model card's max_batch, else 8 on the CPU and 64 on a GPU)")
	fs.durationVar(&f.maxWait, "max-wait", 5*time.Millisecond, "longest wait after the first image for more to fill a batch")
	fs.intVar(&f.topK, "top-k", 5, "class probabilities listed in each prediction")
}

func (f *runtimeFlags) validate() error {
	d, err := inference.ParseDevice(f.device)
	if err != nil {
		return fmt.Errorf("--device: %w", err)
	}
	f.parsedDevice = d
	if f.parsedWebGPU, err = inference.ParseWebGPUOptions(f.webgpuOptions); err != nil {
		return fmt.Errorf("--webgpu-options: %w", err)
	}
	switch {
	case f.threads < 0 || f.interOp < 0 || f.parallel < 0:
		return errors.New("--threads, --parallel-runs and --inter-op-threads must be 0 or more")
	case f.nice < 0 || f.nice > nice.Max:
		return fmt.Errorf("--ort-nice %d: must be 0 to %d", f.nice, nice.Max)
	case f.maxBatch < 0:
		return fmt.Errorf("--max-batch %d: must be 0 (by device) or more", f.maxBatch)
	case f.maxWait < 0:
		return fmt.Errorf("--max-wait %s: must not be negative", f.maxWait)
	case f.topK < 1:
		return fmt.Errorf("--top-k %d: must be at least 1", f.topK)
	}
	return nil
}

// init loads ONNX Runtime once for the process and checks the device with a
// test session (inference.ResolveDevice): an explicit device that cannot
// be used fails here, at start, with the provider's reason; auto becomes the
// device it found. A --max-batch of 0 then becomes the device's default.
func (f *runtimeFlags) init() error {
	f.initOnce.Do(func() {
		if f.initErr = inference.InitRuntime(cmp.Or(f.ortLib, inference.FindLibrary(os.Getenv))); f.initErr != nil {
			return
		}
		f.resolved, f.initErr = inference.ResolveDevice(f.session())
		if f.initErr != nil {
			return
		}
		f.parsedDevice = f.resolved.Device
	})
	return f.initErr
}

// maxBatchOn is the run size on the resolved device before a model card is
// known: --max-batch, else the provider's default (a card's max_batch can
// still lower or set it per model).
func (f *runtimeFlags) maxBatchOn() int {
	if f.maxBatch > 0 {
		return f.maxBatch
	}
	return inference.DefaultMaxBatch(f.resolved.Provider)
}

// logDevice logs where models run, after init.
func (f *runtimeFlags) logDevice(log zerolog.Logger) {
	ev := log.Info().Str("onnxruntime", inference.RuntimeVersion()).Str("device", f.parsedDevice.String()).
		Str("provider", f.resolved.Provider).Int("max_batch", f.maxBatchOn())
	if f.device != f.parsedDevice.String() {
		ev = ev.Str("requested", f.device)
	}
	if a := f.resolved.Adapter; a.Name != "" {
		ev = ev.Str("adapter", a.Name).Str("adapter_vendor", a.Vendor).Str("adapter_type", a.Type).
			Str("adapter_backend", a.Backend).Str("adapter_driver", a.Driver)
	}
	if len(f.parsedWebGPU) > 0 {
		ev = ev.Str("webgpu_options", f.parsedWebGPU.String())
	}
	if len(f.resolved.Notes) > 0 {
		ev = ev.Strs("notes", f.resolved.Notes)
	}
	ev.Msg("ONNX Runtime loaded")
}

func (f *runtimeFlags) session() inference.SessionOptions {
	return inference.SessionOptions{Device: f.parsedDevice, IntraOpThreads: f.threads, ParallelRuns: f.parallel, InterOpThreads: f.interOp, Spin: f.spin,
		WebGPU: f.parsedWebGPU, Nice: f.nice}
}

// classifierFlags configure the classifier stage.
type classifierFlags struct {
	rt          runtimeFlags
	envs        string
	canaryShare float64
	concurrency int
	maxUpload   int64
	// model and placeholder are `eyeflow up`'s (registerUp): a standalone
	// classifier never registers a model, it serves what the registry
	// assigns.
	model       string
	placeholder string
	// replicas of the models KV bucket if the topology lacks it (set by
	// the command from its --replicas).
	replicas int
}

func (f *classifierFlags) register(fs *flagSet) {
	f.rt.register(fs)
	fs.stringVar(&f.envs, "envs", strings.Join(schemas.Envs(), ","), "environments to serve, comma-separated (each has its own consumer and model)")
	fs.float64Var(&f.canaryShare, "canary-share", classifier.DefaultCanaryShare, "share of images (by a hash of the image id) the canary env classifies, 0..1")
	fs.intVar(&f.concurrency, "classifier-concurrency", 0, "stage batches in flight per env (0: the parallel runs + 1, so one publishes while the others run)")
	fs.int64Var(&f.maxUpload, "max-upload", classifier.DefaultMaxUpload, "largest POST /predict body in bytes")
}

// Placeholder policies of `eyeflow up --placeholder`.
const (
	placeholderAuto = "auto"
	placeholderOn   = "on"
	placeholderOff  = "off"
)

// registerUp adds the flags only `eyeflow up` has: a model folder to serve,
// and whether to register the synthetic placeholder.
func (f *classifierFlags) registerUp(fs *flagSet) {
	fs.stringVar(&f.model, "model", "", "model folder (model.onnx, labels.json, model.json) to register and promote to prod at start")
	fs.stringVar(&f.placeholder, "placeholder", placeholderAuto, "register the synthetic DenseNet121 (random weights) as prod when prod serves nothing: auto (only on an empty registry), on (also when the registry holds models), off (never)")
}

func (f *classifierFlags) validate() error {
	if err := f.rt.validate(); err != nil {
		return err
	}
	if f.canaryShare < 0 || f.canaryShare > 1 {
		return fmt.Errorf("--canary-share %v: want 0..1", f.canaryShare)
	}
	if f.concurrency < 0 {
		return fmt.Errorf("--classifier-concurrency %d: must be 0 (automatic) or more", f.concurrency)
	}
	for _, e := range f.envList() {
		if !contains(schemas.Envs(), e) {
			return fmt.Errorf("--envs: %q is not one of %v", e, schemas.Envs())
		}
	}
	if f.model != "" {
		if _, err := models.ReadModelDir(f.model); err != nil {
			return fmt.Errorf("--model: %w", err)
		}
	}
	switch f.placeholder {
	case "", placeholderAuto, placeholderOn, placeholderOff:
	default:
		return fmt.Errorf("--placeholder %q: want auto, on or off", f.placeholder)
	}
	if f.model != "" && f.placeholder == placeholderOn {
		return fmt.Errorf("--placeholder on and --model: prod serves one of them; drop one")
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (f *classifierFlags) envList() []string {
	var out []string
	for _, e := range strings.Split(f.envs, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// setup loads ONNX Runtime, builds the classifier, and mounts POST /predict
// (prod's batcher) on srv when srv is not nil. In `eyeflow up` (up true) it
// first registers --model DIR as prod, or the placeholder as --placeholder
// says; a standalone classifier registers nothing.
func (f *classifierFlags) setup(ctx context.Context, p *proc, js jetstream.JetStream, store objstore.Store, srv *telemetry.Server, up bool) (task, error) {
	if err := f.rt.init(); err != nil {
		return task{}, err
	}
	log := p.log.With().Str("component", "classifier").Logger()
	f.rt.logDevice(log)
	// Binds to the topology's models bucket; creates it with the configured
	// replicas only when it is missing.
	reg, err := openRegistry(ctx, js, store, f.replicas)
	if err != nil {
		return task{}, err
	}
	switch {
	case !up:
	case f.model != "":
		if _, err := models.ServeModelDir(ctx, reg, f.model, schemas.EnvProd, log); err != nil {
			return task{}, err
		}
	default:
		if err := seedPlaceholder(ctx, reg, f.placeholder, log); err != nil {
			return task{}, err
		}
	}
	cfg := f.config()
	cfg.Logger, cfg.Metrics, cfg.StageMetrics = p.log, classifier.NewMetrics(p.reg), p.metrics
	cfg.OnLoad = servingReporter(ctx, js, log)
	c, err := classifier.New(reg, store, stage.RunnerOf[schemas.Split](js), cfg)
	if err != nil {
		return task{}, err
	}
	if srv != nil && c.Batcher(schemas.EnvProd) != nil {
		srv.Mux.Handle("POST /predict", c.PredictHandler(schemas.EnvProd, f.maxUpload))
	}
	return task{name: schemas.StageClassifier, run: c.Run}, nil
}

// servingReporter records in KV eyeflow_deployment what each env's
// classifier did with the model promoted to it (`eyeflow status` shows a
// refused one with its reason). Without the bucket (a topology applied by
// an older eyeflow) nothing is recorded.
func servingReporter(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) func(string, models.Assignment, error, *models.Assignment) {
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	kv, err := js.KeyValue(kctx, bus.KVDeployment)
	cancel()
	if err != nil {
		log.Warn().Err(err).Msg("what each env serves is not recorded for eyeflow status (run eyeflow topology apply)")
		return nil
	}
	return func(env string, a models.Assignment, loadErr error, serving *models.Assignment) {
		rec := deployment.Serving{Env: env, Name: a.Name, Version: a.Version, State: deployment.StateServing, Time: time.Now().UTC()}
		if loadErr != nil {
			rec.State, rec.Reason = deployment.StateRefused, loadErr.Error()
			if serving != nil {
				rec.Serves = serving.String()
			}
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := deployment.PutServing(pctx, kv, rec); err != nil {
			log.Warn().Err(err).Str("env", env).Msg("could not record what this env serves")
		}
	}
}

// seedPlaceholder registers the synthetic DenseNet121 (random weights,
// built in Go: nothing is downloaded) and promotes it to prod when prod
// serves nothing and the policy allows: auto on an empty registry, on
// whatever the registry holds. It logs what it did and why.
func seedPlaceholder(ctx context.Context, reg *models.Registry, policy string, log zerolog.Logger) error {
	log = log.With().Str("placeholder", or(policy, placeholderAuto)).Logger()
	if policy == placeholderOff {
		log.Info().Msg("placeholder model: not registered (--placeholder off); prod serves what the registry assigns")
		return nil
	}
	if a, ok, err := reg.Assigned(ctx, schemas.EnvProd); err != nil {
		return err
	} else if ok {
		log.Info().Str("prod", a.String()).Msg("placeholder model: not needed, prod serves a model")
		return nil
	}
	entries, err := reg.List(ctx)
	if err != nil {
		return err
	}
	registered := false
	for _, e := range entries {
		registered = registered || (e.Name == models.SyntheticName && e.Version == models.SyntheticVersion)
	}
	if len(entries) > 0 && policy != placeholderOn {
		log.Warn().Int("models", len(entries)).Msg("placeholder model: not registered: prod serves no model but the registry holds some; " +
			"promote one (eyeflow model promote --env prod NAME VERSION) or start with --placeholder on")
		return nil
	}
	if !registered {
		files, err := models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121})
		if err != nil {
			return err
		}
		if _, err := reg.Push(ctx, files, models.SyntheticName, models.SyntheticVersion); err != nil {
			return fmt.Errorf("register the placeholder model: %w", err)
		}
	}
	if err := reg.Promote(ctx, schemas.EnvProd, models.SyntheticName, models.SyntheticVersion); err != nil {
		return fmt.Errorf("register the placeholder model: %w", err)
	}
	why := "the model registry was empty"
	if len(entries) > 0 {
		why = "--placeholder on and prod served nothing"
	}
	log.Warn().Str("model", models.SyntheticName).Str("version", models.SyntheticVersion).
		Msg("placeholder model: registered the synthetic DenseNet121 (random weights: its predictions are meaningless) as prod because " + why +
			"; push and promote a trained model to replace it, or let the trainer bootstrap one")
	return nil
}

// config is the classifier's configuration from the flags, without the
// process's logger and metrics.
func (f *classifierFlags) config() classifier.Config {
	return classifier.Config{
		Envs:        f.envList(),
		MaxBatch:    f.rt.maxBatch,
		MaxWait:     f.rt.maxWait,
		Concurrency: f.concurrency,
		CanaryShare: f.canaryShare,
		TopK:        f.rt.topK,
		Session:     f.rt.session(),
	}
}

func runClassifier(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var cf classifierFlags
	fs := newFlagSet("classifier", "", "Runs the classifier: eye.split.* -> eye.predictions.<env>, one consumer and model per env, models from\n"+
		"the registry (eyeflow model push|promote), hot-swapped when promoted. Serves POST /predict with prod's model.\n"+
		"It never registers a model: an env with nothing promoted waits for `eyeflow model promote`.", out, errOut)
	s.register(fs)
	cf.register(fs)
	if err := fs.parse(args, s.validate, cf.validate); err != nil {
		return err
	}
	cf.replicas = s.replicas
	return s.run(ctx, "classifier", errOut, stageNeeds(schemas.StageClassifier, cf.envList()), func(e standaloneEnv) ([]task, error) {
		t, err := cf.setup(ctx, e.p, e.js, e.store, e.srv, false)
		if err != nil {
			return nil, err
		}
		return []task{t}, nil
	})
}

// fileResult is one line of `eyeflow predict`.
type fileResult struct {
	File  string `json:"file"`
	Error string `json:"error,omitempty"`
	*schemas.Prediction
}

func runPredict(ctx context.Context, args []string, out, errOut io.Writer) error {
	var rt runtimeFlags
	var modelDir string
	fs := newFlagSet("predict", "FILE...", "Classifies local image files with a model folder (model.onnx, labels.json, model.json), through the\n"+
		"resize stage's decoding and the classifier's batcher, and prints one JSON line per file, in order.", out, errOut)
	fs.stringVar(&modelDir, "model", "", "model folder (model.onnx, labels.json, model.json; eyeflow model synth writes one)")
	fs.require("model")
	rt.register(fs)
	if err := fs.parse(args, rt.validate); err != nil {
		return err
	}
	if err := rt.init(); err != nil {
		return err
	}
	m, err := inference.LoadModelDir(modelDir, rt.session())
	if err != nil {
		return err
	}
	fmt.Fprintf(errOut, "model %s on %s (onnxruntime %s)\n", m.Ref(), m.Provider, inference.RuntimeVersion())
	if m.Adapter.Name != "" {
		fmt.Fprintf(errOut, "adapter %s\n", m.Adapter)
	}
	for _, n := range append(rt.resolved.Notes, m.Notes...) {
		fmt.Fprintf(errOut, "note: %s\n", n)
	}
	b := classifier.NewBatcher(m, rt.maxBatch, rt.maxWait)
	defer b.Close()

	// Files are decoded concurrently and meet in the batcher, which runs
	// them max-batch at a time; results are printed in argument order.
	files := fs.Args()
	results := make([]fileResult, len(files))
	sem := make(chan struct{}, max(b.MaxBatch(), 2))
	var wg sync.WaitGroup
	for i, path := range files {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i].File = path
			data, err := os.ReadFile(path)
			if err == nil {
				var p schemas.Prediction
				p, err = classifier.ClassifyBytes(ctx, b, data, classifier.PredictOptions{TopK: rt.topK})
				if err == nil {
					results[i].Prediction = &p
				}
			}
			if err != nil {
				results[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	enc := json.NewEncoder(out)
	failed := 0
	for _, r := range results {
		if r.Error != "" {
			failed++
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	if failed > 0 {
		return fmt.Errorf("predict: %d of %d files failed", failed, len(files))
	}
	return nil
}
