package ingest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"eyeflow/internal/stagetest"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/ingest"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// uploads returns the decoded uploads stored on eye.uploads.
func uploads(t *testing.T, js jetstream.JetStream) []schemas.Upload {
	t.Helper()
	msgs := testenv.StreamMessages(t, js, bus.StreamUploads, schemas.SubjectUploads)
	var out []schemas.Upload
	for _, m := range msgs {
		ev, err := schemas.DecodeS3Event(m.Data())
		if err != nil {
			t.Fatalf("decode %s: %v", m.Data(), err)
		}
		ups, _ := ev.Uploads()
		out = append(out, ups...)
	}
	return out
}

func keys(ups []schemas.Upload) []string {
	var out []string
	for _, u := range ups {
		out = append(out, u.Key)
	}
	sort.Strings(out)
	return out
}

// waitUploads waits for n events and then checks no more arrive.
func waitUploads(t *testing.T, js jetstream.JetStream, n int) []schemas.Upload {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(uploads(t, js)) < n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	got := uploads(t, js)
	if len(got) != n {
		t.Fatalf("%d upload events, want %d: %v", len(got), n, keys(got))
	}
	return got
}

func putBytes(t *testing.T, s objstore.Store, key string, data []byte, meta map[string]string) {
	t.Helper()
	if _, err := s.Put(testenv.Context(t, 30*time.Second), objstore.BucketRaw, key, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{ContentType: "image/jpeg", Metadata: meta}); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherPublishesOneEventPerUpload(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, 2*time.Minute)
	store := objstore.NewJetStream(env.JS)
	if err := store.EnsureBucket(ctx, objstore.BucketRaw); err != nil {
		t.Fatal(err)
	}
	ledger := openLedger(t, env.JS)
	// An object stored before the watcher starts still gets its event.
	putBytes(t, store, "normal/before.jpg", []byte("before"), nil)
	go func() {
		_ = ingest.WatchJetStream(ctx, store, objstore.BucketRaw, ingest.NewPublisher(stage.PublisherOf(env.JS), ledger), zerolog.Nop())
	}()

	putBytes(t, store, "glaucoma/eye one+two.jpg", []byte("one"), map[string]string{"patient-id": "p-7"})
	putBytes(t, store, "ünïcode/a b/c.jpg", []byte("two"), nil)
	// Any NATS client can write the bucket, not only eyeflow.
	obs, err := env.JS.ObjectStore(ctx, objstore.BucketRaw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "amd/from-nats-cli.jpg", []byte("three")); err != nil {
		t.Fatal(err)
	}
	got := waitUploads(t, env.JS, 4)

	// A re-run put of the same bytes is the same upload: no new event.
	putBytes(t, store, "glaucoma/eye one+two.jpg", []byte("one"), map[string]string{"patient-id": "p-7"})
	waitUploads(t, env.JS, 4)
	// New bytes under the same key are a new upload.
	putBytes(t, store, "normal/before.jpg", []byte("before, retaken"), nil)
	got = waitUploads(t, env.JS, 5)

	want := []string{"amd/from-nats-cli.jpg", "glaucoma/eye one+two.jpg", "normal/before.jpg", "normal/before.jpg", "ünïcode/a b/c.jpg"}
	if k := keys(got); !reflect.DeepEqual(k, want) {
		t.Fatalf("event keys %q, want %q", k, want)
	}
	for _, u := range got {
		if u.Bucket != objstore.BucketRaw || u.ETag == "" {
			t.Errorf("upload %+v lacks bucket or etag", u)
		}
		if u.Key == "glaucoma/eye one+two.jpg" && u.Metadata["patient-id"] != "p-7" {
			t.Errorf("patient-id metadata lost: %+v", u.Metadata)
		}
	}
}

func TestReconcilerPublishesOnlyMissingEvents(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, 2*time.Minute)
	store := objstore.NewJetStream(env.JS)
	if err := store.EnsureBucket(ctx, objstore.BucketRaw); err != nil {
		t.Fatal(err)
	}
	ledger := openLedger(t, env.JS)
	for _, k := range []string{"a/1.jpg", "a/2.jpg", "b/3.jpg"} {
		putBytes(t, store, k, []byte(k), nil)
	}
	// b/3.jpg already had its notification.
	info, err := store.Stat(ctx, objstore.BucketRaw, "b/3.jpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.Mark(ctx, ingest.UploadFromInfo(info).ID()); err != nil {
		t.Fatal(err)
	}
	r := &ingest.Reconciler{Store: store, Bucket: objstore.BucketRaw, Pub: ingest.NewPublisher(stage.PublisherOf(env.JS), ledger), Log: zerolog.Nop()}
	res, err := r.Once(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Listed != 3 || res.Published != 2 {
		t.Fatalf("first pass %+v, want 3 listed and 2 published", res)
	}
	res, err = r.Once(ctx)
	if err != nil || res.Published != 0 {
		t.Fatalf("second pass %+v (%v): want nothing published", res, err)
	}
	if k := keys(uploads(t, env.JS)); !reflect.DeepEqual(k, []string{"a/1.jpg", "a/2.jpg"}) {
		t.Fatalf("events for %q", k)
	}
	// Objects younger than the grace period are left to their notification.
	putBytes(t, store, "c/new.jpg", []byte("new"), nil)
	r.Grace = time.Hour
	if res, err := r.Once(ctx); err != nil || res.Recent != 1 || res.Published != 0 {
		t.Fatalf("grace pass %+v (%v): want the new object skipped", res, err)
	}
}

// TestReconcilerWaitsForTheLedger: events published by someone else (MinIO)
// while the ledger was not running are queued on its consumer; a pass with
// LedgerWait publishes nothing until the ledger has recorded them, and
// then still nothing, since every object has its event.
func TestReconcilerWaitsForTheLedger(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, 2*time.Minute)
	store := objstore.NewJetStream(env.JS)
	if err := store.EnsureBucket(ctx, objstore.BucketRaw); err != nil {
		t.Fatal(err)
	}
	ledger := openLedger(t, env.JS)
	const n = 5
	for i := range n {
		key := fmt.Sprintf("normal/%d.jpg", i)
		putBytes(t, store, key, []byte(key), nil)
		info, err := store.Stat(ctx, objstore.BucketRaw, key)
		if err != nil {
			t.Fatal(err)
		}
		// The notification of another publisher: no eyeflow Msg-Id, no mark.
		data, err := json.Marshal(schemas.NewUploadEvent(ingest.UploadFromInfo(info)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.Publish(ctx, schemas.SubjectUploads, data); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer's pending count follows the stream a moment later.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		backlog, err := ledger.Backlog(ctx)
		if err == nil && backlog == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger backlog %d (%v), want %d", backlog, err, n)
		}
	}
	r := &ingest.Reconciler{Store: store, Bucket: objstore.BucketRaw, Pub: ingest.NewPublisher(stage.PublisherOf(env.JS), ledger),
		LedgerWait: 300 * time.Millisecond, Log: zerolog.Nop()}
	if res, err := r.Once(ctx); !errors.Is(err, ingest.ErrLedgerBehind) || res.Published != 0 {
		t.Fatalf("pass with the ledger behind: %+v, %v; want ErrLedgerBehind and nothing published", res, err)
	}
	stagetest.Run(t, env.JS, ingest.LedgerProcessor(ledger, zerolog.Nop(), stage.NewMetrics(prometheus.NewRegistry())))
	r.LedgerWait = 30 * time.Second
	for pass := range 2 {
		res, err := r.Once(ctx)
		if err != nil || res.Listed != n || res.Published != 0 {
			t.Fatalf("pass %d after the ledger caught up: %+v, %v; want %d listed and nothing published", pass+1, res, err, n)
		}
	}
	if got := len(uploads(t, env.JS)); got != n {
		t.Fatalf("%d upload events for %d objects", got, n)
	}
}

func TestPlanUsesImageFolderLayout(t *testing.T) {
	root := t.TempDir()
	write := func(rel string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"data/cataract/a.jpg", "data/normal/b c.jpg", "data/normal/.DS_Store", "data/.git/x", "single.png"} {
		write(f)
	}
	tests := []struct {
		name  string
		paths []string
		opts  ingest.PutOptions
		want  []string
	}{
		{"folder", []string{filepath.Join(root, "data")}, ingest.PutOptions{}, []string{"cataract/a.jpg", "normal/b c.jpg"}},
		{"folder with prefix", []string{filepath.Join(root, "data")}, ingest.PutOptions{Prefix: "clinic-1"}, []string{"clinic-1/cataract/a.jpg", "clinic-1/normal/b c.jpg"}},
		{"single file", []string{filepath.Join(root, "single.png")}, ingest.PutOptions{}, []string{"single.png"}},
		{"single file with class", []string{filepath.Join(root, "single.png")}, ingest.PutOptions{Class: "amd"}, []string{"amd/single.png"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := ingest.Plan(tt.paths, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range files {
				got = append(got, f.Key)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("keys %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := ingest.Plan([]string{filepath.Join(root, "missing")}, ingest.PutOptions{}); err == nil {
		t.Fatal("a missing path must be an error")
	}
}

func TestPutUploadsFilesAndCountsThem(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	store := objstore.NewJetStream(env.JS)
	if err := store.EnsureBucket(ctx, objstore.BucketRaw); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, f := range []string{"cataract/1.jpg", "cataract/2.jpg", "normal/3.png"} {
		p := filepath.Join(root, f)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, bytes.Repeat([]byte(f), 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := ingest.Plan([]string{root}, ingest.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var progress int
	sum, err := ingest.Put(ctx, store, files, ingest.PutOptions{Progress: func(done, total int, _ int64) { progress = max(progress, done) }})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Files != 3 || sum.Failed != 0 || sum.Bytes != 14000+14000+12000 || progress != 3 {
		t.Fatalf("summary %+v, progress %d", sum, progress)
	}
	info, err := store.Stat(ctx, objstore.BucketRaw, "normal/3.png")
	if err != nil || info.ContentType != "image/png" {
		t.Fatalf("stat %+v (%v): want image/png", info, err)
	}
}

func TestLedgerStageRecordsForeignEvents(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	ledger := openLedger(t, env.JS)
	stagetest.Run(t, env.JS, ingest.LedgerProcessor(ledger, zerolog.Nop(), stage.NewMetrics(prometheus.NewRegistry())))
	// An event published by someone else (MinIO) without a Msg-Id.
	up := schemas.Upload{Bucket: "raw", Key: "x/y z.jpg", ETag: "abc"}
	data, _ := json.Marshal(schemas.NewUploadEvent(up))
	if _, err := env.JS.Publish(ctx, schemas.SubjectUploads, data); err != nil {
		t.Fatal(err)
	}
	testenv.WaitConsumerIdle(t, env.JS, bus.StreamUploads, bus.ConsumerIngestLedger)
	has, err := ledger.Has(ctx, up.ID())
	if err != nil || !has {
		t.Fatalf("ledger has %s: %v %v", up.ID(), has, err)
	}
}

// openLedger is the topology's ledger, as the runtime's caller opens it.
func openLedger(t *testing.T, js jetstream.JetStream) *ingest.Ledger {
	t.Helper()
	return ingest.NewLedger(stagetest.Bucket(t, js, bus.KVUploads), stage.StreamReaderOf(js))
}
