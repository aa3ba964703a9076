package e2e_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"sync"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/demodata"
	"eyeflow/inference"
	"eyeflow/ingest"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/models"
	"eyeflow/objstore"
	catalogue "eyeflow/pipeline"
	"eyeflow/processors/classifier"
	"eyeflow/processors/resize"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

const canaryShare = 0.5

// upload is one image put into the raw bucket.
type upload struct {
	key     string
	data    []byte
	imageID string
}

// makeUploads builds n small, distinct, labelled JPEGs.
func makeUploads(t testing.TB, n int) []upload {
	t.Helper()
	classes := demodata.Classes()
	out := make([]upload, n)
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, 32, 24))
		for p := 0; p < 32*24; p++ {
			img.Set(p%32, p/32, color.RGBA{byte(i), byte(i >> 8), byte(p), 255})
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b.Bytes())
		out[i] = upload{key: fmt.Sprintf("%s/img-%05d.jpg", classes[i%len(classes)], i), data: b.Bytes(), imageID: hex.EncodeToString(sum[:])}
	}
	return out
}

func putUploads(t testing.TB, store objstore.Store, ups []upload) {
	t.Helper()
	if err := putAll(store, ups); err != nil {
		t.Fatal(err)
	}
}

// putAll uploads like a producer would: a put that fails (a node just died)
// is retried, since the producer did not get its acknowledgement.
func putAll(store objstore.Store, ups []upload) error {
	for _, u := range ups {
		var err error
		for attempt := 0; attempt < 20; attempt++ {
			// A bounded wait per attempt: a request lost with a node is
			// retried, not waited on until a distant deadline.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, err = store.Put(ctx, objstore.BucketRaw, u.key, bytes.NewReader(u.data), int64(len(u.data)), objstore.PutOptions{ContentType: "image/jpeg"})
			cancel()
			if err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("put %s: %w", u.key, err)
		}
	}
	return nil
}

// expected is how many predictions each env owes: prod and staging classify
// every image, canary its deterministic share.
func expected(ups []upload) map[string]int {
	want := map[string]int{schemas.EnvProd: len(ups), schemas.EnvStaging: len(ups)}
	for _, u := range ups {
		if classifier.InCanary(u.imageID, canaryShare) {
			want[schemas.EnvCanary]++
		}
	}
	return want
}

// setup applies the topology, creates the buckets and registers the tiny
// model in every env, on the embedded object store.
func setup(t testing.TB, url string, replicas int) objstore.Store {
	t.Helper()
	_, js := testenv.Connect(t, url)
	store := objstore.NewJetStream(js, objstore.WithReplicas(replicas))
	setupWith(t, js, store, replicas, nil)
	return store
}

// setupWith is setup on any store, with topology options changed by mutate.
func setupWith(t testing.TB, js jetstream.JetStream, store objstore.Store, replicas int, mutate func(*bus.Options)) {
	t.Helper()
	ctx := testenv.Context(t, 2*time.Minute)
	o := testenv.TopologyOptions()
	o.Replicas = replicas
	o.AckWait = 5 * time.Second
	o.MaxDeliver = 20 // as in production: outages cost deliveries, bad input is dead-lettered at once
	if mutate != nil {
		mutate(&o)
	}
	if err := bus.Apply(ctx, js, catalogue.Topology(o)); err != nil {
		t.Fatal(err)
	}
	for _, b := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := inference.InitRuntime(testenv.ORTLibrary(t)); err != nil {
		t.Fatal(err)
	}
	files, err := models.Synthesize(models.SynthOptions{Arch: models.ArchTiny})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := models.OpenRegistry(ctx, store, stagetest.Bucket(t, js, bus.KVModels))
	if err != nil {
		t.Fatal(err)
	}
	card, err := reg.Push(ctx, files, models.TinyName, models.TinyVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range schemas.Envs() {
		if err := reg.Promote(ctx, env, card.Name, card.Version); err != nil {
			t.Fatal(err)
		}
	}
}

// pipeline is one instance of every stage on its own NATS connection, as a
// separate process would be.
type pipeline struct {
	nc      *nats.Conn
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	cls     *classifier.Classifier
	metrics *prometheus.Registry
}

func startPipeline(t testing.TB, url string, replicas int) *pipeline {
	t.Helper()
	return startPipelineOn(t, url, func(js jetstream.JetStream) objstore.Store {
		return objstore.NewJetStream(js, objstore.WithReplicas(replicas))
	})
}

// startPipelineOn runs the stages with the object store newStore makes; the
// embedded watcher runs only on the JetStream store (S3 stores notify).
func startPipelineOn(t testing.TB, url string, newStore func(jetstream.JetStream) objstore.Store) *pipeline {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reg := prometheus.NewRegistry()
	p := &pipeline{nc: nc, cancel: cancel, metrics: reg}
	t.Cleanup(p.kill)
	log := testLogger(t)
	m := stage.NewMetrics(reg)
	store := newStore(js)

	ledger := ingest.NewLedger(stagetest.Bucket(t, js, bus.KVUploads), stage.StreamReaderOf(js))
	rcfg := resize.DefaultConfig()
	rcfg.Store = store
	scfg := splitter.DefaultConfig()
	scfg.Patients = stagetest.Patients(t, scfg.Salt)
	rcfg.Patients = scfg.Patients
	rz, err := resize.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := splitter.New(scfg, store)
	if err != nil {
		t.Fatal(err)
	}
	models, err := models.OpenRegistry(ctx, store, stagetest.Bucket(t, js, bus.KVModels))
	if err != nil {
		t.Fatal(err)
	}
	cls, err := classifier.New(models, store, stage.RunnerOf[schemas.Split](js), classifier.Config{
		Envs: schemas.Envs(), CanaryShare: canaryShare, Logger: log,
		Metrics: classifier.NewMetrics(reg), StageMetrics: m,
		Session:   inference.SessionOptions{IntraOpThreads: 1},
		RetryBase: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	fast := func(p stage.Processor[schemas.S3Event]) stage.Processor[schemas.S3Event] {
		p.RetryBase = 100 * time.Millisecond
		return p
	}
	run := func(f func(context.Context) error) {
		p.wg.Go(func() { _ = f(ctx) })
	}
	if w, ok := store.(*objstore.JetStreamStore); ok {
		run(func(ctx context.Context) error {
			return ingest.WatchJetStream(ctx, w, objstore.BucketRaw, ingest.NewPublisher(stage.PublisherOf(js), ledger), log)
		})
	}
	run(func(ctx context.Context) error {
		return stage.Run(ctx, js, fast(ingest.LedgerProcessor(ledger, log, m)))
	})
	run(func(ctx context.Context) error { return stage.Run(ctx, js, fast(resize.Processor(rz, 2, log, m))) })
	run(func(ctx context.Context) error {
		sproc := splitter.Processor(sp, log, m)
		sproc.RetryBase = 100 * time.Millisecond
		return stage.Run(ctx, js, sproc)
	})
	run(cls.Run)
	p.cls = cls
	return p
}

// kill ends the instance without a graceful shutdown: its connection is
// gone at once, so whatever it held unacknowledged is redelivered elsewhere.
func (p *pipeline) kill() {
	p.nc.Close()
	p.cancel()
	p.wg.Wait()
}

// counts reads every prediction per env and reports duplicates.
func counts(t testing.TB, js jetstream.JetStream) (map[string]int, []string) {
	t.Helper()
	got := map[string]int{}
	seen := map[string]bool{}
	var dups []string
	for _, env := range schemas.Envs() {
		for _, m := range testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.PredictionSubject(env)) {
			p, err := schemas.DecodePrediction(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			k := env + "/" + p.ImageID
			if seen[k] {
				dups = append(dups, k)
			}
			seen[k] = true
			got[env]++
		}
	}
	return got, dups
}

// waitPredictions waits until every env has its predictions (or the time
// is up), then checks exactly-once and an empty dead-letter stream.
func waitPredictions(t testing.TB, js jetstream.JetStream, want map[string]int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := predictedSoFar(t, js)
		done := true
		for env, n := range want {
			if got[env] < uint64(n) {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second) // anything still in flight would show as a duplicate
	got, dups := counts(t, js)
	for env, n := range want {
		if got[env] != n {
			t.Errorf("env %s: %d predictions for %d images", env, got[env], n)
		}
	}
	if len(dups) > 0 {
		t.Errorf("%d duplicate predictions, e.g. %s", len(dups), dups[0])
	}
	if dl := testenv.StreamMessages(t, js, bus.StreamDLQ, schemas.SubjectDLQAll); len(dl) > 0 {
		t.Errorf("%d dead letters for good input, first: %s", len(dl), dl[0].Data())
	}
}

// predictedSoFar counts stored predictions per env cheaply (stream state).
func predictedSoFar(t testing.TB, js jetstream.JetStream) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.StreamPredictions)
	if err != nil {
		return nil // a node may be down: try again
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(schemas.SubjectPredictionsAll))
	if err != nil {
		return nil
	}
	out := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		for _, env := range schemas.Envs() {
			if subj == schemas.PredictionSubject(env) {
				out[env] = n
			}
		}
	}
	return out
}

// testLogger writes the pipeline's warnings and errors to $EYEFLOW_E2E_LOG
// when set (for diagnosing a failure), else nowhere.
func testLogger(t testing.TB) zerolog.Logger {
	t.Helper()
	path := os.Getenv("EYEFLOW_E2E_LOG")
	if path == "" {
		return zerolog.Nop()
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return zerolog.New(f).Level(zerolog.WarnLevel).With().Timestamp().Logger()
}
