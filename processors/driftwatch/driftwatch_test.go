package driftwatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/processors/driftwatch"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// newEnv is embedded NATS with the topology, whose driftwatch consumer has
// one message in flight.
func newEnv(t *testing.T) *testenv.NATSEnv {
	t.Helper()
	env := testenv.NATS(t, testenv.TopologyOptions())
	c, err := env.JS.Consumer(testenv.Context(t, 10*time.Second), bus.StreamPredictions, bus.ConsumerDriftwatch)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.MaxAckPending; got != 1 {
		t.Fatalf("driftwatch consumer MaxAckPending %d, want 1 (the catalogue's one-at-a-time rule)", got)
	}
	return env
}

type running struct {
	w       *driftwatch.Watcher
	metrics *driftwatch.Metrics
	stop    func()
}

// startWatcher runs a fresh Watcher (as a new process would) until stop or
// the end of the test. wrap, when set, decorates its handler.
func startWatcher(t *testing.T, js jetstream.JetStream, cfg driftwatch.Config, wrap func(stage.Handler[schemas.Prediction]) stage.Handler[schemas.Prediction]) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := driftwatch.NewMetrics(reg)
	w, err := driftwatch.New(testenv.Context(t, 10*time.Second), stagetest.Bucket(t, js, driftwatch.KVBucket), cfg, m)
	if err != nil {
		t.Fatal(err)
	}
	p := driftwatch.Processor(w, zerolog.Nop(), stage.NewMetrics(reg))
	p.RetryBase = 20 * time.Millisecond
	if wrap != nil {
		p.Handle = wrap(p.Handle)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stage.Run(ctx, js, p) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &running{w: w, metrics: m, stop: stop}
}

func prediction(i int, conf float64) schemas.Prediction {
	return schemas.Prediction{
		Schema: schemas.SchemaPrediction, ImageID: fmt.Sprintf("img-%03d", i), UploadID: fmt.Sprintf("raw/x/%03d.jpg@e", i),
		Source: schemas.ObjectRef{Bucket: "raw", Key: fmt.Sprintf("unlabeled/img-%03d.jpg", i)},
		Split:  schemas.SplitUnlabeled, Env: schemas.EnvProd, ModelName: "tiny", ModelVersion: "v1", Provider: "test",
		PredictedClass: "glaucoma", Confidence: conf,
		TopK: []schemas.ClassProb{{Class: "glaucoma", Probability: conf}, {Class: "normal", Probability: 1 - conf}},
		Time: time.Date(2025, 3, 1, 12, 0, i, 0, time.UTC),
	}
}

// publish sends predictions as the classifier does: JSON with a Msg-Id.
func publish(t *testing.T, js jetstream.JetStream, ps ...schemas.Prediction) {
	t.Helper()
	for _, p := range ps {
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: schemas.PredictionSubject(p.Env), Data: data}
		if _, err := js.PublishMsg(testenv.Context(t, 10*time.Second), msg, jetstream.WithMsgID("classifier:"+p.Env+":"+p.ImageID)); err != nil {
			t.Fatal(err)
		}
	}
}

// lowHigh turns a confidence pattern into predictions numbered from first.
func lowHigh(first int, confs ...float64) []schemas.Prediction {
	out := make([]schemas.Prediction, len(confs))
	for i, c := range confs {
		out[i] = prediction(first+i, c)
	}
	return out
}

func runs(spec ...int) []float64 {
	// spec alternates: n high, n low, n high, ...
	var out []float64
	for i, n := range spec {
		for range n {
			out = append(out, map[bool]float64{true: 0.9, false: 0.3}[i%2 == 0])
		}
	}
	return out
}

func alerts(t *testing.T, js jetstream.JetStream) []schemas.DriftAlert {
	t.Helper()
	var out []schemas.DriftAlert
	for _, m := range testenv.StreamMessages(t, js, bus.StreamDrift, schemas.SubjectDriftAll) {
		a, err := schemas.DecodeDriftAlert(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func retrains(t *testing.T, js jetstream.JetStream) []schemas.Retrain {
	t.Helper()
	var out []schemas.Retrain
	for _, m := range testenv.StreamMessages(t, js, bus.StreamRetrain, schemas.SubjectRetrain) {
		r, err := schemas.DecodeRetrain(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// idle waits until the driftwatch consumer has settled everything stored in
// the predictions stream. It compares the ack floor with the stream's last
// sequence because right after a publish the consumer's pending count can
// still read 0 (testenv.WaitConsumerIdle alone then returns too early).
func idle(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := testenv.Context(t, 60*time.Second)
	s, err := js.Stream(ctx, bus.StreamPredictions)
	if err != nil {
		t.Fatal(err)
	}
	last := s.CachedInfo().State.LastSeq
	for {
		c, err := js.Consumer(ctx, bus.StreamPredictions, bus.ConsumerDriftwatch)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.AckFloor.Stream >= last && info.NumAckPending == 0 && info.NumRedelivered == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("driftwatch did not settle sequence %d: %+v", last, info)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func ids(from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("img-%03d", from+i)
	}
	return out
}

// TestStreakRule reads the issue's "dip below 0.5 for exactly 4, then 5,
// then 7 in a row" case by case: 4 stays quiet, 5 and 7 each give exactly
// one firing (at the 5th) and one resolved (at the first confident
// prediction), never a flood; and all three dips in one stream give one pair
// per qualifying dip, none for the 4.
func TestStreakRule(t *testing.T) {
	tests := []struct {
		name string
		runs []int // alternating high, low, high, ... run lengths
		// wantFirings are the image ids of each firing alert.
		wantFirings [][]string
	}{
		{"dip of 4", []int{2, 4, 2}, nil},
		{"dip of 5", []int{2, 5, 2}, [][]string{ids(2, 5)}},
		{"dip of 7", []int{2, 7, 2}, [][]string{ids(2, 5)}},
		{"4 then 5 then 7", []int{2, 4, 1, 5, 1, 7, 1}, [][]string{ids(7, 5), ids(13, 5)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newEnv(t)
			r := startWatcher(t, env.JS, driftwatch.DefaultConfig(), nil)
			publish(t, env.JS, lowHigh(0, runs(tt.runs...)...)...)
			idle(t, env.JS)
			as := alerts(t, env.JS)
			if len(as) != 2*len(tt.wantFirings) {
				t.Fatalf("%d alerts %+v, want a firing and a resolved for each of %d dips", len(as), as, len(tt.wantFirings))
			}
			for i, want := range tt.wantFirings {
				f, res := as[2*i], as[2*i+1]
				if f.State != driftwatch.StateFiring || res.State != driftwatch.StateResolved || f.AlertID != res.AlertID ||
					f.Signal != driftwatch.SignalLowConfidence || f.Env != "prod" || f.ModelVersion != "v1" {
					t.Fatalf("alerts %d, %d: %+v / %+v, want firing then resolved of one alert", 2*i, 2*i+1, f, res)
				}
				if !slices.Equal(f.ImageIDs, want) || len(f.Confidences) != 5 || f.Confidences[0] >= 0.5 ||
					!f.From.Equal(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(idNum(want[0]))*time.Second)) ||
					f.To.Sub(f.From) != 4*time.Second {
					t.Fatalf("firing %+v: want images %v, their confidences and the span of the 5", f, want)
				}
			}
			rs := retrains(t, env.JS)
			if len(rs) != len(tt.wantFirings) {
				t.Fatalf("%d retrain requests, want one per firing", len(rs))
			}
			for i, rq := range rs {
				if rq.Kind != schemas.RetrainRequested || rq.AlertID != as[2*i].AlertID || len(rq.Samples) != 5 || len(rq.Predictions) != 5 ||
					rq.Samples[0].Key != "unlabeled/"+tt.wantFirings[i][0]+".jpg" || rq.EventID == "" {
					t.Fatalf("retrain %+v", rq)
				}
			}
			if got := testutil.ToFloat64(r.metrics.Alert.WithLabelValues("prod", "v1")); got != 0 {
				t.Fatalf("drift_alert = %v after the last resolve, want 0", got)
			}
		})
	}
}

func idNum(id string) int {
	var n int
	fmt.Sscanf(id, "img-%d", &n)
	return n
}

// TestRestartMidStreak: a watcher stopped after the 3rd low prediction and
// replaced by a new one still fires at the 5th, and the gauge of the new
// process says so.
func TestRestartMidStreak(t *testing.T) {
	env := newEnv(t)
	cfg := driftwatch.DefaultConfig()
	first := startWatcher(t, env.JS, cfg, nil)
	publish(t, env.JS, lowHigh(0, 0.9, 0.3, 0.3, 0.3)...)
	idle(t, env.JS)
	first.stop()
	if as := alerts(t, env.JS); len(as) != 0 {
		t.Fatalf("alerts before the 5th: %+v", as)
	}
	second := startWatcher(t, env.JS, cfg, nil)
	publish(t, env.JS, lowHigh(4, 0.3)...)
	idle(t, env.JS)
	if as := alerts(t, env.JS); len(as) != 0 {
		t.Fatalf("fired at the 4th: %+v", as)
	}
	publish(t, env.JS, lowHigh(5, 0.3, 0.3)...)
	idle(t, env.JS)
	as := alerts(t, env.JS)
	if len(as) != 1 || as[0].State != driftwatch.StateFiring || !slices.Equal(as[0].ImageIDs, ids(1, 5)) {
		t.Fatalf("alerts %+v, want one firing for img-001..005", as)
	}
	if got := testutil.ToFloat64(second.metrics.Alert.WithLabelValues("prod", "v1")); got != 1 {
		t.Fatalf("drift_alert = %v while firing, want 1", got)
	}
	second.stop()
	// A third process learns the firing state from the KV at start.
	third := startWatcher(t, env.JS, cfg, nil)
	if got := testutil.ToFloat64(third.metrics.Alert.WithLabelValues("prod", "v1")); got != 1 {
		t.Fatalf("drift_alert = %v after restart, want 1 restored from the KV", got)
	}
	publish(t, env.JS, lowHigh(7, 0.95)...)
	idle(t, env.JS)
	as = alerts(t, env.JS)
	if len(as) != 2 || as[1].State != driftwatch.StateResolved || as[1].AlertID != as[0].AlertID {
		t.Fatalf("alerts %+v, want the firing then its resolve", as)
	}
}

// TestRedeliveryNotCountedTwice: the handler saves its state and then the
// delivery fails (as a crash between saving and acknowledging would), so
// the same prediction comes back. It must not lengthen the streak: five
// distinct low predictions fire, four plus redeliveries do not; and a
// redelivered firing prediction does not fire twice.
func TestRedeliveryNotCountedTwice(t *testing.T) {
	env := newEnv(t)
	failFirst := map[string]bool{"img-001": true, "img-002": true, "img-004": true, "img-005": true}
	var mu sync.Mutex
	seen := map[string]int{}
	wrap := func(h stage.Handler[schemas.Prediction]) stage.Handler[schemas.Prediction] {
		return func(ctx context.Context, p schemas.Prediction) ([]stage.Output, error) {
			outs, err := h(ctx, p)
			meta, _ := stage.MetaFrom(ctx)
			mu.Lock()
			seen[p.ImageID]++
			mu.Unlock()
			if err == nil && failFirst[p.ImageID] && meta.Deliveries == 1 {
				return nil, errors.New("simulated crash after the state was saved")
			}
			return outs, err
		}
	}
	startWatcher(t, env.JS, driftwatch.DefaultConfig(), wrap)
	publish(t, env.JS, lowHigh(0, 0.9, 0.3, 0.3, 0.3, 0.3)...)
	idle(t, env.JS)
	if as := alerts(t, env.JS); len(as) != 0 {
		t.Fatalf("4 low predictions with 3 redeliveries fired: %+v", as)
	}
	publish(t, env.JS, lowHigh(5, 0.3, 0.3, 0.9)...)
	idle(t, env.JS)
	mu.Lock()
	for id := range failFirst {
		if seen[id] != 2 {
			t.Errorf("%s handled %d times, want 2 (a redelivery)", id, seen[id])
		}
	}
	mu.Unlock()
	as := alerts(t, env.JS)
	if len(as) != 2 || as[0].State != driftwatch.StateFiring || !slices.Equal(as[0].ImageIDs, ids(1, 5)) || as[1].State != driftwatch.StateResolved {
		t.Fatalf("alerts %+v, want one firing for img-001..005 at the 5th distinct prediction, then resolved", as)
	}
	if rs := retrains(t, env.JS); len(rs) != 1 {
		t.Fatalf("%d retrain requests, want 1", len(rs))
	}
}

// TestBadPredictionDeadLettered: a prediction no rule can count goes to the
// DLQ and the stream flows on.
func TestBadPredictionDeadLettered(t *testing.T) {
	env := newEnv(t)
	startWatcher(t, env.JS, driftwatch.DefaultConfig(), nil)
	bad := prediction(0, 1.5)
	noVersion := prediction(1, 0.3)
	noVersion.ModelVersion = ""
	publish(t, env.JS, bad, noVersion)
	publish(t, env.JS, lowHigh(2, 0.3, 0.3, 0.3, 0.3, 0.3)...)
	idle(t, env.JS)
	dl := testenv.StreamMessages(t, env.JS, bus.StreamDLQ, schemas.DLQSubject(schemas.StageDriftwatch))
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dl))
	}
	for _, m := range dl {
		d, err := schemas.DecodeDeadLetter(m.Data())
		if err != nil || d.Reason != "bad_prediction" || !d.Permanent {
			t.Fatalf("dead letter %+v (%v)", d, err)
		}
	}
	if as := alerts(t, env.JS); len(as) != 1 {
		t.Fatalf("alerts %+v, want the 5 valid lows to fire", as)
	}
}

// TestNewVersionResolvesTheOldOnesAlerts: a firing streak of version v1 can
// never resolve once the env serves v2 (v1 makes no more predictions), so
// v2's first prediction resolves it, once, saying why.
func TestNewVersionResolvesTheOldOnesAlerts(t *testing.T) {
	env := newEnv(t)
	startWatcher(t, env.JS, driftwatch.DefaultConfig(), nil)
	publish(t, env.JS, lowHigh(0, runs(1, 6)...)...)
	idle(t, env.JS)
	if got := alerts(t, env.JS); len(got) != 1 || got[0].State != driftwatch.StateFiring {
		t.Fatalf("alerts %+v, want one firing", got)
	}
	next := lowHigh(10, 0.9, 0.2, 0.9)
	for i := range next {
		next[i].ModelVersion = "v2"
	}
	publish(t, env.JS, next...)
	idle(t, env.JS)
	got := alerts(t, env.JS)
	if len(got) != 2 {
		t.Fatalf("alerts %+v, want the firing one and its resolution", got)
	}
	r := got[1]
	if r.State != driftwatch.StateResolved || r.AlertID != got[0].AlertID || r.ModelVersion != "v1" || !strings.Contains(r.Detail, "now serves model version v2") {
		t.Errorf("resolution %+v", r)
	}
}

// TestWindowAlertAsksForLabels: a drifted class_chi2 window asks for its
// first images to be labelled, and a version promoted later tests against
// the training distribution its predecessor learnt, from its first window.
func TestWindowAlertAsksForLabels(t *testing.T) {
	env := newEnv(t)
	cfg := driftwatch.DefaultConfig()
	cfg.KS.Enabled = false
	cfg.Chi2.Window, cfg.Chi2.MinTrain, cfg.LabelSamples = 20, 20, 4
	startWatcher(t, env.JS, cfg, nil)
	var ps []schemas.Prediction
	classes := []string{"glaucoma", "normal", "cataract", "amd"}
	for i := range 40 { // the training split: four classes, evenly
		p := prediction(i, 0.9)
		p.Split, p.TrueLabel = schemas.SplitTrain, classes[i%4]
		ps = append(ps, p)
	}
	publish(t, env.JS, ps...)
	ps = nil
	for i := range 20 { // v2, live: every image called glaucoma
		p := prediction(100+i, 0.9)
		p.ModelVersion = "v2"
		ps = append(ps, p)
	}
	publish(t, env.JS, ps...)
	idle(t, env.JS)
	got := alerts(t, env.JS)
	if len(got) != 1 || got[0].Signal != driftwatch.SignalClassChi2 || got[0].ModelVersion != "v2" || got[0].State != driftwatch.StateFiring {
		t.Fatalf("alerts %+v, want one class_chi2 firing for v2", got)
	}
	rs := retrains(t, env.JS)
	if len(rs) != 1 || len(rs[0].Samples) != 4 || rs[0].AlertID != got[0].AlertID || rs[0].Predictions[0].ImageID != "img-100" {
		t.Fatalf("retrain requests %+v, want one asking for the window's first 4 images", rs)
	}
}
