package stage_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

// TestKeyValueContract runs one contract over the JetStream bucket and the
// in-memory fake, so that a processor test on the fake tests what runs.
func TestKeyValueContract(t *testing.T) {
	t.Run("jetstream", func(t *testing.T) {
		env := testenv.NATS(t, testenv.TopologyOptions())
		raw, err := env.JS.CreateKeyValue(testenv.Context(t, 10*time.Second), jetstream.KeyValueConfig{Bucket: "contract", History: 10})
		if err != nil {
			t.Fatal(err)
		}
		keyValueContract(t, stage.KeyValueOf(raw), func(key string) {
			if err := raw.Delete(context.Background(), key); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("memory", func(t *testing.T) {
		kv := stagetest.NewKeyValue()
		keyValueContract(t, kv, kv.Delete)
	})
}

func keyValueContract(t *testing.T, kv stage.KeyValue, del func(key string)) {
	ctx := testenv.Context(t, 20*time.Second)
	must := func(rev uint64, err error) uint64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	if _, err := kv.Get(ctx, "a"); !errors.Is(err, stage.ErrKeyNotFound) {
		t.Fatalf("get of a missing key: %v, want ErrKeyNotFound", err)
	}
	if keys, err := kv.Keys(ctx, ""); err != nil || keys == nil || len(keys) != 0 {
		t.Fatalf("keys of an empty bucket: %q, %v; want an empty slice and no error", keys, err)
	}
	if _, err := kv.History(ctx, "a"); !errors.Is(err, stage.ErrKeyNotFound) {
		t.Fatalf("history of a missing key: %v, want ErrKeyNotFound", err)
	}

	r1 := must(kv.Create(ctx, "a", []byte("1")))
	if _, err := kv.Create(ctx, "a", []byte("x")); !errors.Is(err, stage.ErrKeyExists) {
		t.Fatalf("second create: %v, want ErrKeyExists", err)
	}
	r2 := must(kv.Update(ctx, "a", []byte("2"), r1))
	if _, err := kv.Update(ctx, "a", []byte("x"), r1); !errors.Is(err, stage.ErrWrongRevision) || errors.Is(err, stage.ErrKeyExists) {
		t.Fatalf("update at a stale revision: %v, want ErrWrongRevision only", err)
	}
	if e, err := kv.Get(ctx, "a"); err != nil || string(e.Value) != "2" || e.Revision != r2 || e.Key != "a" || e.Op != stage.OpPut || e.Created.IsZero() {
		t.Fatalf("get a: %+v, %v; want value 2 at revision %d", e, err, r2)
	}
	// A missing key is at revision 0.
	must(kv.Update(ctx, "n", []byte("new"), 0))

	must(kv.Put(ctx, "b.x", []byte("bx")))
	must(kv.Put(ctx, "b.y", []byte("by")))
	must(kv.Put(ctx, "c", []byte("c")))
	for filter, want := range map[string][]string{
		"":    {"a", "b.x", "b.y", "c", "n"},
		">":   {"a", "b.x", "b.y", "c", "n"},
		"b.>": {"b.x", "b.y"},
		"b.*": {"b.x", "b.y"},
		"*":   {"a", "c", "n"},
		"d.>": {},
	} {
		if got, err := kv.Keys(ctx, filter); err != nil || !slices.Equal(got, want) || got == nil {
			t.Errorf("keys %q: %q, %v; want %q", filter, got, err, want)
		}
	}

	// A deleted key has no value, but a history, and can be created again.
	del("n")
	if _, err := kv.Get(ctx, "n"); !errors.Is(err, stage.ErrKeyNotFound) {
		t.Fatalf("get of a deleted key: %v, want ErrKeyNotFound", err)
	}
	if got, _ := kv.Keys(ctx, ""); slices.Contains(got, "n") {
		t.Fatalf("keys %q list a deleted key", got)
	}
	h, err := kv.History(ctx, "n")
	if err != nil || len(h) != 2 || h[0].Op != stage.OpPut || h[1].Op != stage.OpDelete || string(h[0].Value) != "new" {
		t.Fatalf("history of n: %+v, %v; want the put, then the delete", h, err)
	}
	must(kv.Create(ctx, "n", []byte("again")))
	h, err = kv.History(ctx, "a")
	if err != nil || len(h) != 2 || string(h[0].Value) != "1" || string(h[1].Value) != "2" || h[1].Revision != r2 {
		t.Fatalf("history of a: %+v, %v; want 1 then 2", h, err)
	}

	wctx, stop := context.WithCancel(ctx)
	w, err := kv.Watch(wctx, "b.>")
	if err != nil {
		t.Fatal(err)
	}
	next := func() *stage.Entry {
		t.Helper()
		select {
		case e, ok := <-w:
			if !ok {
				t.Fatal("watch closed")
			}
			return e
		case <-ctx.Done():
			t.Fatal("watch: nothing came")
		}
		return nil
	}
	for _, want := range []string{"b.x", "b.y"} {
		if e := next(); e == nil || e.Key != want {
			t.Fatalf("watch initial value %+v, want %s", e, want)
		}
	}
	if e := next(); e != nil {
		t.Fatalf("watch: %+v after the initial values, want the nil marker", e)
	}
	must(kv.Put(ctx, "c", []byte("not watched")))
	must(kv.Put(ctx, "b.z", []byte("bz")))
	if e := next(); e == nil || e.Key != "b.z" || string(e.Value) != "bz" || e.Op != stage.OpPut {
		t.Fatalf("watch update %+v, want b.z", e)
	}
	del("b.x")
	if e := next(); e == nil || e.Key != "b.x" || e.Op != stage.OpDelete {
		t.Fatalf("watch update %+v, want the delete of b.x", e)
	}
	stop()
	for range w { // closed once the watch's context ends
	}
}

func TestPublisherWaitsForTheStreamAndDedupes(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, 10*time.Second)
	pub := stage.PublisherOf(env.JS)
	m := stage.Message{Subject: schemas.SubjectModels, Data: []byte(`{"kind":"x"}`), MsgID: "models:x", Stage: schemas.StageTrainer}
	for range 2 {
		if err := pub.Publish(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, stage.Message{Subject: schemas.SubjectModels, Data: []byte("{}")}); !errors.Is(err, stage.ErrNoMsgID) {
		t.Fatalf("publish without a Msg-Id: %v, want ErrNoMsgID", err)
	}
	// Publish returned: the message is stored, once.
	var got []stage.StoredMsg
	err := stage.StreamReaderOf(env.JS).Scan(ctx, bus.StreamModels, schemas.SubjectModels, time.Time{}, func(sm stage.StoredMsg) bool {
		got = append(got, sm)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Data) != string(m.Data) || got[0].Header[stage.HeaderStage][0] != schemas.StageTrainer || got[0].Sequence == 0 || got[0].Time.IsZero() {
		t.Fatalf("stored %+v, want the message once with its stage header", got)
	}
}

func TestScanAndBacklog(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, 20*time.Second)
	pub := stage.PublisherOf(env.JS)
	streams := stage.StreamReaderOf(env.JS)
	if n, err := streams.Backlog(ctx, bus.StreamUploads, bus.ConsumerIngestLedger); err != nil || n != 0 {
		t.Fatalf("backlog of an empty stream: %d, %v", n, err)
	}
	var mid time.Time
	for i := range 5 {
		if i == 3 {
			time.Sleep(20 * time.Millisecond)
			mid = time.Now()
		}
		if err := pub.Publish(ctx, stage.Message{Subject: schemas.SubjectUploads, Data: []byte{byte('0' + i)}, MsgID: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(since time.Time, limit int) string {
		t.Helper()
		var s string
		err := streams.Scan(ctx, bus.StreamUploads, schemas.SubjectUploads, since, func(m stage.StoredMsg) bool {
			s += string(m.Data)
			return len(s) < limit
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := scan(time.Time{}, 100); got != "01234" {
		t.Errorf("scan of all: %q, want 01234", got)
	}
	if got := scan(mid, 100); got != "34" {
		t.Errorf("scan since the fourth: %q, want 34", got)
	}
	if got := scan(time.Time{}, 2); got != "01" {
		t.Errorf("scan stopped after two: %q, want 01", got)
	}
	if got := scan(time.Now().Add(time.Hour), 100); got != "" {
		t.Errorf("scan of the future: %q, want nothing", got)
	}
	if n, err := streams.Backlog(ctx, bus.StreamUploads, bus.ConsumerIngestLedger); err != nil || n != 5 {
		t.Fatalf("backlog: %d, %v; want the 5 unconsumed uploads", n, err)
	}
	if _, err := streams.Backlog(ctx, bus.StreamUploads, "nobody"); err == nil {
		t.Fatal("backlog of a missing consumer: no error")
	}
}
