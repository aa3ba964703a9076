// Package classifier is the inference stage: it consumes eye.split.* with one
// durable consumer per env (prod, canary, staging), runs the env's model
// through ONNX Runtime in dynamic batches, and publishes schemas.Prediction
// on eye.predictions.<env>. Models come from a registry in the object store;
// a JetStream KV bucket maps each env to a version, and the classifier
// hot-swaps models between batches when it changes. The same Batcher serves
// POST /predict and `eyeflow predict`, with the same imaging.Decode
// preprocessing as the resize stage.
package classifier

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"eyeflow/imaging"
	"eyeflow/inference"
	"eyeflow/internal/machine"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/onnx"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/rs/zerolog"
)

// Config configures a Classifier.
type Config struct {
	// Envs to serve; default all (prod, canary, staging).
	Envs []string
	// MaxBatch and MaxWait bound a session run. MaxBatch 0 is automatic
	// (MaxBatchFor: the model card's max_batch, else 8 on the CPU and 64 on
	// a GPU); MaxWait defaults to 5ms.
	MaxBatch int
	MaxWait  time.Duration
	// Concurrency is the number of stage batches in flight per env
	// (default the session's parallel runs + 1: one is published and
	// acknowledged while the others run).
	Concurrency int
	// CanaryShare is the fraction of image ids the canary env classifies
	// (0..1), chosen by a hash of the id so an image is always in or out.
	CanaryShare float64
	// TopK probabilities in each prediction (default 5).
	TopK    int
	Session inference.SessionOptions
	Logger  zerolog.Logger
	// Metrics (NewMetrics) and StageMetrics (stage.NewMetrics) are created
	// once per process by the caller.
	Metrics      *Metrics
	StageMetrics *stage.Metrics
	// RetryBase is the stage's first retry delay (default the runtime's).
	RetryBase time.Duration
	// DrillDelay slows every batch down by this much: a knob for failure
	// drills (a slow model, an overloaded GPU), never set in normal runs.
	DrillDelay time.Duration
	// OnLoad, when set, is told the outcome of every model an env was
	// assigned: err is nil when it serves a, else why a was refused
	// (serving is what the env keeps serving, if anything).
	OnLoad func(env string, a models.Assignment, err error, serving *models.Assignment)
}

// DefaultCanaryShare is the canary's share when none is configured.
const DefaultCanaryShare = 0.1

func (c *Config) defaults() error {
	if len(c.Envs) == 0 {
		c.Envs = schemas.Envs()
	}
	for _, e := range c.Envs {
		if err := models.ValidEnv(e); err != nil {
			return err
		}
	}
	if c.MaxBatch < 0 {
		return fmt.Errorf("max batch %d: want 0 (automatic) or more", c.MaxBatch)
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 5 * time.Millisecond
	}
	// The CPU plan's memory bound: every env's model runs at once, each
	// sized for its batches.
	if c.Session.MaxBatch < 1 {
		c.Session.MaxBatch = c.MaxBatch
		if c.MaxBatch < 1 {
			c.Session.MaxBatch = inference.DefaultMaxBatchOn(c.Session.Device)
		}
	}
	if c.Session.Memory <= 0 {
		c.Session.Memory = machine.Detect().Memory / 2 / int64(len(c.Envs))
	}
	if c.Concurrency < 1 {
		provider := c.Session.Device.Provider()
		if provider == "" { // auto, unresolved (eyeflow's commands resolve it at start)
			provider = inference.ProviderCPU
		}
		_, runs := c.Session.Plan(provider)
		c.Concurrency = runs + 1
	}
	if c.CanaryShare < 0 || c.CanaryShare > 1 {
		return fmt.Errorf("canary share %v: want 0..1", c.CanaryShare)
	}
	if c.TopK < 1 {
		c.TopK = 5
	}
	if c.Metrics == nil || c.StageMetrics == nil {
		return errors.New("classifier: Metrics and StageMetrics are required")
	}
	return nil
}

// Plan is what a Config resolves to on this machine, before a model is
// loaded (for `eyeflow up`'s plan line).
type Plan struct {
	// Provider is the one the device asks for ("auto" is decided at load).
	Provider string
	// Threads x Runs per env's model; Threads 0 is ONNX Runtime's default.
	Threads, Runs int
	// MaxBatch per session run, before a model card can lower or set it.
	MaxBatch int
	// Concurrency is the stage batches in flight per env.
	Concurrency int
	Envs        []string
}

// Plan resolves c's defaults for this machine.
func (c Config) Plan() (Plan, error) {
	c.Metrics, c.StageMetrics = &Metrics{}, &stage.Metrics{} // not used here
	if err := c.defaults(); err != nil {
		return Plan{}, err
	}
	provider := inference.ProviderCPU
	switch c.Session.Device.Kind {
	case "cuda":
		provider = inference.ProviderCUDA
	case "tensorrt":
		provider = inference.ProviderTensorRT
	case "auto":
		provider = "auto"
	}
	threads, runs := c.Session.Plan(provider)
	if provider == "auto" {
		threads, runs = c.Session.Plan(inference.ProviderCPU) // what a CPU fallback runs
	}
	return Plan{Provider: provider, Threads: threads, Runs: runs, MaxBatch: c.Session.MaxBatch, Concurrency: c.Concurrency, Envs: c.Envs}, nil
}

// Classifier serves every configured env.
type Classifier struct {
	cfg   Config
	run   stage.Runner[schemas.Split]
	store objstore.Store
	reg   *models.Registry
	log   zerolog.Logger

	batchers map[string]*Batcher // one per env, fixed at New

	mu      sync.Mutex
	serving map[string]models.Assignment // what each env's batcher holds
	started map[string]bool              // env stage running
	ready   map[string]chan struct{}

	drillDelay atomic.Int64 // time.Duration; see SetDrillDelay

	// cache shares decoded processed PNGs between envs (nil with one
	// env); loaders bounds the reads and decodes of one stage batch.
	cache   *pixelCache
	loaders int
}

// New returns the classifier of reg's models, reading images from store;
// run runs each env's stage (stage.RunnerOf) once the env's first model is
// loaded.
func New(reg *models.Registry, store objstore.Store, run stage.Runner[schemas.Split], cfg Config) (*Classifier, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if reg == nil || store == nil || run == nil {
		return nil, errors.New("classifier: a registry, a store and a stage runner are required")
	}
	c := &Classifier{
		cfg: cfg, run: run, store: store, reg: reg,
		log:      cfg.Logger.With().Str("stage", schemas.StageClassifier).Logger(),
		batchers: map[string]*Batcher{},
		serving:  map[string]models.Assignment{},
		started:  map[string]bool{},
		ready:    map[string]chan struct{}{},
	}
	c.SetDrillDelay(cfg.DrillDelay)
	c.loaders = machine.Detect().IOConcurrency()
	if len(cfg.Envs) > 1 {
		// Room for every env's batches in flight: the envs read the same
		// images at about the same time.
		c.cache = newPixelCache(len(cfg.Envs) * cfg.Concurrency * max(cfg.MaxBatch, cfg.Session.MaxBatch))
	}
	for _, env := range cfg.Envs {
		b := NewBatcher(nil, cfg.MaxBatch, cfg.MaxWait)
		b.observe = cfg.Metrics.observe(env)
		c.batchers[env] = b
		c.ready[env] = make(chan struct{})
	}
	return c, nil
}

// Batcher is env's batcher (nil for an env not served).
func (c *Classifier) Batcher(env string) *Batcher { return c.batchers[env] }

// Serving reports the version env serves now.
func (c *Classifier) Serving(env string) (models.Assignment, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.serving[env]
	return a, ok
}

// Ready is closed once env serves its first model.
func (c *Classifier) Ready(env string) <-chan struct{} { return c.ready[env] }

// Run watches the env -> version KV, loads and swaps models, and runs one
// stage per env until ctx is cancelled. An env's stage starts when its first
// model is loaded: until then its messages wait in the stream (nothing is
// acknowledged without a prediction), and consumer lag shows it.
func (c *Classifier) Run(ctx context.Context) error {
	defer func() {
		for _, b := range c.batchers {
			b.Close()
		}
	}()
	// The watch ends with ctx.
	updates, err := c.reg.WatchAssignments(ctx)
	if err != nil {
		return fmt.Errorf("classifier: watch %s: %w", models.KVModels, err)
	}
	var stages sync.WaitGroup
	defer stages.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-updates:
			if !ok {
				return nil
			}
			if e == nil { // end of the initial values
				for _, env := range c.cfg.Envs {
					if _, ok := c.Serving(env); !ok {
						c.log.Warn().Str("env", env).Msg("no model promoted for this env: its messages wait in the stream until one is (eyeflow model promote)")
					}
				}
				continue
			}
			env := e.Key
			if _, served := c.batchers[env]; !served {
				continue
			}
			if e.Op != stage.OpPut {
				c.log.Warn().Str("env", env).Msg("model assignment deleted: keeping the model in use")
				continue
			}
			a, err := models.ParseAssignment(e.Value)
			if err != nil {
				c.log.Error().Err(err).Str("env", env).Msg("bad model assignment: keeping the model in use")
				continue
			}
			if c.load(ctx, env, a) {
				c.mu.Lock()
				start := !c.started[env]
				c.started[env] = true
				c.mu.Unlock()
				if start {
					close(c.ready[env])
					stages.Go(func() { c.runStage(ctx, env) })
				}
			}
		}
	}
}

// fetch reads a model from the registry, retrying transient failures (a
// busy store, a timeout): only a model that is missing or invalid is refused.
func (c *Classifier) fetch(ctx context.Context, log zerolog.Logger, a models.Assignment) (models.ModelFiles, error) {
	delay := time.Second
	for attempt := 1; ; attempt++ {
		files, err := c.reg.Fetch(ctx, a.Name, a.Version)
		if err == nil || errors.Is(err, objstore.ErrNotFound) || ctx.Err() != nil || attempt == 6 {
			return files, err
		}
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("fetch model failed, retrying")
		select {
		case <-ctx.Done():
			return files, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// load fetches, validates and swaps in env's model. A model that fails to
// load is refused: the previous one keeps serving.
func (c *Classifier) load(ctx context.Context, env string, a models.Assignment) bool {
	log := c.log.With().Str("env", env).Str("model", a.Name).Str("version", a.Version).Logger()
	if cur, ok := c.Serving(env); ok && cur.Name == a.Name && cur.Version == a.Version {
		return true
	}
	files, err := c.fetch(ctx, log, a)
	if ctx.Err() != nil {
		return false // shutting down: nothing was refused
	}
	var m *inference.Model
	if err == nil {
		m, err = inference.LoadModel(files, c.cfg.Session)
	}
	if err == nil && (m.Card.Name != a.Name || m.Card.Version != a.Version) {
		err = fmt.Errorf("model.json names %s, registry key is %s", m.Ref(), a)
		m.Close()
	}
	if err != nil {
		c.cfg.Metrics.loads.WithLabelValues(env, "refused").Inc()
		cur, ok := c.Serving(env)
		if ok {
			log.Error().Err(err).Str("serving", cur.String()).Msg("model refused: the previous model keeps serving")
		} else {
			log.Error().Err(err).Msg("model refused: this env serves nothing until a valid model is promoted")
		}
		if c.cfg.OnLoad != nil {
			var serving *models.Assignment
			if ok {
				serving = &cur
			}
			c.cfg.OnLoad(env, a, err, serving)
		}
		return false
	}
	old, err := c.batchers[env].Swap(m)
	if err != nil {
		m.Close()
		return false
	}
	c.mu.Lock()
	prev, hadPrev := c.serving[env]
	c.serving[env] = a
	c.mu.Unlock()
	if old != nil {
		c.cfg.Metrics.info.DeleteLabelValues(infoLabels(env, prev, old)...)
		old.Close()
	}
	c.cfg.Metrics.info.WithLabelValues(infoLabels(env, a, m)...).Set(1)
	c.cfg.Metrics.loads.WithLabelValues(env, "ok").Inc()
	ev := log.Info().Str("provider", m.Provider).Int("threads", m.Threads).Int("parallel_runs", m.ParallelRuns).Int("max_batch", c.batchers[env].MaxBatch()).
		Str("load_time", m.LoadTime.Round(time.Millisecond).String()).Str("onnxruntime", inference.RuntimeVersion())
	if m.Adapter.Name != "" {
		ev = ev.Str("adapter", m.Adapter.Name).Str("adapter_vendor", m.Adapter.Vendor).Str("adapter_type", m.Adapter.Type).
			Str("adapter_backend", m.Adapter.Backend).Str("adapter_driver", m.Adapter.Driver)
	}
	if len(m.Notes) > 0 {
		ev = ev.Strs("notes", m.Notes)
	}
	if hadPrev {
		ev = ev.Str("previous", prev.String())
	}
	ev.Msg("model serving")
	if c.cfg.OnLoad != nil {
		c.cfg.OnLoad(env, a, nil, nil)
	}
	return true
}

func (c *Classifier) runStage(ctx context.Context, env string) {
	p := stage.Processor[schemas.Split]{
		Stage:       schemas.StageClassifier,
		Env:         env,
		Decode:      schemas.DecodeSplit,
		ImageID:     func(s schemas.Split) string { return s.ImageID },
		HandleBatch: c.handleBatch(env),
		// The serving model's run size: a stage batch fills one run.
		MaxBatch:    c.batchers[env].MaxBatch(),
		MaxWait:     c.cfg.MaxWait,
		Concurrency: c.cfg.Concurrency,
		RetryBase:   c.cfg.RetryBase,
		Logger:      c.log.With().Str("env", env).Logger(),
		Metrics:     c.cfg.StageMetrics,
	}
	if err := c.run(ctx, p); err != nil {
		c.log.Error().Err(err).Str("env", env).Msg("classifier stage stopped")
	}
}

// InCanary reports whether imageID is in the canary's share: the first 8
// bytes of sha256("canary:"+id) as a fraction of 2^64, below share. The same
// id is always in or out, whichever instance sees it.
func InCanary(imageID string, share float64) bool {
	if share >= 1 {
		return true
	}
	h := sha256.Sum256([]byte("canary:" + imageID))
	return float64(binary.BigEndian.Uint64(h[:8]))/(1<<64) < share
}

// SetDrillDelay changes the artificial per-batch delay of failure drills
// while the classifier runs; 0 ends the drill.
func (c *Classifier) SetDrillDelay(d time.Duration) { c.drillDelay.Store(int64(d)) }

// handleBatch classifies a stage batch for env with one session run.
func (c *Classifier) handleBatch(env string) stage.BatchHandler[schemas.Split] {
	b := c.batchers[env]
	return func(ctx context.Context, ins []schemas.Split) []stage.Result {
		if d := time.Duration(c.drillDelay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		res := make([]stage.Result, len(ins))
		// Pixels of the whole batch at once: with references, each is an
		// object-store read and a PNG decode.
		all := make([][]byte, len(ins))
		skip := make([]bool, len(ins))
		sem := make(chan struct{}, c.loaders)
		var wg sync.WaitGroup
		for i, in := range ins {
			if env == schemas.EnvCanary && !InCanary(in.ImageID, c.cfg.CanaryShare) {
				c.cfg.Metrics.skipped.WithLabelValues(env).Inc()
				skip[i] = true
				continue // acknowledged without a prediction
			}
			if len(in.RGB) > 0 {
				all[i], res[i].Err = c.pixels(ctx, in)
				continue
			}
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				all[i], res[i].Err = c.pixels(ctx, in)
			})
		}
		wg.Wait()
		var (
			idx  []int
			imgs [][]byte
		)
		for i := range ins {
			if skip[i] {
				continue
			}
			if res[i].Err != nil {
				c.cfg.Metrics.failed(env, c.version(env))
				continue
			}
			idx = append(idx, i)
			imgs = append(imgs, all[i])
		}
		if len(imgs) == 0 {
			return res
		}
		batch, err := b.Predict(ctx, imgs, true)
		if err != nil {
			for _, i := range idx {
				c.cfg.Metrics.failed(env, c.version(env))
				res[i].Err = fmt.Errorf("classify: %w", err) // transient: retried
			}
			return res
		}
		for j, i := range idx {
			p := NewPrediction(env, batch, j, c.cfg.TopK)
			fillFromSplit(&p, ins[i])
			c.cfg.Metrics.predicted(env, p.ModelVersion, p.Confidence)
			res[i].Outputs = []stage.Output{{Subject: schemas.PredictionSubject(env), Event: p}}
		}
		return res
	}
}

func (c *Classifier) version(env string) string {
	a, _ := c.Serving(env)
	return a.Version
}

// pixels returns the image's 224x224 RGB: inline in the event when the
// resize stage carried it, else the processed PNG from the object store,
// decoded by imaging.Decode (the same code that produced it).
func (c *Classifier) pixels(ctx context.Context, in schemas.Split) ([]byte, error) {
	if len(in.RGB) > 0 {
		if len(in.RGB) != inference.ImageBytes || (in.ResizedWidth != 0 && in.ResizedWidth != onnx.ImageSize) || (in.ResizedHeight != 0 && in.ResizedHeight != onnx.ImageSize) {
			return nil, stage.Permanentf(schemas.ReasonBadPixels, "inline rgb is %d bytes (%dx%d), want %d (224x224)", len(in.RGB), in.ResizedWidth, in.ResizedHeight, inference.ImageBytes)
		}
		return in.RGB, nil
	}
	ref := in.Processed
	if ref.Bucket == "" || ref.Key == "" {
		return nil, stage.Permanentf(schemas.ReasonNoPixels, "split event has neither rgb nor a processed object")
	}
	if c.cache == nil {
		return c.loadPixels(ctx, ref)
	}
	return c.cache.get(ref.Bucket+"/"+ref.Key+"@"+ref.ETag, func() ([]byte, error) { return c.loadPixels(ctx, ref) })
}

// loadPixels reads and decodes a processed PNG.
func (c *Classifier) loadPixels(ctx context.Context, ref schemas.ObjectRef) ([]byte, error) {
	rc, _, err := c.store.Get(ctx, ref.Bucket, ref.Key)
	if err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return nil, stage.Permanent(schemas.ReasonObjectMissing, fmt.Errorf("processed image %s/%s: %w", ref.Bucket, ref.Key, err))
		}
		return nil, fmt.Errorf("processed image %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("processed image %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	res, err := imaging.Decode(data, imaging.DefaultOptions())
	if err != nil {
		return nil, stage.Permanent(schemas.ReasonCorruptImage, fmt.Errorf("processed image %s/%s: %w", ref.Bucket, ref.Key, err))
	}
	return res.RGB, nil
}

// NewPrediction builds the prediction for image j of a batch (the fields
// every path shares; the stage adds the image's provenance).
func NewPrediction(env string, b Batch, j, topK int) schemas.Prediction {
	probs := b.Probs[j]
	order := make([]int, len(probs))
	for i := range order {
		order[i] = i
	}
	// Highest first; ties by class index, so the output is deterministic.
	sort.SliceStable(order, func(x, y int) bool { return probs[order[x]] > probs[order[y]] })
	top := make([]schemas.ClassProb, 0, min(topK, len(order)))
	for _, k := range order[:min(topK, len(order))] {
		top = append(top, schemas.ClassProb{Class: b.Labels[k], Probability: probs[k]})
	}
	return schemas.Prediction{
		Schema:           schemas.SchemaPrediction,
		Env:              env,
		ModelName:        b.Card.Name,
		ModelVersion:     b.Card.Version,
		Provider:         b.Provider,
		PredictedClass:   top[0].Class,
		Confidence:       top[0].Probability,
		TopK:             top,
		BatchSize:        b.Size,
		InferenceSeconds: b.InferenceSeconds,
		Time:             time.Now().UTC(),
	}
}

func fillFromSplit(p *schemas.Prediction, in schemas.Split) {
	p.ImageID = in.ImageID
	p.UploadID = in.UploadID
	p.Source = in.Source
	p.Split = in.Split
	p.Holdout = in.Holdout
	// Every labelled image's prediction carries its class, as the contract
	// says: driftwatch learns the training distribution from the train
	// split's, the trainer judges live feedback by them; accuracy on the
	// dashboard counts holdouts only.
	p.TrueLabel = in.Label
}
