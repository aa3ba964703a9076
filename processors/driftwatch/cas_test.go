package driftwatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"eyeflow/internal/stagetest"
	"eyeflow/processors/driftwatch"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"
)

// TestStateWriteIsCompareAndSet has a second watcher (another instance,
// or the same prediction redelivered there) count a prediction between a
// watcher's read of the state and its write: the stale write must fail and
// be retried on the winner's state, or the other's count is lost. Pure
// logic: the bucket is the in-memory one.
func TestStateWriteIsCompareAndSet(t *testing.T) {
	ctx := context.Background()
	kv := stagetest.NewKeyValue()
	newWatcher := func() *driftwatch.Watcher {
		w, err := driftwatch.New(ctx, kv, driftwatch.DefaultConfig(), driftwatch.NewMetrics(prometheus.NewRegistry()))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	a, b := newWatcher(), newWatcher()
	handle := func(w *driftwatch.Watcher, seq uint64) error {
		mctx := stage.WithMeta(ctx, stage.Meta{Stage: schemas.StageDriftwatch, Subject: schemas.PredictionSubject(schemas.EnvProd), Sequence: seq})
		_, err := w.Handle(mctx, prediction(int(seq), 0.2))
		return err
	}
	state := func() driftwatch.State {
		t.Helper()
		e, err := kv.Get(ctx, driftwatch.StateKey(schemas.EnvProd, "v1"))
		if err != nil {
			t.Fatal(err)
		}
		var st driftwatch.State
		if err := json.Unmarshal(e.Value, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}

	if err := handle(a, 1); err != nil {
		t.Fatal(err)
	}
	// a reads the state after 1, then b counts 2 before a writes 3.
	slipped := false
	kv.BeforeWrite = func(string) {
		if slipped {
			return
		}
		slipped = true
		if err := handle(b, 2); err != nil {
			t.Errorf("b counting 2: %v", err)
		}
	}
	err := handle(a, 3)
	if !errors.Is(err, stage.ErrWrongRevision) {
		t.Fatalf("a's write over b's: %v, want it refused with ErrWrongRevision", err)
	}
	var pe *stage.PermanentError
	if errors.As(err, &pe) {
		t.Fatalf("the refused write is permanent (%v): the prediction would be dead-lettered, not retried", err)
	}
	if st := state(); st.LastSeq != 2 || st.Streak.Len != 2 {
		t.Fatalf("after the race: last seq %d, streak %d; want b's state (2, 2)", st.LastSeq, st.Streak.Len)
	}
	// The runtime retries 3: a reads b's state and counts on it.
	if err := handle(a, 3); err != nil {
		t.Fatal(err)
	}
	if st := state(); st.LastSeq != 3 || st.Streak.Len != 3 {
		t.Fatalf("after the retry: last seq %d, streak %d; want 3, 3 (no prediction lost or counted twice)", st.LastSeq, st.Streak.Len)
	}
}
