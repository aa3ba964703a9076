package classifier

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"eyeflow/inference"
	"eyeflow/internal/tinytest"
)

func TestBatcherMergesAndSwaps(t *testing.T) {
	initORT(t)
	m1, err := inference.LoadModel(tinytest.Model(t, "v1"), inference.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	b := NewBatcher(m1, 8, 50*time.Millisecond)
	defer b.Close()
	// Eight single-image requests at once fill one run of 8.
	var wg sync.WaitGroup
	sizes := make([]int, 8)
	for i := range 8 {
		wg.Go(func() {
			r, err := b.Predict(context.Background(), [][]byte{tinytest.Solid(255, 0, 0)}, false)
			if err != nil {
				t.Error(err)
				return
			}
			sizes[i] = r.Size
		})
	}
	wg.Wait()
	merged := false
	for _, s := range sizes {
		merged = merged || s > 1
	}
	if !merged {
		t.Errorf("batch sizes %v: concurrent requests were not merged", sizes)
	}
	// A job larger than MaxBatch is split into runs.
	big := make([][]byte, 19)
	for i := range big {
		big[i] = tinytest.Solid(0, 0, 255)
	}
	r, err := b.Predict(context.Background(), big, true)
	if err != nil || len(r.Probs) != 19 || r.Size != 8 {
		t.Fatalf("19 images: %d probs, size %d, err %v", len(r.Probs), r.Size, err)
	}
	m2, err := inference.LoadModel(tinytest.Model(t, "v2"), inference.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	old, err := b.Swap(m2)
	if err != nil || old != m1 {
		t.Fatalf("swap returned %v, %v", old, err)
	}
	old.Close()
	r, err = b.Predict(context.Background(), [][]byte{tinytest.Solid(1, 2, 3)}, true)
	if err != nil || r.Card.Version != "v2" {
		t.Fatalf("after swap: %v %v", r.Card.Version, err)
	}
	if _, err := b.Predict(context.Background(), [][]byte{make([]byte, 10)}, true); err == nil {
		t.Error("a wrong-sized image was accepted")
	}
}

func TestBatcherWithoutModel(t *testing.T) {
	b := NewBatcher(nil, 4, time.Millisecond)
	defer b.Close()
	if _, err := b.Predict(context.Background(), [][]byte{tinytest.Solid(0, 0, 0)}, true); err != ErrNoModel {
		t.Fatalf("err %v, want ErrNoModel", err)
	}
}

func TestInCanaryDeterministicShare(t *testing.T) {
	in := 0
	for i := range 10000 {
		id := fmt.Sprintf("%064x", i)
		a := InCanary(id, 0.1)
		if a != InCanary(id, 0.1) {
			t.Fatal("not deterministic")
		}
		if a && !InCanary(id, 0.5) {
			t.Fatal("a larger share must include a smaller one")
		}
		if a {
			in++
		}
	}
	if in < 900 || in > 1100 {
		t.Errorf("share 0.1 took %d of 10000", in)
	}
	if InCanary("x", 0) || !InCanary("x", 1) {
		t.Error("share 0 must take nothing and 1 everything")
	}
}

func TestBatcherRunsInParallel(t *testing.T) {
	initORT(t)
	m, err := inference.LoadModel(tinytest.Model(t, "v1"), inference.SessionOptions{IntraOpThreads: 1, ParallelRuns: 2})
	if err != nil {
		t.Fatal(err)
	}
	if m.ParallelRuns != 2 || m.Threads != 1 {
		t.Fatalf("model plan %d threads x %d runs, want 1 x 2", m.Threads, m.ParallelRuns)
	}
	b := NewBatcher(m, 1, time.Millisecond)
	defer b.Close()
	var arrived sync.WaitGroup
	arrived.Add(2)
	met := make(chan struct{})
	go func() { arrived.Wait(); close(met) }()
	var alone atomic.Int32 // runs that waited for the other in vain
	b.observe = func(Batch, error) {
		arrived.Done()
		select {
		case <-met:
		case <-time.After(10 * time.Second):
			alone.Add(1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := b.Predict(ctx, [][]byte{tinytest.Solid(9, 9, 9)}, true); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if alone.Load() > 0 {
		t.Fatal("the two runs never overlapped: the batcher ran them one at a time")
	}
}
