package stage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/schemas"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// passThrough is the trivial stage that proves the runtime: every upload
// becomes one eye.resized event naming it.
func passThrough(calls *atomic.Int64) Handler[schemas.S3Event] {
	return func(ctx context.Context, ev schemas.S3Event) ([]Output, error) {
		calls.Add(1)
		ups, err := ev.Uploads()
		if err != nil {
			return nil, err
		}
		return []Output{{Subject: schemas.SubjectResized, Event: schemas.Resized{
			Schema: schemas.SchemaResized, UploadID: ups[0].ID(),
			Source: schemas.ObjectRef{Bucket: ups[0].Bucket, Key: ups[0].Key},
		}}}, nil
	}
}

func uploadIdentity(ev schemas.S3Event) string {
	ups, err := ev.Uploads()
	if err != nil || len(ups) == 0 {
		return ""
	}
	return ups[0].ID()
}

func resizeProcessor(h Handler[schemas.S3Event], m *Metrics) Processor[schemas.S3Event] {
	return Processor[schemas.S3Event]{
		Stage:     schemas.StageResize,
		Decode:    schemas.DecodeS3Event,
		Identity:  uploadIdentity,
		Handle:    h,
		RetryBase: 50 * time.Millisecond,
		Logger:    zerolog.Nop(),
		Metrics:   m,
	}
}

// start runs p until the test ends or the returned stop is called.
func start[In any](t *testing.T, js jetstream.JetStream, p Processor[In]) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, js, p) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("stage did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func publishUpload(t *testing.T, js jetstream.JetStream, key string) {
	t.Helper()
	ev := schemas.NewUploadEvent(schemas.Upload{Bucket: "raw", Key: key, Size: 3, ETag: "etag-" + key})
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, js, schemas.SubjectUploads, data)
}

func publishRaw(t *testing.T, js jetstream.JetStream, subject string, data []byte) {
	t.Helper()
	if _, err := js.Publish(testenv.Context(t, 10*time.Second), subject, data); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
}

func messages(t *testing.T, js jetstream.JetStream, stream, subject string) []jetstream.Msg {
	t.Helper()
	return testenv.StreamMessages(t, js, stream, subject)
}

func waitIdle(t *testing.T, js jetstream.JetStream, stream, consumer string) {
	t.Helper()
	testenv.WaitConsumerIdle(t, js, stream, consumer)
}

// waitPending waits until the server counts n messages pending for the
// consumer.
func waitPending(t *testing.T, js jetstream.JetStream, stream, consumer string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := js.Consumer(t.Context(), stream, consumer)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s counts %d pending messages, want %d", consumer, info.NumPending, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPassThroughOncePerUpload(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	var calls atomic.Int64
	p := resizeProcessor(passThrough(&calls), NewMetrics(prometheus.NewRegistry()))
	p.Concurrency = 4
	start(t, env.JS, p)
	const n = 50
	for i := range n {
		publishUpload(t, env.JS, fmt.Sprintf("cataract/img %d+.jpg", i))
	}
	// The same upload reported again (a MinIO queue_dir replay): no new output.
	publishUpload(t, env.JS, "cataract/img 0+.jpg")
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	out := messages(t, env.JS, bus.StreamResized, schemas.SubjectResized)
	if len(out) != n {
		t.Fatalf("%d outputs for %d distinct uploads", len(out), n)
	}
	seen := map[string]bool{}
	for _, m := range out {
		var r schemas.Resized
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		if seen[r.UploadID] {
			t.Fatalf("duplicate output for %s", r.UploadID)
		}
		seen[r.UploadID] = true
	}
	if !seen["raw/cataract/img 0+.jpg@etag-cataract/img 0+.jpg"] {
		t.Fatalf("URL-decoded key missing from outputs: %v", seen)
	}
}

func TestPublishFailureIsNeverAcked(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	m := NewMetrics(prometheus.NewRegistry())
	var calls atomic.Int64
	// No stream stores this subject: the publish is never confirmed, so the
	// input must not be acknowledged. It is retried and finally dead-lettered.
	p := resizeProcessor(func(ctx context.Context, ev schemas.S3Event) ([]Output, error) {
		calls.Add(1)
		return []Output{{Subject: "eye.nowhere", Event: map[string]string{"x": "y"}}}, nil
	}, m)
	start(t, env.JS, p)
	publishUpload(t, env.JS, "normal/a.jpg")
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	maxDeliver := testenv.TopologyOptions().MaxDeliver
	if got := calls.Load(); got != int64(maxDeliver) {
		t.Fatalf("processed %d times, want one per delivery (%d): an unconfirmed publish must not be acked", got, maxDeliver)
	}
	dl := deadLetters(t, env.JS)
	if len(dl) != 1 || dl[0].Reason != "max_deliveries" || dl[0].Deliveries != uint64(maxDeliver) {
		t.Fatalf("dead letters %+v, want one max_deliveries after %d deliveries", dl, maxDeliver)
	}
	if got := testutil.ToFloat64(m.processed.WithLabelValues(schemas.StageResize)); got != 0 {
		t.Fatalf("processed_total %v, want 0", got)
	}
}

func deadLetters(t *testing.T, js jetstream.JetStream) []schemas.DeadLetter {
	t.Helper()
	var out []schemas.DeadLetter
	for _, m := range messages(t, js, bus.StreamDLQ, schemas.DLQSubject(schemas.StageResize)) {
		var dl schemas.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatal(err)
		}
		out = append(out, dl)
	}
	return out
}

func TestBadInputIsDeadLetteredAndNextFlows(t *testing.T) {
	tests := []struct {
		name       string
		payload    []byte
		handlerErr error
		wantReason string
	}{
		{"not json", []byte("not json at all"), nil, "bad_input"},
		{"no records", []byte(`{"EventName":"s3:ObjectCreated:Put","Records":[]}`), nil, "bad_input"},
		{"processor says bad input", nil, Permanent("corrupt_image", errors.New("decode jpeg: premature end of data")), "corrupt_image"},
		{"processor panics", nil, errors.New("panic"), "panic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := testenv.NATS(t, testenv.TopologyOptions())
			m := NewMetrics(prometheus.NewRegistry())
			var calls atomic.Int64
			good := passThrough(&calls)
			p := resizeProcessor(func(ctx context.Context, ev schemas.S3Event) ([]Output, error) {
				ups, _ := ev.Uploads()
				if ups[0].Key == "bad.jpg" {
					if tt.wantReason == "panic" {
						panic("boom")
					}
					return nil, tt.handlerErr
				}
				return good(ctx, ev)
			}, m)
			start(t, env.JS, p)
			payload := tt.payload
			if payload == nil {
				payload, _ = json.Marshal(schemas.NewUploadEvent(schemas.Upload{Bucket: "raw", Key: "bad.jpg", ETag: "e"}))
			}
			publishRaw(t, env.JS, schemas.SubjectUploads, payload)
			publishUpload(t, env.JS, "normal/next.jpg")
			waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)

			dl := deadLetters(t, env.JS)
			if len(dl) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dl))
			}
			d := dl[0]
			if d.Reason != tt.wantReason || d.Stage != schemas.StageResize || !d.Permanent || d.Deliveries != 1 ||
				string(d.Payload) != string(payload) || d.Error == "" || d.Schema != schemas.SchemaDeadLetter {
				t.Fatalf("dead letter %+v: want reason %q, stage resize, first delivery, the original payload", d, tt.wantReason)
			}
			if out := messages(t, env.JS, bus.StreamResized, schemas.SubjectResized); len(out) != 1 {
				t.Fatalf("%d outputs, want the next message's 1", len(out))
			}
			if got := testutil.ToFloat64(m.deadLettered.WithLabelValues(schemas.StageResize, tt.wantReason)); got != 1 {
				t.Fatalf("dead_letters_total{reason=%q} = %v, want 1", tt.wantReason, got)
			}
		})
	}
}

func TestTransientErrorIsRetried(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	var calls atomic.Int64
	good := passThrough(&calls)
	p := resizeProcessor(func(ctx context.Context, ev schemas.S3Event) ([]Output, error) {
		meta, ok := MetaFrom(ctx)
		if !ok {
			return nil, errors.New("no delivery metadata")
		}
		if meta.Deliveries == 1 {
			return nil, errors.New("object store unreachable")
		}
		return good(ctx, ev)
	}, NewMetrics(prometheus.NewRegistry()))
	start(t, env.JS, p)
	publishUpload(t, env.JS, "amd/x.jpg")
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	if out := messages(t, env.JS, bus.StreamResized, schemas.SubjectResized); len(out) != 1 {
		t.Fatalf("%d outputs, want 1", len(out))
	}
	if dl := deadLetters(t, env.JS); len(dl) != 0 {
		t.Fatalf("a transient failure was dead-lettered: %+v", dl)
	}
}

func TestRedeliveryAfterPublishMakesNoDuplicate(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	var calls atomic.Int64
	p := resizeProcessor(passThrough(&calls), NewMetrics(prometheus.NewRegistry()))
	// Abandon every first delivery after publishing, before acking: the
	// server redelivers after AckWait and the republish must be dropped.
	p.crashAfterPublish = func(m Meta) bool { return m.Deliveries == 1 }
	start(t, env.JS, p)
	const n = 5
	for i := range n {
		publishUpload(t, env.JS, fmt.Sprintf("glaucoma/%d.jpg", i))
	}
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	if got := calls.Load(); got != 2*n {
		t.Fatalf("handler ran %d times, want %d (every input redelivered once)", got, 2*n)
	}
	if out := messages(t, env.JS, bus.StreamResized, schemas.SubjectResized); len(out) != n {
		t.Fatalf("%d outputs after redelivery, want %d", len(out), n)
	}
}

func TestCrashBetweenPublishAndAckLosesNothing(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	const n = 20
	for i := range n {
		publishUpload(t, env.JS, fmt.Sprintf("normal/%d.jpg", i))
	}
	// First instance: dies (its context is killed) right after publishing
	// the outputs of the 7th message, before acknowledging it.
	var calls atomic.Int64
	ctx, kill := context.WithCancel(context.Background())
	p := resizeProcessor(passThrough(&calls), NewMetrics(prometheus.NewRegistry()))
	var processed atomic.Int64
	p.crashAfterPublish = func(Meta) bool {
		if processed.Add(1) >= 7 {
			kill()
			return true
		}
		return false
	}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, env.JS, p) }()
	<-ctx.Done()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A new instance takes over the durable consumer.
	p2 := resizeProcessor(passThrough(&calls), NewMetrics(prometheus.NewRegistry()))
	start(t, env.JS, p2)
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	if out := messages(t, env.JS, bus.StreamResized, schemas.SubjectResized); len(out) != n {
		t.Fatalf("%d outputs after crash and restart, want %d", len(out), n)
	}
}

// recordingBatch passes every input of a batch through and records the
// batch's size in sizes.
func recordingBatch(mu *sync.Mutex, sizes *[]int) BatchHandler[schemas.S3Event] {
	var calls atomic.Int64
	single := passThrough(&calls)
	return func(ctx context.Context, in []schemas.S3Event) []Result {
		mu.Lock()
		*sizes = append(*sizes, len(in))
		mu.Unlock()
		out := make([]Result, len(in))
		for i, ev := range in {
			out[i].Outputs, out[i].Err = single(ctx, ev)
		}
		return out
	}
}

func TestBatchHandler(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	const n, maxBatch = 40, 8
	for i := range n {
		publishUpload(t, env.JS, fmt.Sprintf("amd/%d.jpg", i))
	}
	var mu sync.Mutex
	var sizes []int
	p := resizeProcessor(nil, NewMetrics(prometheus.NewRegistry()))
	p.Handle = nil
	p.MaxBatch, p.MaxWait = maxBatch, 20*time.Millisecond
	p.HandleBatch = recordingBatch(&mu, &sizes)
	start(t, env.JS, p)
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	if out := messages(t, env.JS, bus.StreamResized, schemas.SubjectResized); len(out) != n {
		t.Fatalf("%d outputs, want %d", len(out), n)
	}
	mu.Lock()
	defer mu.Unlock()
	biggest := 0
	for _, s := range sizes {
		if s > maxBatch {
			t.Fatalf("batch of %d exceeds max %d", s, maxBatch)
		}
		biggest = max(biggest, s)
	}
	if biggest < 2 {
		t.Fatalf("batch sizes %v: with %d queued inputs batches should form", sizes, n)
	}
}

// TestBatchesFillFromABacklog: with inputs queued on the server, batches
// leave full even when MaxWait is far shorter than a pull takes: the
// messages' NumPending says more are coming. The last inputs, with nothing
// behind them, leave after MaxWait as before.
func TestBatchesFillFromABacklog(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	// More than the workers prefetch together (Concurrency x MaxBatch): the
	// tail comes in a later pull, while idle workers wait for messages.
	const n, maxBatch = 166, 40
	for i := range n {
		publishUpload(t, env.JS, fmt.Sprintf("amd/%d.jpg", i))
	}
	// The server counts a consumer's pending messages as their stored
	// signals reach it, behind the publishes under load; the batches read
	// that count, so they start once it has the whole backlog.
	waitPending(t, env.JS, bus.StreamUploads, bus.ConsumerResize, n)
	var mu sync.Mutex
	var sizes []int
	p := resizeProcessor(nil, NewMetrics(prometheus.NewRegistry()))
	p.Handle = nil
	p.Concurrency = 4
	p.MaxBatch, p.MaxWait = maxBatch, time.Nanosecond // no wait at all, but for the backlog
	p.HandleBatch = recordingBatch(&mu, &sizes)
	start(t, env.JS, p)
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	mu.Lock()
	got := slices.Clone(sizes)
	mu.Unlock()
	total := 0
	for _, s := range got {
		total += s
	}
	// Full batches and the rest: the tail is not shared out among the idle
	// workers (each would wait out FillWait with a part).
	full := 0
	for _, s := range got {
		if s == maxBatch {
			full++
		}
	}
	if total != n || full != n/maxBatch || len(got) != (n+maxBatch-1)/maxBatch {
		t.Fatalf("batch sizes %v for %d queued inputs: want %d full batches of %d and one of the rest", got, n, n/maxBatch, maxBatch)
	}
	// A lone input does not wait for a batch to fill.
	t0 := time.Now()
	publishUpload(t, env.JS, "amd/lone.jpg")
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("a lone input took %s", d)
	}
}

func TestMsgIDIsDeterministic(t *testing.T) {
	a := MsgID("resize", "raw/a.jpg@e1", schemas.SubjectResized, "")
	tests := []struct {
		name string
		id   string
		same bool
	}{
		{"same input", MsgID("resize", "raw/a.jpg@e1", schemas.SubjectResized, ""), true},
		{"other etag", MsgID("resize", "raw/a.jpg@e2", schemas.SubjectResized, ""), false},
		{"other stage", MsgID("splitter", "raw/a.jpg@e1", schemas.SubjectResized, ""), false},
		{"other subject", MsgID("resize", "raw/a.jpg@e1", schemas.DLQSubject("resize"), ""), false},
		{"other key", MsgID("resize", "raw/a.jpg@e1", schemas.SubjectResized, "k"), false},
	}
	for _, tt := range tests {
		if (tt.id == a) != tt.same {
			t.Errorf("%s: %s vs %s", tt.name, tt.id, a)
		}
	}
}

// TestProcessorIsBoundFromTheCatalogue: a processor names its stage and
// input, never a stream or consumer; Run refuses an input the catalogue
// does not declare for the stage, before reading anything.
func TestProcessorIsBoundFromTheCatalogue(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	m := NewMetrics(prometheus.NewRegistry())
	tests := []struct {
		name   string
		modify func(*Processor[schemas.S3Event])
		err    string
	}{
		{"unknown input", func(p *Processor[schemas.S3Event]) { p.Input = "resized" }, `declares no input "resized"`},
		{"env on a shared input", func(p *Processor[schemas.S3Event]) { p.Env = schemas.EnvProd }, "per env"},
		{"another stage's name", func(p *Processor[schemas.S3Event]) { p.Stage = "resizer" }, `no stage "resizer"`},
		{"input and consumer", func(p *Processor[schemas.S3Event]) { p.Input, p.Consumer = "x", bus.ConsumerResize }, "not both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := resizeProcessor(func(context.Context, schemas.S3Event) ([]Output, error) { return nil, nil }, m)
			tt.modify(&p)
			err := Run(testenv.Context(t, 10*time.Second), env.JS, p)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Run = %v, want an error with %q", err, tt.err)
			}
		})
	}
}
