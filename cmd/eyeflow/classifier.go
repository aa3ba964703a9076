package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"eyeflow/objstore"
	"eyeflow/processors/classifier"
	"eyeflow/schemas"
	"eyeflow/telemetry"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// runtimeFlags select the ONNX Runtime library, device and threads; shared
// by the classifier, `eyeflow predict` and `eyeflow up`.
type runtimeFlags struct {
	ortLib       string
	device       string
	threads      int
	parallel     int
	interOp      int
	spin         bool
	maxBatch     int
	maxWait      time.Duration
	topK         int
	parsedDevice classifier.Device
}

func (f *runtimeFlags) register(fs *flagSet) {
	fs.stringVar(&f.ortLib, "ort-lib", "", "path of libonnxruntime.so "+classifier.ORTVersion+" (scripts/install-ort.sh installs it and prints the path)")
	fs.stringVar(&f.device, "device", "cpu", "where models run: cpu, cuda[:N], tensorrt[:N], or auto (CUDA when available, else CPU); a GPU device that cannot be used fails at start")
	fs.intVar(&f.threads, "threads", 0, "ONNX Runtime intra-op threads per session run (0: on the CPU, the cores divided among --parallel-runs; on a GPU, ONNX Runtime's default)")
	fs.intVar(&f.parallel, "parallel-runs", 0, "session runs of one loaded model at once (0: on the CPU, enough to fill the cores with --threads each, by default one single-threaded run per core, as many as memory holds; on a GPU, 1)")
	fs.intVar(&f.interOp, "inter-op-threads", 0, "ONNX Runtime inter-op threads (0: its default)")
	fs.boolVar(&f.spin, "ort-spin", false, "let ONNX Runtime's threads busy-wait between ops (faster only when nothing else needs the cores)")
	fs.intVar(&f.maxBatch, "max-batch", 0, "most images per session run (dynamic batching; 0: the model card's max_batch, else 8 on the CPU and 64 on a GPU)")
	fs.durationVar(&f.maxWait, "max-wait", 5*time.Millisecond, "longest wait after the first image for more to fill a batch")
	fs.intVar(&f.topK, "top-k", 5, "class probabilities listed in each prediction")
}

func (f *runtimeFlags) validate() error {
	d, err := classifier.ParseDevice(f.device)
	if err != nil {
		return fmt.Errorf("--device: %w", err)
	}
	f.parsedDevice = d
	switch {
	case f.threads < 0 || f.interOp < 0 || f.parallel < 0:
		return errors.New("--threads, --parallel-runs and --inter-op-threads must be 0 or more")
	case f.maxBatch < 0:
		return fmt.Errorf("--max-batch %d: must be 0 (automatic) or more", f.maxBatch)
	case f.maxWait < 0:
		return fmt.Errorf("--max-wait %s: must not be negative", f.maxWait)
	case f.topK < 1:
		return fmt.Errorf("--top-k %d: must be at least 1", f.topK)
	}
	return nil
}

// init loads ONNX Runtime once for the process.
func (f *runtimeFlags) init() error { return classifier.InitRuntime(f.ortLib) }

func (f *runtimeFlags) session() classifier.SessionOptions {
	return classifier.SessionOptions{Device: f.parsedDevice, IntraOpThreads: f.threads, ParallelRuns: f.parallel, InterOpThreads: f.interOp, Spin: f.spin}
}

// classifierFlags configure the classifier stage.
type classifierFlags struct {
	rt          runtimeFlags
	envs        string
	canaryShare float64
	concurrency int
	maxUpload   int64
	model       string
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
	fs.stringVar(&f.model, "model", "", "model folder (model.onnx, labels.json, model.json) to register and promote to prod at start")
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
		if _, err := classifier.ReadModelDir(f.model); err != nil {
			return fmt.Errorf("--model: %w", err)
		}
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

// setup loads ONNX Runtime, makes sure prod has a model (--model DIR, or the
// synthetic DenseNet121 on an empty registry), builds the classifier, and
// mounts POST /predict (prod's batcher) on srv when srv is not nil.
func (f *classifierFlags) setup(ctx context.Context, p *proc, js natsjs.JetStream, store objstore.Store, srv *telemetry.Server) (task, error) {
	if err := f.rt.init(); err != nil {
		return task{}, err
	}
	log := p.log.With().Str("component", "classifier").Logger()
	log.Info().Str("onnxruntime", classifier.RuntimeVersion()).Str("device", f.rt.parsedDevice.String()).Msg("ONNX Runtime loaded")
	// Binds to the topology's models bucket; creates it with the configured
	// replicas only when it is missing (the calls below bind to it).
	if _, err := classifier.OpenRegistryReplicas(ctx, js, store, max(f.replicas, 1)); err != nil {
		return task{}, err
	}
	if f.model != "" {
		if _, err := classifier.ServeModelDir(ctx, js, store, f.model, schemas.EnvProd, log); err != nil {
			return task{}, err
		}
	} else if _, err := classifier.EnsureDefault(ctx, js, store, log); err != nil {
		return task{}, err
	}
	cfg := f.config()
	cfg.Logger, cfg.Metrics, cfg.StageMetrics = p.log, classifier.NewMetrics(p.reg), p.metrics
	c, err := classifier.New(ctx, js, store, cfg)
	if err != nil {
		return task{}, err
	}
	if srv != nil && c.Batcher(schemas.EnvProd) != nil {
		srv.Mux.Handle("POST /predict", c.PredictHandler(schemas.EnvProd, f.maxUpload))
	}
	return task{name: schemas.StageClassifier, run: c.Run}, nil
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
		Replicas:    max(f.replicas, 1),
	}
}

func runClassifier(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var cf classifierFlags
	fs := newFlagSet("classifier", "", "Runs the classifier: eye.split.* -> eye.predictions.<env>, one consumer and model per env, models from\n"+
		"the registry (eyeflow model push|promote), hot-swapped when promoted. Serves POST /predict with prod's model.", errOut)
	s.register(fs)
	cf.register(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return err
	}
	if err := cf.validate(); err != nil {
		return err
	}
	cf.replicas = s.replicas
	return s.run(ctx, "classifier", errOut, func(e standaloneEnv) ([]task, error) {
		t, err := cf.setup(ctx, e.p, e.js, e.store, e.srv)
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
		"resize stage's decoding and the classifier's batcher, and prints one JSON line per file, in order.", errOut)
	fs.stringVar(&modelDir, "model", "", "model folder (required)")
	rt.register(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	if modelDir == "" || fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	if err := rt.validate(); err != nil {
		return err
	}
	if err := rt.init(); err != nil {
		return err
	}
	m, err := classifier.LoadModelDir(modelDir, rt.session())
	if err != nil {
		return err
	}
	fmt.Fprintf(errOut, "model %s on %s (onnxruntime %s)\n", m.Ref(), m.Provider, classifier.RuntimeVersion())
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
