package stage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/schemas"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBatchPublishAcksOnlyWhatIsStored: a batch's outputs are published
// together; an input whose output the server does not store is never
// acknowledged (retried, then dead-lettered) while the rest of its batch is
// stored and acknowledged once.
func TestBatchPublishAcksOnlyWhatIsStored(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	const n, bad = 12, 3
	for i := range n {
		key := fmt.Sprintf("amd/%d.jpg", i)
		if i < bad {
			key = fmt.Sprintf("bad/%d.jpg", i)
		}
		publishUpload(t, env.JS, key)
	}
	m := NewMetrics(prometheus.NewRegistry())
	var mu sync.Mutex
	calls := map[string]int{}
	var biggest atomic.Int64
	var unused atomic.Int64
	single := passThrough(&unused)
	p := resizeProcessor(nil, m)
	p.Handle = nil
	p.MaxBatch, p.MaxWait = n, 50*time.Millisecond
	p.HandleBatch = func(ctx context.Context, in []schemas.S3Event) []Result {
		if int64(len(in)) > biggest.Load() {
			biggest.Store(int64(len(in)))
		}
		out := make([]Result, len(in))
		for i, ev := range in {
			ups, _ := ev.Uploads()
			mu.Lock()
			calls[ups[0].Key]++
			mu.Unlock()
			if strings.HasPrefix(ups[0].Key, "bad/") {
				// No stream stores this subject: never confirmed.
				out[i].Outputs = []Output{{Subject: "eye.nowhere", Event: map[string]string{"x": "y"}}}
				continue
			}
			out[i].Outputs, out[i].Err = single(ctx, ev)
		}
		return out
	}
	start(t, env.JS, p)
	waitIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	if biggest.Load() < 2 {
		t.Fatalf("no batch formed from %d queued inputs", n)
	}
	if out := messages(t, env.JS, bus.StreamResized, schemas.SubjectResized); len(out) != n-bad {
		t.Fatalf("%d outputs stored, want %d", len(out), n-bad)
	}
	maxDeliver := testenv.TopologyOptions().MaxDeliver
	mu.Lock()
	for key, c := range calls {
		want := 1
		if strings.HasPrefix(key, "bad/") {
			want = maxDeliver
		}
		if c != want {
			t.Errorf("%s handled %d times, want %d", key, c, want)
		}
	}
	mu.Unlock()
	dl := deadLetters(t, env.JS)
	if len(dl) != bad {
		t.Fatalf("%d dead letters, want %d", len(dl), bad)
	}
	for _, d := range dl {
		if d.Reason != schemas.ReasonMaxDeliveries {
			t.Errorf("dead letter reason %q, want %q", d.Reason, schemas.ReasonMaxDeliveries)
		}
	}
	if got := testutil.ToFloat64(m.processed.WithLabelValues(schemas.StageResize)); got != n-bad {
		t.Fatalf("processed_total %v, want %d", got, n-bad)
	}
}

// TestConcurrently: every input of a batch runs at once (each waits here
// until all have started, which a one-by-one loop would never reach), each
// keeps its own result in order, and a panic fails only its own input.
func TestConcurrently(t *testing.T) {
	const n = 6
	var started sync.WaitGroup
	started.Add(n)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	h := Concurrently(func(ctx context.Context, in int) ([]Output, error) {
		started.Done()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("input %d: the others never started", in)
		}
		if in == 3 {
			panic("boom")
		}
		return []Output{{Subject: fmt.Sprint(in)}}, nil
	})
	res := h(context.Background(), []int{0, 1, 2, 3, 4, 5})
	if len(res) != n {
		t.Fatalf("%d results for %d inputs", len(res), n)
	}
	for i, r := range res {
		if i == 3 {
			if reason, ok := permanentReason(r.Err); !ok || reason != schemas.ReasonPanic || !strings.Contains(r.Err.Error(), "boom") {
				t.Errorf("input 3: %v, want its panic as a permanent error", r.Err)
			}
			continue
		}
		if r.Err != nil || len(r.Outputs) != 1 || r.Outputs[0].Subject != fmt.Sprint(i) {
			t.Errorf("input %d: %+v", i, r)
		}
	}
}
