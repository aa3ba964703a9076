package trainer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/rs/zerolog"
)

// DefaultModelName is the registry name of the versions the trainer makes.
const DefaultModelName = "fundus"

// Config configures a Trainer. Start from DefaultConfig.
type Config struct {
	// Name is the registry name of trained versions.
	Name string
	// DatasetBucket and DatasetPrefix locate the splitter's layout.
	DatasetBucket, DatasetPrefix string
	// MinPerClass and MinClasses: a run needs at least MinPerClass train
	// images in at least MinClasses classes (bootstrap waits for it; a
	// request without it is refused).
	MinPerClass, MinClasses int
	// Settle is how long no new train image may arrive before bootstrap trains.
	Settle time.Duration
	// Bootstrap enables training version 1 while prod serves no trained model.
	Bootstrap bool
	// ManifestWait is how long a manifest's new images may take to reach
	// the dataset (resize and splitter run after labelsink copies them).
	ManifestWait time.Duration
	// Poll is how often bootstrap and the rollout look at the world.
	Poll time.Duration
	// Gate are the promotion rules; AutoPromote false stops before prod.
	Gate        GateConfig
	AutoPromote bool
	// Seed makes runs repeatable.
	Seed uint64
	// TmpDir holds engines' scratch folders ("" is the system's).
	TmpDir string
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Name: DefaultModelName, DatasetBucket: objstore.BucketProcessed, DatasetPrefix: "transformed_eye_dataset",
		MinPerClass: 5, MinClasses: 2, Settle: 10 * time.Second, Bootstrap: true, ManifestWait: 2 * time.Minute,
		Poll: 2 * time.Second, Gate: DefaultGate(), AutoPromote: true, Seed: 1}
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" || strings.ContainsAny(c.Name, "/\\ \t\n") {
		errs = append(errs, fmt.Errorf("model name %q: must be non-empty, without slashes or spaces", c.Name))
	}
	if c.MinPerClass < 1 || c.MinClasses < 2 {
		errs = append(errs, fmt.Errorf("train-min-per-class %d must be at least 1 and min classes %d at least 2", c.MinPerClass, c.MinClasses))
	}
	if c.Settle < 0 || c.ManifestWait < 0 || c.Poll <= 0 {
		errs = append(errs, errors.New("train-settle and manifest wait must not be negative, poll must be positive"))
	}
	g := c.Gate
	if g.Margin < 0 || g.Margin > 1 || g.MaxRecallDrop < 0 || g.MaxRecallDrop > 1 {
		errs = append(errs, fmt.Errorf("promote-margin %v and recall drop %v: want 0..1", g.Margin, g.MaxRecallDrop))
	}
	if g.CanaryMin < 0 || g.RollbackWindow < 1 {
		errs = append(errs, fmt.Errorf("canary-min %d must be >= 0 and rollback-window %d >= 1", g.CanaryMin, g.RollbackWindow))
	}
	return errors.Join(errs...)
}

// Trainer trains, evaluates and rolls out model versions.
type Trainer struct {
	cfg      Config
	store    objstore.Store
	registry *models.Registry
	kv       stage.KeyValue
	pub      stage.Publisher
	streams  stage.StreamReader
	engine   Engine
	eval     *Evaluator
	log      zerolog.Logger
	metrics  *Metrics
	now      func() time.Time
	// mu serialises training runs of this process: a run holds every core.
	mu sync.Mutex
}

// New returns a Trainer. kv is the KVTrainer bucket (the rollout
// records); pub publishes model events; streams are read for the rollout's
// judgements (live predictions, drift alerts).
func New(cfg Config, store objstore.Store, registry *models.Registry, kv stage.KeyValue, pub stage.Publisher, streams stage.StreamReader,
	engine Engine, eval *Evaluator, m *Metrics, log zerolog.Logger) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("trainer: metrics are required")
	}
	if kv == nil || pub == nil || streams == nil {
		return nil, errors.New("trainer: a KV bucket, a publisher and a stream reader are required")
	}
	return &Trainer{cfg: cfg, store: store, registry: registry, kv: kv, pub: pub, streams: streams, engine: engine, eval: eval, metrics: m,
		log: log.With().Str("stage", schemas.StageTrainer).Logger(), now: func() time.Time { return time.Now().UTC() }}, nil
}

// Request is one reason to train.
type Request struct {
	// Trigger is "bootstrap", "manifest" or "command".
	Trigger string
	Reason  string
	// Manifest lists images a labelling round added; the trainer waits for
	// them to reach the dataset and skips those that do not.
	Manifest []schemas.ManifestLine
	// Progress, when set, receives the engine's progress.
	Progress func(Progress)
}

// Outcome is what a request produced.
type Outcome struct {
	// Event is the trained or refused event.
	Event schemas.ModelEvent
	// Skipped are the images the request named that could not be used.
	Skipped []Skipped
	// Existing is true when the version had been trained before (a
	// redelivered or repeated request): nothing was trained.
	Existing bool
}

// Triggers of a Request.
const (
	TriggerBootstrap = "bootstrap"
	TriggerManifest  = "manifest"
	TriggerCommand   = "command"
)

// Train runs one request to the end: a registered, evaluated candidate
// (trained event) or a refusal with its reason (refused event). The same
// training set, engine and settings give the same version once: a repeat
// finds it and trains nothing. Errors are transient (store, NATS): the
// caller retries.
func (t *Trainer) Train(ctx context.Context, req Request) (Outcome, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := time.Now()
	log := t.log.With().Str("trigger", req.Trigger).Str("engine", t.engine.Name()).Logger()
	ds, err := ListDataset(ctx, t.store, t.cfg.DatasetBucket, t.cfg.DatasetPrefix)
	if err != nil {
		return Outcome{}, err
	}
	var skipped []Skipped
	if req.Trigger == TriggerManifest {
		if ds, skipped, err = t.awaitManifest(ctx, ds, req.Manifest); err != nil {
			return Outcome{}, err
		}
	}
	train := ds.Splits[schemas.SplitTrain]
	refuse := func(reason string) Outcome {
		t.metrics.runs.WithLabelValues(t.engine.Name(), "refused").Inc()
		log.Warn().Str("reason", reason).Msg("training refused")
		ev := t.event(schemas.ModelRefused, "", "", t.engine.Name(), reason)
		ev.TrainImages = len(train)
		ev.EventID = "refused:" + t.cfg.Name + ":" + Digest(train)[:16] + ":" + t.engine.Name()
		return Outcome{Event: ev, Skipped: skipped}
	}
	counts := map[string]int{}
	for _, e := range train {
		counts[e.Class]++
	}
	if enough := enoughClasses(counts, t.cfg.MinPerClass); enough < t.cfg.MinClasses {
		return refuse(fmt.Sprintf("too few images: %d train images in %d classes, %d classes with at least %d (need %d)",
			len(train), len(counts), enough, t.cfg.MinPerClass, t.cfg.MinClasses)), nil
	}
	classes := classesOf(train)
	key := t.versionKey(train)
	entries, err := t.registry.List(ctx)
	if err != nil {
		return Outcome{}, err
	}
	trained := 0
	for _, e := range entries {
		if e.Name != t.cfg.Name {
			continue
		}
		if strings.HasSuffix(e.Version, "-"+key) {
			log.Info().Str("version", e.Version).Msg("this training set, engine and settings were trained before: nothing to do")
			ev := t.event(schemas.ModelTrained, e.Name, e.Version, t.engine.Name(), "already trained: "+req.Reason)
			ev.Metrics, ev.TrainImages = e.Metrics, len(train)
			ev.EventID = "trained:" + e.Name + ":" + e.Version
			return Outcome{Event: ev, Skipped: skipped, Existing: true}, nil
		}
		if e.Card.Training != nil {
			trained++
		}
	}
	version := fmt.Sprintf("v%d-%s", trained+1, key)
	var sel []Example
	for _, e := range ds.Splits[SelectHoldout] {
		if slices.Contains(classes, e.Class) {
			sel = append(sel, e)
		}
	}
	work, err := os.MkdirTemp(t.cfg.TmpDir, "eyeflow-train-")
	if err != nil {
		return Outcome{}, fmt.Errorf("trainer: scratch folder: %w", err)
	}
	defer os.RemoveAll(work)
	log.Info().Str("version", version).Int("train", len(train)).Int("select", len(sel)).Int("classes", len(classes)).Str("reason", req.Reason).Msg("training")
	res, err := t.engine.Train(ctx, Job{Name: t.cfg.Name, Version: version, Classes: classes, Train: train, Select: sel,
		Images: t.eval.Images, Seed: t.cfg.Seed, WorkDir: work, Log: log,
		Progress: func(p Progress) {
			log.Info().Int("epoch", p.Epoch).Int("epochs", p.Epochs).Float64("loss", p.Loss).Float64("select_macro_f1", p.SelectMacroF1).Str("step", p.Message).Msg("training progress")
			if req.Progress != nil {
				req.Progress(p)
			}
		}})
	if errors.Is(err, ErrRefused) {
		return refuse(err.Error()), nil
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("train %s %s: %w", t.cfg.Name, version, err)
	}
	skipped = append(skipped, res.Skipped...)
	metrics, err := t.eval.Evaluate(ctx, res.Files, ds)
	if errors.Is(err, ErrCandidate) {
		return refuse(fmt.Sprintf("trained %s %s, but %v", t.cfg.Name, version, err)), nil
	}
	if err != nil {
		return Outcome{}, err
	}
	card, err := models.ParseCard(res.Files.Card)
	if err != nil {
		return refuse(fmt.Sprintf("engine wrote an invalid model card: %v", err)), nil
	}
	card.Metrics = metrics
	if card.Training == nil {
		card.Training = &models.Training{Engine: t.engine.Name()}
	}
	card.Training.DatasetDigest = Digest(train)
	if len(skipped) > 0 {
		card.Training.Skipped = map[string]int{}
		for _, s := range skipped {
			card.Training.Skipped[s.Reason]++
		}
	}
	if res.Files.Card, err = json.MarshalIndent(card, "", "  "); err != nil {
		return Outcome{}, err
	}
	if _, err := t.registry.Push(ctx, res.Files, t.cfg.Name, version); err != nil && !strings.Contains(err.Error(), "already registered") {
		return Outcome{}, err
	}
	if err := t.registry.SetMetrics(ctx, t.cfg.Name, version, metrics); err != nil {
		return Outcome{}, err
	}
	rec := Record{Name: t.cfg.Name, Version: version, Engine: t.engine.Name(), Stage: StageCandidate, Metrics: metrics,
		HoldoutDigest: holdoutDigest(ds), TrainImages: len(train), Created: t.now()}
	if err := t.putRecord(ctx, rec); err != nil {
		return Outcome{}, err
	}
	secs := time.Since(start).Seconds()
	t.metrics.runs.WithLabelValues(t.engine.Name(), "trained").Inc()
	t.metrics.seconds.WithLabelValues(t.engine.Name()).Observe(secs)
	t.metrics.observe(t.cfg.Name, version, metrics)
	log.Info().Str("version", version).Float64("seconds", secs).
		Float64("holdout_2_accuracy", metrics[GateHoldout].Accuracy).Float64("holdout_3_accuracy", metrics[ReportHoldout].Accuracy).
		Msg("trained and evaluated")
	ev := t.event(schemas.ModelTrained, t.cfg.Name, version, t.engine.Name(), req.Reason)
	ev.Metrics, ev.TrainImages = metrics, len(train)
	ev.EventID = "trained:" + t.cfg.Name + ":" + version
	return Outcome{Event: ev, Skipped: skipped}, nil
}

func enoughClasses(counts map[string]int, min int) int {
	n := 0
	for _, c := range counts {
		if c >= min {
			n++
		}
	}
	return n
}

// versionKey derives a version's identity from the training set, the
// engine and its settings: the same request twice is the same version.
func (t *Trainer) versionKey(train []Example) string {
	settings, _ := json.Marshal(t.engine.Settings()) // map keys are sorted
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%d\n", Digest(train), t.engine.Name(), settings, t.cfg.Seed)
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// holdoutDigest identifies the promotion holdout: figures computed on
// another one are recomputed before they are compared.
func holdoutDigest(ds *Dataset) string { return Digest(ds.Splits[GateHoldout])[:16] }

// awaitManifest waits (up to ManifestWait) until every labelled image of
// the manifest is in the dataset, and returns the dataset then with the
// images that never arrived.
func (t *Trainer) awaitManifest(ctx context.Context, ds *Dataset, items []schemas.ManifestLine) (*Dataset, []Skipped, error) {
	deadline := t.now().Add(t.cfg.ManifestWait)
	for {
		have := map[string]bool{}
		for _, exs := range ds.Splits {
			for _, e := range exs {
				have[e.ImageID] = true
			}
		}
		var missing []Skipped
		for _, it := range items {
			if it.ImageID == "" || !have[it.ImageID] {
				missing = append(missing, Skipped{Example: Example{ImageID: it.ImageID, Class: it.Class, Bucket: it.Bucket, Key: it.Key},
					Reason: ReasonMissingImage, Err: fmt.Errorf("manifest image %s/%s (%s) is not in the dataset", it.Bucket, it.Key, it.ImageID)})
			}
		}
		// Labels come in rounds: other labelled copies may still be on
		// their way through resize and the splitter. Training on a settled
		// train split takes them all in one version.
		settled := t.now().Sub(ds.Newest) >= t.cfg.Settle
		if (len(missing) == 0 && settled) || !t.now().Before(deadline) {
			return ds, missing, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(t.cfg.Poll):
		}
		var err error
		if ds, err = ListDataset(ctx, t.store, t.cfg.DatasetBucket, t.cfg.DatasetPrefix); err != nil {
			return nil, nil, err
		}
	}
}

// ReadManifest reads a manifest (JSON lines of schemas.ManifestLine).
// Lines that are not entries are reported, not fatal.
func ReadManifest(ctx context.Context, store objstore.Store, ref schemas.ObjectRef) ([]schemas.ManifestLine, []string, error) {
	rc, _, err := store.Get(ctx, ref.Bucket, ref.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("read manifest %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	defer rc.Close()
	var out []schemas.ManifestLine
	var bad []string
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e schemas.ManifestLine
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Key == "" || e.Class == "" {
			bad = append(bad, "line "+strconv.Itoa(line)+": not a manifest entry")
			continue
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read manifest %s/%s: %w", ref.Bucket, ref.Key, err)
	}
	return out, bad, nil
}

func (t *Trainer) event(kind, name, version, engine, reason string) schemas.ModelEvent {
	return schemas.ModelEvent{Schema: schemas.SchemaModel, Kind: kind, Name: name, Version: version, Engine: engine, Reason: reason, Time: t.now()}
}
