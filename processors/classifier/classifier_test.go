package classifier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/demodata"
	"eyeflow/inference"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/internal/tinytest"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/onnx"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

type rig struct {
	nats    *testenv.NATSEnv
	store   objstore.Store
	reg     *models.Registry
	metrics *Metrics
	c       *Classifier
	cancel  context.CancelFunc
	done    chan struct{}
}

// newRig starts embedded NATS, a JetStream object store and a registry.
func newRig(t *testing.T) *rig {
	t.Helper()
	initORT(t)
	n := testenv.NATS(t, testenv.TopologyOptions())
	store := objstore.NewJetStream(n.JS)
	ctx := testenv.Context(t, time.Minute)
	reg, err := models.OpenRegistry(ctx, store, stagetest.Bucket(t, n.JS, models.KVModels))
	if err != nil {
		t.Fatal(err)
	}
	return &rig{nats: n, store: store, reg: reg}
}

func (r *rig) push(t *testing.T, f models.ModelFiles, name, version string) {
	t.Helper()
	if _, err := r.reg.Push(context.Background(), f, name, version); err != nil {
		t.Fatalf("push %s %s: %v", name, version, err)
	}
}

func (r *rig) promote(t *testing.T, env, name, version string) {
	t.Helper()
	if err := r.reg.Promote(context.Background(), env, name, version); err != nil {
		t.Fatalf("promote: %v", err)
	}
}

// start runs a classifier until the test ends.
func (r *rig) start(t *testing.T, cfg Config) {
	t.Helper()
	reg := prometheus.NewRegistry()
	r.metrics = NewMetrics(reg)
	cfg.Metrics = r.metrics
	cfg.StageMetrics = stage.NewMetrics(reg)
	cfg.Logger = zerolog.Nop()
	cfg.RetryBase = 50 * time.Millisecond
	if cfg.Session.IntraOpThreads == 0 {
		cfg.Session.IntraOpThreads = 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(r.reg, r.store, stage.RunnerOf[schemas.Split](r.nats.JS), cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.c, r.cancel, r.done = c, cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		if err := c.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	for _, env := range cfg.Envs {
		select {
		case <-c.Ready(env):
		case <-time.After(30 * time.Second):
			t.Fatalf("env %s never served a model", env)
		}
	}
}

// colourSplit is a split event of a solid-colour image, inline pixels.
func colourSplit(i int, col [3]byte, split string) schemas.Split {
	label := demodata.Classes()[i%15]
	s := schemas.Split{Schema: schemas.SchemaSplit, Split: split, SplitKey: "content", SplitFunc: "test", SaltVersion: "1"}
	s.Resized = schemas.Resized{
		Schema: schemas.SchemaResized, ImageID: fmt.Sprintf("img-%04d", i), UploadID: fmt.Sprintf("raw/%s/%d.jpg@1", label, i),
		Source: schemas.ObjectRef{Bucket: "raw", Key: fmt.Sprintf("%s/%d.jpg", label, i)}, Label: label,
		RGB: tinytest.Solid(col[0], col[1], col[2]), ResizedWidth: 224, ResizedHeight: 224, Time: time.Now().UTC(),
	}
	return s
}

func publishSplit(t *testing.T, js jetstream.JetStream, s schemas.Split) {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), schemas.SplitSubject(s.Split), data, jetstream.WithMsgID("split:"+s.ImageID)); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func predictions(t *testing.T, js jetstream.JetStream, env string) []schemas.Prediction {
	t.Helper()
	var out []schemas.Prediction
	for _, m := range testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.PredictionSubject(env)) {
		p, err := schemas.DecodePrediction(m.Data())
		if err != nil {
			t.Fatalf("decode prediction: %v", err)
		}
		out = append(out, p)
	}
	return out
}

func waitIdle(t *testing.T, js jetstream.JetStream, envs ...string) {
	t.Helper()
	for _, env := range envs {
		testenv.WaitConsumerIdle(t, js, bus.StreamSplits, bus.ClassifierConsumer(env))
	}
}

// TestTinyEndToEnd: exact classes and confidences through embedded NATS, for
// prod (everything), canary (its hash share only) and staging (everything),
// with true labels on holdout images only, and pixels read either inline or
// from the processed PNG in the object store.
func TestTinyEndToEnd(t *testing.T) {
	r := newRig(t)
	r.push(t, tinytest.Model(t, "v1"), models.TinyName, "v1")
	for _, env := range schemas.Envs() {
		r.promote(t, env, models.TinyName, "v1")
	}
	const share = 0.5
	r.start(t, Config{MaxBatch: 4, CanaryShare: share})

	ctx := context.Background()
	if err := r.store.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
		t.Fatal(err)
	}
	colours := tinytest.Colours()
	var sent []schemas.Split
	for i := range 40 {
		split := schemas.SplitHoldout1
		if i%3 == 0 {
			split = schemas.SplitTrain
		}
		s := colourSplit(i, colours[i%len(colours)], split)
		if i%4 == 1 {
			// Pixels from the object store instead of the event.
			key := "p/" + s.ImageID + ".png"
			var buf bytes.Buffer
			if err := png.Encode(&buf, solidImage(224, 224, colours[i%len(colours)])); err != nil {
				t.Fatal(err)
			}
			if _, err := r.store.Put(ctx, objstore.BucketProcessed, key, bytes.NewReader(buf.Bytes()), int64(buf.Len()), objstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			s.RGB = nil
			s.Processed = schemas.ObjectRef{Bucket: objstore.BucketProcessed, Key: key}
		}
		sent = append(sent, s)
		publishSplit(t, r.nats.JS, s)
	}
	waitIdle(t, r.nats.JS, schemas.Envs()...)

	var low, high int
	for _, env := range schemas.Envs() {
		got := map[string]schemas.Prediction{}
		for _, p := range predictions(t, r.nats.JS, env) {
			if _, dup := got[p.ImageID]; dup {
				t.Errorf("%s: two predictions for %s", env, p.ImageID)
			}
			got[p.ImageID] = p
		}
		want := 0
		for i, s := range sent {
			in := env != schemas.EnvCanary || InCanary(s.ImageID, share)
			p, ok := got[s.ImageID]
			if ok != in {
				t.Errorf("%s: %s predicted=%v, want %v", env, s.ImageID, ok, in)
				continue
			}
			if !in {
				continue
			}
			want++
			exp := tinytest.Expect(colours[i%len(colours)])
			k := tinytest.Argmax(exp)
			if p.PredictedClass != demodata.Classes()[k] || math.Abs(p.Confidence-exp[k]) > 2e-4 {
				t.Errorf("%s %s: %s %.5f, want %s %.5f", env, s.ImageID, p.PredictedClass, p.Confidence, demodata.Classes()[k], exp[k])
			}
			if p.Confidence < 0.5 {
				low++
			} else {
				high++
			}
			if p.Env != env || p.ModelName != models.TinyName || p.ModelVersion != "v1" || p.Provider != inference.ProviderCPU || p.Schema != schemas.SchemaPrediction {
				t.Errorf("%s: provenance %+v", env, p)
			}
			if p.BatchSize < 1 || p.BatchSize > 4 || p.InferenceSeconds <= 0 || len(p.TopK) != 5 || p.TopK[0].Class != p.PredictedClass {
				t.Errorf("%s: batch %d, %vs, top-k %v", env, p.BatchSize, p.InferenceSeconds, p.TopK)
			}
			if wantLabel := s.Label; p.TrueLabel != wantLabel || p.Split != s.Split || p.Source != s.Source {
				t.Errorf("%s %s (%s): true label %q, split %q", env, s.ImageID, s.Split, p.TrueLabel, p.Split)
			}
		}
		if len(got) != want {
			t.Errorf("%s: %d predictions, want %d", env, len(got), want)
		}
		if n := testutil.ToFloat64(r.metrics.predictions.WithLabelValues(env, "v1")); int(n) != want {
			t.Errorf("%s: predictions_total %v, want %d", env, n, want)
		}
		if env == schemas.EnvCanary && (want == 0 || want == len(sent)) {
			t.Errorf("canary share %.1f took %d of %d images", share, want, len(sent))
		}
	}
	if low == 0 || high == 0 {
		t.Errorf("want confidences on both sides of 0.5 (low %d, high %d)", low, high)
	}
	if v := testutil.ToFloat64(r.metrics.info.WithLabelValues(schemas.EnvProd, models.TinyName, "v1", inference.ProviderCPU, "", "", "", "")); v != 1 {
		t.Errorf("eyeflow_classifier_info = %v", v)
	}
}

func solidImage(w, h int, c [3]byte) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{c[0], c[1], c[2], 255})
		}
	}
	return img
}

// TestHotSwapUnderLoad promotes v2 while images stream in: every image gets
// exactly one prediction, from v1 or v2, none twice, and both versions serve.
// Then a refused model (output width 15, labels 14) leaves v2 serving.
func TestHotSwapUnderLoad(t *testing.T) {
	r := newRig(t)
	r.push(t, tinytest.Model(t, "v1"), models.TinyName, "v1")
	r.push(t, tinytest.Model(t, "v2"), models.TinyName, "v2")
	r.promote(t, schemas.EnvProd, models.TinyName, "v1")
	r.start(t, Config{Envs: []string{schemas.EnvProd}, MaxBatch: 8, MaxWait: 2 * time.Millisecond})

	const total = 600
	colours := tinytest.Colours()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range total {
			publishSplit(t, r.nats.JS, colourSplit(i, colours[i%len(colours)], schemas.SplitHoldout2))
			if i == total/3 {
				r.promote(t, schemas.EnvProd, models.TinyName, "v2")
			}
			if i%50 == 0 {
				time.Sleep(5 * time.Millisecond) // let batches interleave with the swap
			}
		}
	})
	wg.Wait()
	waitIdle(t, r.nats.JS, schemas.EnvProd)

	byVersion := map[string]int{}
	seen := map[string]bool{}
	for _, p := range predictions(t, r.nats.JS, schemas.EnvProd) {
		if seen[p.ImageID] {
			t.Errorf("duplicate prediction for %s", p.ImageID)
		}
		seen[p.ImageID] = true
		byVersion[p.ModelVersion]++
	}
	if len(seen) != total {
		t.Fatalf("%d images predicted, want %d", len(seen), total)
	}
	if byVersion["v1"] == 0 || byVersion["v2"] == 0 {
		t.Errorf("versions %v: want both v1 and v2 to have served", byVersion)
	}
	// Each image was processed exactly once: no redelivery republished (the
	// stream would drop it by Msg-Id, but the counter would show it).
	n := testutil.ToFloat64(r.metrics.predictions.WithLabelValues(schemas.EnvProd, "v1")) +
		testutil.ToFloat64(r.metrics.predictions.WithLabelValues(schemas.EnvProd, "v2"))
	if int(n) != total {
		t.Errorf("predictions_total %v, want %d", n, total)
	}
	t.Logf("served: %v", byVersion)

	// A refused model: the graph outputs 15 classes, labels.json lists 14.
	bad := tinytest.Model(t, "v3")
	var labels []string
	_ = json.Unmarshal(bad.Labels, &labels)
	bad.Labels, _ = json.Marshal(labels[:14])
	var card models.Card
	_ = json.Unmarshal(bad.Card, &card)
	card.Labels = 14
	bad.Card, _ = json.Marshal(card)
	r.push(t, bad, models.TinyName, "v3")
	r.promote(t, schemas.EnvProd, models.TinyName, "v3")
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(r.metrics.loads.WithLabelValues(schemas.EnvProd, "refused")) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("v3 was neither loaded nor refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, _ := r.c.Serving(schemas.EnvProd); a.Version != "v2" {
		t.Fatalf("serving %v after a refused model, want v2", a)
	}
	publishSplit(t, r.nats.JS, colourSplit(total, colours[0], schemas.SplitHoldout2))
	waitIdle(t, r.nats.JS, schemas.EnvProd)
	ps := predictions(t, r.nats.JS, schemas.EnvProd)
	if last := ps[len(ps)-1]; len(ps) != total+1 || last.ModelVersion != "v2" {
		t.Fatalf("after refusal: %d predictions, last by %s, want %d and v2", len(ps), last.ModelVersion, total+1)
	}
}

// TestLyingCardLeavesOldModelServing promotes a model whose card calls a
// logits graph "probabilities": the classifier refuses it at load (the probe
// check), v1 keeps serving, and no published prediction carries a negative
// probability or a confidence above 1.
func TestLyingCardLeavesOldModelServing(t *testing.T) {
	r := newRig(t)
	r.push(t, tinytest.Model(t, "v1"), models.TinyName, "v1")
	r.promote(t, schemas.EnvProd, models.TinyName, "v1")
	r.start(t, Config{Envs: []string{schemas.EnvProd}, MaxBatch: 4})

	lying := tinytest.Model(t, "v2")
	lying.ONNX = onnx.Tiny(15, false) // logits
	var card models.Card
	if err := json.Unmarshal(lying.Card, &card); err != nil {
		t.Fatal(err)
	}
	card.Output.Kind = models.OutputProbabilities
	lying.Card, _ = json.Marshal(card)
	r.push(t, lying, models.TinyName, "v2")
	r.promote(t, schemas.EnvProd, models.TinyName, "v2")
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(r.metrics.loads.WithLabelValues(schemas.EnvProd, "refused")) < 1 {
		if a, _ := r.c.Serving(schemas.EnvProd); a.Version == "v2" {
			t.Errorf("the lying card was loaded and serves")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("v2 was neither loaded nor refused")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a, _ := r.c.Serving(schemas.EnvProd); a.Version != "v1" {
		t.Errorf("serving %v after a lying card, want v1", a)
	}
	colours := tinytest.Colours()
	for i, c := range colours {
		publishSplit(t, r.nats.JS, colourSplit(i, c, schemas.SplitHoldout1))
	}
	waitIdle(t, r.nats.JS, schemas.EnvProd)
	ps := predictions(t, r.nats.JS, schemas.EnvProd)
	if len(ps) != len(colours) {
		t.Fatalf("%d predictions, want %d", len(ps), len(colours))
	}
	for _, p := range ps {
		if p.ModelVersion != "v1" || p.Confidence < 0 || p.Confidence > 1 {
			t.Errorf("%s: %s confidence %v, want v1 within [0, 1]", p.ImageID, p.ModelVersion, p.Confidence)
		}
		for _, cp := range p.TopK {
			if cp.Probability < 0 || cp.Probability > 1 {
				t.Errorf("%s: %s probability %v", p.ImageID, cp.Class, cp.Probability)
			}
		}
	}
}

func TestPredictHTTP(t *testing.T) {
	r := newRig(t)
	r.push(t, tinytest.Model(t, "v1"), models.TinyName, "v1")
	r.promote(t, schemas.EnvProd, models.TinyName, "v1")
	r.start(t, Config{Envs: []string{schemas.EnvProd}, MaxBatch: 8})
	srv := httptest.NewServer(r.c.PredictHandler(schemas.EnvProd, 1<<20))
	defer srv.Close()

	pngOf := func(w, h int, c [3]byte) []byte {
		var buf bytes.Buffer
		_ = png.Encode(&buf, solidImage(w, h, c))
		return buf.Bytes()
	}
	multi := func(field string, data []byte) (string, []byte) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile(field, "x.png")
		fw.Write(data)
		mw.Close()
		return mw.FormDataContentType(), body.Bytes()
	}
	post := func(ct string, body []byte) (int, map[string]any) {
		resp, err := http.Post(srv.URL, ct, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}

	// Good input, both ways, concurrently (merged into shared batches).
	colours := tinytest.Colours()
	var wg sync.WaitGroup
	for i, c := range colours {
		wg.Go(func() {
			ct, body := "image/png", pngOf(300+i, 200, c)
			if i%2 == 0 {
				ct, body = multi("file", body)
			}
			code, out := post(ct, body)
			exp := tinytest.Expect(c)
			k := tinytest.Argmax(exp)
			if code != 200 || out["predicted_class"] != demodata.Classes()[k] || math.Abs(out["confidence"].(float64)-exp[k]) > 2e-4 || out["model_version"] != "v1" || out["provider"] != inference.ProviderCPU {
				t.Errorf("colour %v: %d %v, want %s %.4f", c, code, out, demodata.Classes()[k], exp[k])
			}
		})
	}
	wg.Wait()

	truncated := pngOf(50, 50, colours[0])
	truncated = truncated[:len(truncated)/2]
	ctMissing, bodyMissing := multi("image", pngOf(10, 10, colours[0]))
	for _, tc := range []struct {
		name string
		ct   string
		body []byte
		want int
	}{
		{"not an image", "application/octet-stream", []byte("hello, this is not an image"), http.StatusUnsupportedMediaType},
		{"truncated png", "image/png", truncated, http.StatusUnprocessableEntity},
		{"empty", "image/png", nil, http.StatusBadRequest},
		{"no file field", ctMissing, bodyMissing, http.StatusBadRequest},
		{"too large", "image/png", make([]byte, 2<<20), http.StatusRequestEntityTooLarge},
	} {
		code, out := post(tc.ct, tc.body)
		if code != tc.want || out["error"] == nil {
			t.Errorf("%s: %d %v, want %d with an error message", tc.name, code, out, tc.want)
		}
	}
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if n := testutil.ToFloat64(r.metrics.errors.WithLabelValues(schemas.EnvProd, "v1")); n != 5 {
		t.Errorf("prediction_errors_total %v, want 5", n)
	}
}

// meanBatch is eyeflow_classifier_batch_size's sum over its count for env:
// images per session run.
func meanBatch(t *testing.T, m *Metrics, env, version string) (mean float64, runs uint64) {
	t.Helper()
	var pb dto.Metric
	h, ok := m.batchSize.WithLabelValues(env, version).(prometheus.Histogram)
	if !ok {
		t.Fatal("batch size is not a histogram")
	}
	if err := h.Write(&pb); err != nil {
		t.Fatal(err)
	}
	c := pb.GetHistogram().GetSampleCount()
	if c == 0 {
		return 0, 0
	}
	return pb.GetHistogram().GetSampleSum() / float64(c), c
}

// TestBatchesFillUnderLoad: with 500 images queued and a large max batch
// (64, a GPU's default), the classifier's session runs are full: the mean
// run is at least 0.8 of the max batch. The CPU provider stands in for the
// GPU, with the stage's defaults otherwise; the images are referenced (the
// processed PNG in the object store), as resize publishes them by default.
// (With 200 KB inline-pixel events the batches fill too, 62.5 images per
// run, but not under the race detector, whose slower delivery runs past
// the test topology's 2 s AckWait: BENCHMARKS.md, "Batches a GPU can use".)
func TestBatchesFillUnderLoad(t *testing.T) {
	for _, inline := range []bool{false} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			const n, maxBatch = 500, 64
			r := newRig(t)
			r.push(t, tinytest.Model(t, "v1"), models.TinyName, "v1")
			r.promote(t, schemas.EnvProd, models.TinyName, "v1")
			ctx := context.Background()
			if err := r.store.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
				t.Fatal(err)
			}
			colours := tinytest.Colours()
			var pngs [][]byte
			for _, c := range colours {
				var buf bytes.Buffer
				if err := png.Encode(&buf, solidImage(224, 224, c)); err != nil {
					t.Fatal(err)
				}
				pngs = append(pngs, buf.Bytes())
			}
			for i := range n {
				s := colourSplit(i, colours[i%len(colours)], schemas.SplitTrain)
				if !inline {
					key := "p/" + s.ImageID + ".png"
					b := pngs[i%len(pngs)]
					if _, err := r.store.Put(ctx, objstore.BucketProcessed, key, bytes.NewReader(b), int64(len(b)), objstore.PutOptions{}); err != nil {
						t.Fatal(err)
					}
					s.RGB = nil
					s.Processed = schemas.ObjectRef{Bucket: objstore.BucketProcessed, Key: key}
				}
				publishSplit(t, r.nats.JS, s)
			}
			r.start(t, Config{Envs: []string{schemas.EnvProd}, MaxBatch: maxBatch})
			waitIdle(t, r.nats.JS, schemas.EnvProd)
			if got := len(predictions(t, r.nats.JS, schemas.EnvProd)); got != n {
				t.Fatalf("%d predictions, want %d", got, n)
			}
			mean, runs := meanBatch(t, r.metrics, schemas.EnvProd, "v1")
			t.Logf("%d images in %d runs: mean batch %.1f of %d", n, runs, mean, maxBatch)
			if mean < 0.8*maxBatch {
				t.Errorf("mean batch %.1f of %d (%d runs for %d images): want at least %.1f", mean, maxBatch, runs, n, 0.8*maxBatch)
			}
		})
	}
}
