package trainer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/inference"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/processors/splitter"
	"eyeflow/processors/trainer"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Three of the demo's classes, so the synthetic 15-class models cover them.
var testClasses = []string{"cataract", "glaucoma", "normal"}

// colours give each class a distinct look that random DenseNet features
// separate: a base colour with noise and a disc of another colour.
var colours = map[string][2]color.RGBA{
	"cataract": {{200, 170, 150, 255}, {250, 250, 240, 255}},
	"glaucoma": {{150, 60, 30, 255}, {255, 230, 80, 255}},
	"normal":   {{170, 70, 40, 255}, {220, 120, 60, 255}},
}

func fundusPNG(t testing.TB, class string, i int) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(i), uint64(len(class))))
	img := image.NewRGBA(image.Rect(0, 0, 224, 224))
	base, disc := colours[class][0], colours[class][1]
	cx, cy, r := 60+rng.IntN(100), 60+rng.IntN(100), 20+rng.IntN(20)
	for y := range 224 {
		for x := range 224 {
			c := base
			if (x-cx)*(x-cx)+(y-cy)*(y-cy) < r*r {
				c = disc
			}
			n := func(v uint8) uint8 { return uint8(max(0, min(255, int(v)+rng.IntN(41)-20))) }
			img.SetRGBA(x, y, color.RGBA{n(c.R), n(c.G), n(c.B), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type env struct {
	nats     *testenv.NATSEnv
	js       jetstream.JetStream
	store    objstore.Store
	registry *models.Registry
	kv       stage.KeyValue
	ctx      context.Context
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if err := inference.InitRuntime(testenv.ORTLibrary(t)); err != nil {
		t.Fatal(err)
	}
	n := testenv.NATS(t, testenv.TopologyOptions())
	e := &env{nats: n, js: n.JS, store: objstore.NewJetStream(n.JS), ctx: testenv.Context(t, 5*time.Minute)}
	for _, b := range objstore.Buckets() {
		if err := e.store.EnsureBucket(e.ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if e.registry, err = models.OpenRegistry(e.ctx, e.store, stagetest.Bucket(t, n.JS, bus.KVModels)); err != nil {
		t.Fatal(err)
	}
	e.kv = stagetest.Bucket(t, n.JS, bus.KVTrainer)
	return e
}

// addImages writes n images per class into the dataset folder of split,
// numbered from first; it returns their image ids.
func (e *env) addImages(t *testing.T, split string, n, first int, classes ...string) []string {
	t.Helper()
	var ids []string
	for _, c := range classes {
		for i := first; i < first+n; i++ {
			data := fundusPNG(t, c, i)
			sum := sha256.Sum256(data)
			id := hex.EncodeToString(sum[:])
			key := splitter.DatasetKey(splitter.DefaultPrefix, split, c, id)
			if _, err := e.store.Put(e.ctx, objstore.BucketProcessed, key, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// dataset fills train and the three holdouts.
func (e *env) dataset(t *testing.T, train int) {
	t.Helper()
	e.addImages(t, schemas.SplitTrain, train, 0, testClasses...)
	e.addImages(t, schemas.SplitHoldout1, 3, 1000, testClasses...)
	e.addImages(t, schemas.SplitHoldout2, 5, 2000, testClasses...)
	e.addImages(t, schemas.SplitHoldout3, 4, 3000, testClasses...)
}

func (e *env) trainer(t *testing.T, mod func(*trainer.Config)) *trainer.Trainer {
	t.Helper()
	feats, err := trainer.NewFeatures(e.store, inference.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(feats.Close)
	return e.trainerWith(t, trainer.NewEmbedded(feats, trainer.EmbeddedConfig{}), mod)
}

func (e *env) trainerWith(t *testing.T, engine trainer.Engine, mod func(*trainer.Config)) *trainer.Trainer {
	t.Helper()
	cfg := trainer.DefaultConfig()
	cfg.Settle, cfg.Poll, cfg.ManifestWait = 0, 100*time.Millisecond, time.Second
	cfg.Gate.CanaryMin = 0
	if mod != nil {
		mod(&cfg)
	}
	tr, err := trainer.New(cfg, e.store, e.registry, e.kv, stage.PublisherOf(e.js), stage.StreamReaderOf(e.js), engine,
		&trainer.Evaluator{Images: trainer.StoreImages(e.store)}, trainer.NewMetrics(prometheus.NewRegistry()), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// events returns the model events published so far.
func (e *env) events(t *testing.T) []schemas.ModelEvent {
	t.Helper()
	var out []schemas.ModelEvent
	for _, m := range testenv.StreamMessages(t, e.js, bus.StreamModels, schemas.SubjectModels) {
		ev, err := schemas.DecodeModelEvent(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

func (e *env) assigned(t *testing.T, env string) models.Assignment {
	t.Helper()
	a, _, err := e.registry.Assigned(e.ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// pushSynthetic registers the random-weight DenseNet121 under name, version.
func (e *env) pushSynthetic(t *testing.T, name, version string) {
	t.Helper()
	files, err := models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121, Name: name, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.registry.Push(e.ctx, files, name, version); err != nil {
		t.Fatal(err)
	}
}

func kinds(evs []schemas.ModelEvent) []string {
	var out []string
	for _, ev := range evs {
		s := ev.Kind + " " + ev.Version
		if ev.ToEnv != "" {
			s += " -> " + ev.ToEnv
		}
		out = append(out, s)
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBootstrapTrainsEvaluatesAndPromotes(t *testing.T) {
	e := newEnv(t)
	log := zerolog.Nop()
	if _, err := models.EnsureDefault(e.ctx, e.registry, log); err != nil {
		t.Fatal(err)
	}
	e.dataset(t, 8)
	tr := e.trainer(t, nil)
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{}, 2)
	go func() { tr.RunBootstrap(ctx); done <- struct{}{} }()
	go func() { tr.RunRollout(ctx); done <- struct{}{} }()
	waitFor(t, "a trained version in prod", 3*time.Minute, func() bool {
		return e.assigned(t, schemas.EnvProd).Name == trainer.DefaultModelName
	})
	cancel()
	<-done
	<-done
	prod := e.assigned(t, schemas.EnvProd)
	if !strings.HasPrefix(prod.Version, "v1-") {
		t.Errorf("prod serves %s, want version 1", prod)
	}
	m, ok, err := e.registry.Metrics(e.ctx, prod.Name, prod.Version)
	if err != nil || !ok {
		t.Fatalf("no metrics recorded for %s: %v", prod, err)
	}
	for _, h := range trainer.Holdouts() {
		if m[h].Images == 0 {
			t.Errorf("%s: no images scored", h)
		}
	}
	if acc := m[trainer.ReportHoldout].Accuracy; acc <= 1.0/3 {
		t.Errorf("holdout_3 accuracy %.2f is not above chance (1/3)", acc)
	}
	card, err := e.registry.Card(e.ctx, prod.Name, prod.Version)
	if err != nil {
		t.Fatal(err)
	}
	if card.Training == nil || card.Training.Engine != trainer.EngineEmbedded || card.Training.TrainImages != 24 || card.Metrics[trainer.GateHoldout].Images != 15 {
		t.Errorf("model card training %+v, holdout_2 %+v", card.Training, card.Metrics[trainer.GateHoldout])
	}
	want := []string{"trained " + prod.Version, "promoted " + prod.Version + " -> staging", "promoted " + prod.Version + " -> canary", "promoted " + prod.Version + " -> prod"}
	if got := kinds(e.events(t)); !slices.Equal(got, want) {
		t.Errorf("model events\n got %q\nwant %q", got, want)
	}
	// The served model is the one the evaluator scored: ONNX Runtime loads
	// it through the classifier's own path.
	files, err := e.registry.Fetch(e.ctx, prod.Name, prod.Version)
	if err != nil {
		t.Fatal(err)
	}
	model, err := inference.LoadModel(files, inference.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	model.Close()
}

func TestSameRequestTwiceIsOneVersion(t *testing.T) {
	e := newEnv(t)
	e.dataset(t, 6)
	tr := e.trainer(t, nil)
	first, err := tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if first.Event.Kind != schemas.ModelTrained || first.Existing {
		t.Fatalf("first run: %+v", first.Event)
	}
	second, err := tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "test again"})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Existing || second.Event.Version != first.Event.Version {
		t.Fatalf("second run trained %s (existing %v), want %s again", second.Event.Version, second.Existing, first.Event.Version)
	}
	entries, err := e.registry.List(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("registry holds %d versions, want 1", len(entries))
	}
	if got := kinds(e.events(t)); !slices.Equal(got, []string{"trained " + first.Event.Version}) {
		t.Errorf("events %q, want one trained event", got)
	}
	// A new image is a new training set: a new version.
	e.addImages(t, schemas.SplitTrain, 1, 500, "normal")
	third, err := tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "more data"})
	if err != nil {
		t.Fatal(err)
	}
	if third.Existing || third.Event.Version == first.Event.Version || !strings.HasPrefix(third.Event.Version, "v2-") {
		t.Errorf("one more image trained %s (existing %v), want a new version 2", third.Event.Version, third.Existing)
	}
}

func TestGateRefusesWorseAndPromotesBetter(t *testing.T) {
	e := newEnv(t)
	e.dataset(t, 8)
	// prod: a pushed model with random weights (not the placeholder name,
	// so the gate compares against it).
	e.pushSynthetic(t, "random", "1")
	if err := e.registry.Promote(e.ctx, schemas.EnvProd, "random", "1"); err != nil {
		t.Fatal(err)
	}
	tr := e.trainer(t, func(c *trainer.Config) { c.Bootstrap = false })
	for range 3 { // evaluate prod, nothing else to do
		if err := tr.Step(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	out, err := tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "better"})
	if err != nil {
		t.Fatal(err)
	}
	good := out.Event.Version
	for range 6 {
		if err := tr.Step(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if a := e.assigned(t, schemas.EnvProd); a.Version != good {
		t.Fatalf("prod serves %s, want the better candidate %s; events %q", a, good, kinds(e.events(t)))
	}
	// A worse candidate: the random model again, pushed as a new version.
	e.pushSynthetic(t, "random", "2")
	for range 6 {
		if err := tr.Step(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if a := e.assigned(t, schemas.EnvProd); a.Version != good {
		t.Errorf("prod serves %s after a worse candidate, want %s", a, good)
	}
	if a := e.assigned(t, schemas.EnvCanary); a.Version == "2" {
		t.Errorf("the worse candidate reached canary")
	}
	var refused *schemas.ModelEvent
	for _, ev := range e.events(t) {
		if ev.Kind == schemas.ModelRefused && ev.Version == "2" {
			refused = &ev
		}
	}
	if refused == nil || !strings.Contains(refused.Reason, "does not beat prod") {
		t.Errorf("no refusal naming the gate for the worse candidate: %q", kinds(e.events(t)))
	}
}

func TestRollbackOnDriftAndWorseFeedback(t *testing.T) {
	e := newEnv(t)
	e.dataset(t, 6)
	tr := e.trainer(t, func(c *trainer.Config) { c.Bootstrap = false; c.Gate.RollbackWindow = 50 })
	out, err := tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	good := out.Event.Version
	if err := tr.Promote(e.ctx, trainer.DefaultModelName, good, schemas.EnvProd, "signed off"); err != nil {
		t.Fatal(err)
	}
	e.pushSynthetic(t, "random", "1")
	if err := tr.Promote(e.ctx, "random", "1", schemas.EnvProd, "a bad idea"); err != nil {
		t.Fatal(err)
	}
	// Live traffic after the promotion: labelled predictions, mostly wrong,
	// and a drift alert for the new version.
	publish := func(subject string, v any) {
		b, _ := json.Marshal(v)
		if _, err := e.js.Publish(e.ctx, subject, b); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		pred := "normal"
		if i < 3 {
			pred = "cataract"
		}
		publish(schemas.PredictionSubject(schemas.EnvProd), schemas.Prediction{Schema: schemas.SchemaPrediction, ImageID: fmt.Sprint(i),
			Env: schemas.EnvProd, ModelName: "random", ModelVersion: "1", TrueLabel: "cataract", PredictedClass: pred, Confidence: 0.3, Time: time.Now()})
	}
	// No drift yet: nothing happens.
	if err := tr.Step(e.ctx); err != nil {
		t.Fatal(err)
	}
	if a := e.assigned(t, schemas.EnvProd); a.Name != "random" {
		t.Fatalf("rolled back to %s without a drift alert", a)
	}
	publish(schemas.DriftSubject(schemas.EnvProd), schemas.DriftAlert{Schema: schemas.SchemaDrift, AlertID: "a1", Env: schemas.EnvProd,
		ModelVersion: "1", Signal: "low_confidence_streak", State: "firing", Time: time.Now()})
	if err := tr.Step(e.ctx); err != nil {
		t.Fatal(err)
	}
	if a := e.assigned(t, schemas.EnvProd); a.Version != good {
		t.Fatalf("prod serves %s, want the rollback to %s; events %q", a, good, kinds(e.events(t)))
	}
	evs := e.events(t)
	last := evs[len(evs)-1]
	if last.Kind != schemas.ModelRolledBack || last.Version != "1" || last.PreviousVersion != good || !strings.Contains(last.Reason, "drift") {
		t.Errorf("last event %+v, want the rollback with its reason", last)
	}
}

func TestManifestSkipsMissingImagesAndDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.dataset(t, 6)
	tr := e.trainer(t, func(c *trainer.Config) { c.Bootstrap = false })
	labelled := e.addImages(t, schemas.SplitTrain, 1, 700, "glaucoma")
	entries := []schemas.ManifestLine{
		{Bucket: objstore.BucketRaw, Key: "glaucoma/" + labelled[0] + ".png", Class: "glaucoma", ImageID: labelled[0], Origin: "labelled"},
		{Bucket: objstore.BucketRaw, Key: "normal/never-arrived.png", Class: "normal", ImageID: strings.Repeat("ab", 32), Origin: "labelled"},
	}
	var buf bytes.Buffer
	for _, en := range entries {
		json.NewEncoder(&buf).Encode(en)
	}
	info, err := e.store.Put(e.ctx, objstore.BucketLabeling, "retrain/ev1/manifest.jsonl", bytes.NewReader(buf.Bytes()), int64(buf.Len()), objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stagetest.Run(t, e.js, tr.Processor(stage.NewMetrics(prometheus.NewRegistry())))
	ev := schemas.Retrain{Schema: schemas.SchemaRetrain, EventID: "ev1", Kind: schemas.RetrainManifestReady, Reason: "test",
		Manifest: &schemas.ObjectRef{Bucket: info.Bucket, Key: info.Key}, Time: time.Now()}
	b, _ := json.Marshal(ev)
	if _, err := e.js.Publish(e.ctx, schemas.SubjectRetrain, b); err != nil {
		t.Fatal(err)
	}
	var dl schemas.DeadLetter
	waitFor(t, "a dead letter for the missing image", 2*time.Minute, func() bool {
		st, err := e.js.Stream(e.ctx, bus.StreamDLQ)
		if err != nil {
			return false
		}
		m, err := st.GetLastMsgForSubject(e.ctx, schemas.DLQSubject(schemas.StageTrainer))
		if err != nil {
			return false
		}
		return json.Unmarshal(m.Data, &dl) == nil
	})
	if dl.Reason != trainer.ReasonMissingImage || !strings.Contains(dl.Subject, "never-arrived") || !dl.Permanent {
		t.Errorf("dead letter %+v", dl)
	}
	waitFor(t, "the trained event", time.Minute, func() bool { return len(e.events(t)) > 0 })
	trained := e.events(t)[0]
	if trained.Kind != schemas.ModelTrained || trained.TrainImages != 19 {
		t.Fatalf("event %+v, want trained on 19 images", trained)
	}
	card, err := e.registry.Card(e.ctx, trained.Name, trained.Version)
	if err != nil {
		t.Fatal(err)
	}
	if card.Training.Skipped[trainer.ReasonMissingImage] != 1 {
		t.Errorf("model card skipped %v, want one missing image", card.Training.Skipped)
	}
}

func TestTooFewImagesIsRefused(t *testing.T) {
	e := newEnv(t)
	e.addImages(t, schemas.SplitTrain, 8, 0, "normal")
	e.addImages(t, schemas.SplitTrain, 4, 0, "glaucoma")
	tr := e.trainer(t, nil)
	out, err := tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Event.Kind != schemas.ModelRefused || !strings.Contains(out.Event.Reason, "too few images") {
		t.Fatalf("event %+v, want refused for too few images", out.Event)
	}
	if entries, _ := e.registry.List(e.ctx); len(entries) != 0 {
		t.Errorf("a refused run registered %d versions", len(entries))
	}
}

func TestBrokenCandidatesAreRefused(t *testing.T) {
	e := newEnv(t)
	e.dataset(t, 4)
	files, err := models.Synthesize(models.SynthOptions{Arch: models.ArchTiny})
	if err != nil {
		t.Fatal(err)
	}
	garbage := files
	garbage.ONNX = []byte("not an onnx model")
	if _, err := e.registry.Push(e.ctx, garbage, "broken", "1"); err != nil {
		t.Fatal(err)
	}
	// Labels that miss the data set's classes: a two-class tiny model.
	two := files
	two.ONNX = onnxTiny(2)
	two.Labels = []byte(`["amd", "cataract"]`)
	two.Card = bytes.Replace(files.Card, []byte(`"labels": 15`), []byte(`"labels": 2`), 1)
	if _, err := e.registry.Push(e.ctx, two, "twoclass", "1"); err != nil {
		t.Fatal(err)
	}
	tr := e.trainer(t, nil)
	if err := tr.Step(e.ctx); err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, ev := range e.events(t) {
		if ev.Kind == schemas.ModelRefused {
			reasons[ev.Name] = ev.Reason
		}
	}
	if !strings.Contains(reasons["broken"], "does not load") {
		t.Errorf("broken ONNX: reason %q", reasons["broken"])
	}
	if !strings.Contains(reasons["twoclass"], "lacks the data set's classes [glaucoma normal]") {
		t.Errorf("labels that miss classes: reason %q", reasons["twoclass"])
	}
	for _, env := range schemas.Envs() {
		if a := e.assigned(t, env); a.Name != "" {
			t.Errorf("%s serves %s after refusals", env, a)
		}
	}
}

func TestKilledMidRunTrainsOneVersion(t *testing.T) {
	e := newEnv(t)
	e.dataset(t, 8)
	tr := e.trainer(t, func(c *trainer.Config) { c.Bootstrap = false })
	info, err := e.store.Put(e.ctx, objstore.BucketLabeling, "retrain/ev2/manifest.jsonl", strings.NewReader(""), 0, objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(schemas.Retrain{Schema: schemas.SchemaRetrain, EventID: "ev2", Kind: schemas.RetrainManifestReady,
		Manifest: &schemas.ObjectRef{Bucket: info.Bucket, Key: info.Key}, Time: time.Now()})
	if _, err := e.js.Publish(e.ctx, schemas.SubjectRetrain, b); err != nil {
		t.Fatal(err)
	}
	// First instance: killed once it is computing features, with no grace
	// for in-flight work, as kill -9 would.
	p := tr.Processor(stage.NewMetrics(prometheus.NewRegistry()))
	p.ShutdownTimeout = time.Millisecond
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- stage.Run(ctx, e.js, p) }()
	waitFor(t, "training to start", time.Minute, func() bool {
		for _, err := range e.store.List(e.ctx, objstore.BucketFeatures, "") {
			return err == nil
		}
		return false
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if entries, _ := e.registry.List(e.ctx); len(entries) != 0 {
		t.Fatalf("the killed run registered %d versions before it finished", len(entries))
	}
	// A second instance gets the request again and finishes it.
	tr2 := e.trainer(t, func(c *trainer.Config) { c.Bootstrap = false })
	stagetest.Run(t, e.js, tr2.Processor(stage.NewMetrics(prometheus.NewRegistry())))
	waitFor(t, "the trained event", 2*time.Minute, func() bool { return len(e.events(t)) > 0 })
	time.Sleep(3 * time.Second) // a third delivery, if any, would show now
	if got := kinds(e.events(t)); len(got) != 1 || !strings.HasPrefix(got[0], "trained v1-") {
		t.Errorf("events %q, want exactly one trained version 1", got)
	}
	if entries, _ := e.registry.List(e.ctx); len(entries) != 1 {
		t.Errorf("registry holds %d versions, want 1", len(entries))
	}
}

// TestTorchEngineThroughTheStage: the PyTorch engine behind the trainer
// stage ends as a registered version the evaluator scores above chance and
// the classifier's ONNX Runtime serves; a crashing child is a refusal with
// its reason, and the request is answered, not lost.
func TestTorchEngineThroughTheStage(t *testing.T) {
	e := newEnv(t)
	e.dataset(t, 10)
	engine, err := trainer.NewTorchEngine(trainer.TorchConfig{Arch: "smallcnn", Epochs: 4, BatchSize: 16, LR: 3e-3, Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tr := e.trainerWith(t, engine, func(c *trainer.Config) { c.Bootstrap = false })
	out, err := tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "torch"})
	if err != nil {
		t.Fatal(err)
	}
	ev := out.Event
	if ev.Kind != schemas.ModelTrained || ev.Engine != trainer.EngineTorch {
		t.Fatalf("event %+v, want trained by torch", ev)
	}
	if acc := ev.Metrics[trainer.ReportHoldout].Accuracy; acc <= 1.0/3 {
		t.Errorf("holdout_3 accuracy %.2f, not above chance", acc)
	}
	card, err := e.registry.Card(e.ctx, ev.Name, ev.Version)
	if err != nil {
		t.Fatal(err)
	}
	if card.Training == nil || card.Training.Engine != trainer.EngineTorch || card.Metrics[trainer.GateHoldout].Images == 0 {
		t.Errorf("card training %+v metrics %v", card.Training, card.Metrics)
	}
	// A crash of the child: refused with the child's own words.
	e.addImages(t, schemas.SplitTrain, 1, 900, "normal") // a new training set, so it trains again
	t.Setenv("EYEFLOW_TORCH_FAULT", "crash")
	out, err = tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "torch crash"})
	if err != nil {
		t.Fatal(err)
	}
	if out.Event.Kind != schemas.ModelRefused || !strings.Contains(out.Event.Reason, "crashed") {
		t.Errorf("event %+v, want refused because the child crashed", out.Event)
	}
	if entries, _ := e.registry.List(e.ctx); len(entries) != 1 {
		t.Errorf("registry holds %d versions after the crash, want 1", len(entries))
	}
}

// TestSignoffStopsBeforeProd: with automatic promotion off, a candidate
// that qualifies stops in canary with an awaiting_signoff event, once, and
// goes to prod only when a person promotes it with a reason.
func TestSignoffStopsBeforeProd(t *testing.T) {
	e := newEnv(t)
	if _, err := models.EnsureDefault(e.ctx, e.registry, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	e.dataset(t, 6)
	tr := e.trainer(t, func(c *trainer.Config) { c.Bootstrap, c.AutoPromote = false, false })
	out, err := tr.Run(e.ctx, trainer.Request{Trigger: trainer.TriggerCommand, Reason: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	v1 := out.Event.Version
	for range 5 {
		if err := tr.Step(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if a := e.assigned(t, schemas.EnvCanary); a.Version != v1 {
		t.Fatalf("canary serves %s, want %s", a, v1)
	}
	if a := e.assigned(t, schemas.EnvProd); a.Name != models.SyntheticName {
		t.Fatalf("prod serves %s without a sign-off", a)
	}
	asked := 0
	for _, ev := range e.events(t) {
		if ev.Kind == schemas.ModelAwaitingSignoff && ev.Version == v1 && strings.Contains(ev.Reason, "--to prod --reason") {
			asked++
		}
	}
	if asked != 1 {
		t.Fatalf("%d awaiting_signoff events, want 1: %q", asked, kinds(e.events(t)))
	}
	if err := tr.Promote(e.ctx, trainer.DefaultModelName, v1, schemas.EnvProd, "signed off by Dr. A"); err != nil {
		t.Fatal(err)
	}
	if a := e.assigned(t, schemas.EnvProd); a.Version != v1 {
		t.Fatalf("prod serves %s after the sign-off", a)
	}
	evs := e.events(t)
	last := evs[len(evs)-1]
	if last.Kind != schemas.ModelPromoted || last.ToEnv != schemas.EnvProd || last.FromEnv != schemas.EnvCanary || last.Reason != "signed off by Dr. A" {
		t.Errorf("last event %+v, want the signed-off promotion", last)
	}
}
