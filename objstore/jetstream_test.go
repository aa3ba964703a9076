package objstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"eyeflow/objstore"
)

// startNATS runs an embedded JetStream server on a random 127.0.0.1 port and
// returns it with a connected JetStream client.
func startNATS(t testing.TB) (*server.Server, jetstream.JetStream) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready after 10s")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return srv, js
}

func TestJetStreamContract(t *testing.T) {
	_, js := startNATS(t)
	testContract(t, objstore.NewJetStream(js, objstore.WithStorage(jetstream.FileStorage), objstore.WithReplicas(1)))
}

// EnsureBucket creates the object store with the configured storage and
// replicas; ETag is the lowercase hex SHA-256 of the content.
func TestJetStreamBucketConfigAndETag(t *testing.T) {
	_, js := startNATS(t)
	ctx := testContext(t)
	s := objstore.NewJetStream(js, objstore.WithStorage(jetstream.MemoryStorage), objstore.WithChunkSize(512<<10))
	if err := s.EnsureBucket(ctx, objstore.BucketModels); err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, objstore.BucketModels)
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Storage() != jetstream.MemoryStorage || st.Replicas() != 1 {
		t.Errorf("storage %v replicas %d, want memory and 1", st.Storage(), st.Replicas())
	}
	info := put(t, s, objstore.BucketModels, "model.onnx", []byte("abc"), objstore.PutOptions{})
	// sha256("abc")
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if info.ETag != want {
		t.Errorf("ETag = %q, want %q", info.ETag, want)
	}
	oi, err := obs.GetInfo(ctx, "model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if info.VersionID != oi.NUID {
		t.Errorf("VersionID = %q, want NUID %q", info.VersionID, oi.NUID)
	}
}

// A bucket deleted behind the store's back is reported as not found, and a
// recreated one is found again (the cached handle is dropped).
func TestJetStreamBucketDeletedAndRecreated(t *testing.T) {
	_, js := startNATS(t)
	ctx := testContext(t)
	s := objstore.NewJetStream(js)
	if err := s.EnsureBucket(ctx, objstore.BucketRaw); err != nil {
		t.Fatal(err)
	}
	put(t, s, objstore.BucketRaw, "k", []byte("v"), objstore.PutOptions{})
	if err := js.DeleteObjectStore(ctx, objstore.BucketRaw); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, objstore.BucketRaw, "k"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Stat after bucket deletion: %v, want ErrNotFound", err)
	}
	if err := s.EnsureBucket(ctx, objstore.BucketRaw); err != nil {
		t.Fatal(err)
	}
	put(t, s, objstore.BucketRaw, "k", []byte("v2"), objstore.PutOptions{})
	get(t, s, objstore.BucketRaw, "k", []byte("v2"))
}

// Links show an object under a second name without storing it again: Get,
// Stat and List of the link see the target's bytes, size and ETag under the
// link's key; a link to a link points at the target; a broken link reads
// as not found and lists as nothing; a key that holds an object cannot
// become a link; Copy onto a link replaces it.
func TestJetStreamLinks(t *testing.T) {
	_, js := startNATS(t)
	ctx := testContext(t)
	s := objstore.NewJetStream(js)
	var _ objstore.Linker = s
	if err := s.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
		t.Fatal(err)
	}
	const b = objstore.BucketProcessed
	src := put(t, s, b, "resized/a.png", []byte("pixels of a"), objstore.PutOptions{ContentType: "image/png"})
	time.Sleep(20 * time.Millisecond) // the link is placed later than the object
	info, err := s.Link(ctx, b, "resized/a.png", b, "ds/train/amd/a.png")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "ds/train/amd/a.png" || info.ETag != src.ETag || info.Size != src.Size {
		t.Errorf("Link = %+v, want the target's etag and size under the link's key", info)
	}
	if _, err := s.Link(ctx, b, "ds/train/amd/a.png", b, "ds/test/amd/a.png"); err != nil {
		t.Fatalf("link to a link: %v", err)
	}
	for _, key := range []string{"ds/train/amd/a.png", "ds/test/amd/a.png"} {
		rc, gi, err := s.Get(ctx, b, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(data) != "pixels of a" || gi.Key != key || gi.ETag != src.ETag {
			t.Errorf("get %s = %q (%+v), %v", key, data, gi, err)
		}
		si, err := s.Stat(ctx, b, key)
		if err != nil || si.Key != key || si.ETag != src.ETag || si.Size != src.Size || si.ContentType != "image/png" {
			t.Errorf("stat %s = %+v, %v", key, si, err)
		}
		// Modified is when the link was placed, as a copy's would be: the
		// trainer waits for the dataset to settle by it.
		if !si.Modified.After(src.Modified) {
			t.Errorf("stat %s: modified %s, not after the object's %s", key, si.Modified, src.Modified)
		}
	}
	var listed []objstore.Info
	for li, err := range s.List(ctx, b, "ds/") {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, li)
	}
	if len(listed) != 2 || listed[0].Key != "ds/test/amd/a.png" || listed[1].Key != "ds/train/amd/a.png" || listed[0].ETag != src.ETag || listed[1].Size != src.Size ||
		!listed[0].Modified.After(src.Modified) || !listed[1].Modified.After(src.Modified) {
		t.Errorf("list = %+v", listed)
	}
	// A key holding an object of its own is not turned into a link.
	put(t, s, b, "ds/train/amd/b.png", []byte("b"), objstore.PutOptions{})
	if _, err := s.Link(ctx, b, "resized/a.png", b, "ds/train/amd/b.png"); !errors.Is(err, objstore.ErrNotLinkable) {
		t.Errorf("link over an object: %v, want ErrNotLinkable", err)
	}
	// A missing source is not linked.
	if _, err := s.Link(ctx, b, "resized/missing.png", b, "ds/train/amd/c.png"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("link to a missing object: %v, want ErrNotFound", err)
	}
	// Copy onto a link replaces it with an object of its own.
	put(t, s, b, "resized/d.png", []byte("d"), objstore.PutOptions{})
	if _, err := s.Copy(ctx, b, "resized/d.png", b, "ds/test/amd/a.png"); err != nil {
		t.Fatal(err)
	}
	if si, err := s.Stat(ctx, b, "ds/test/amd/a.png"); err != nil || si.Size != 1 {
		t.Errorf("after copy onto a link: %+v, %v", si, err)
	}
	// The target deleted: the link reads as missing and lists as nothing.
	obs, err := js.ObjectStore(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(ctx, "resized/a.png"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, b, "ds/train/amd/a.png"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("stat of a broken link: %v, want ErrNotFound", err)
	}
	if _, _, err := s.Get(ctx, b, "ds/train/amd/a.png"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("get of a broken link: %v, want ErrNotFound", err)
	}
	for li, err := range s.List(ctx, b, "ds/train/") {
		if err != nil || li.Key == "ds/train/amd/a.png" {
			t.Errorf("list after the target went: %+v, %v", li, err)
		}
	}
}

// LinkNew places a link in one publish where nothing was, reads like Link's
// (also through the client's own reader), and leaves whatever is already
// there: a link, an object, a deleted object.
func TestJetStreamLinkNew(t *testing.T) {
	s, js, ctx := processedStore(t)
	const b = objstore.BucketProcessed
	src := put(t, s, b, "resized/a.png", []byte("pixels of a"), objstore.PutOptions{ContentType: "image/png"})
	put(t, s, b, "resized/b.png", []byte("pixels of b"), objstore.PutOptions{})
	if err := s.LinkNew(ctx, b, "resized/a.png", b, "ds/train/amd/a.png"); err != nil {
		t.Fatal(err)
	}
	got := get(t, s, b, "ds/train/amd/a.png", []byte("pixels of a"))
	if got.ETag != src.ETag || got.ContentType != "image/png" {
		t.Errorf("get of the new link = %+v, want the target's ETag and content type", got)
	}
	// The meta message is the client's own: its reader follows the link.
	obs, err := js.ObjectStore(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := obs.GetBytes(ctx, "ds/train/amd/a.png"); err != nil || string(data) != "pixels of a" {
		t.Errorf("client read of the link = %q, %v", data, err)
	}
	if oi, err := obs.GetInfo(ctx, "ds/train/amd/a.png"); err != nil || oi.Opts == nil || oi.Opts.Link == nil ||
		oi.Opts.Link.Bucket != b || oi.Opts.Link.Name != "resized/a.png" || oi.NUID == "" {
		t.Errorf("client info of the link = %+v, %v", oi, err)
	}

	// Whatever is there stays: the same link, a link elsewhere, an object,
	// a deleted object.
	put(t, s, b, "ds/train/amd/obj.png", []byte("object"), objstore.PutOptions{})
	put(t, s, b, "ds/train/amd/gone.png", []byte("gone"), objstore.PutOptions{})
	if err := obs.Delete(ctx, "ds/train/amd/gone.png"); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"ds/train/amd/a.png", "ds/train/amd/obj.png", "ds/train/amd/gone.png"} {
		if err := s.LinkNew(ctx, b, "resized/b.png", b, dst); !errors.Is(err, objstore.ErrExists) {
			t.Errorf("LinkNew onto %s: %v, want ErrExists", dst, err)
		}
	}
	get(t, s, b, "ds/train/amd/a.png", []byte("pixels of a"))
	get(t, s, b, "ds/train/amd/obj.png", []byte("object"))
	if _, err := s.Stat(ctx, b, "ds/train/amd/gone.png"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("stat of the deleted object after LinkNew: %v, want ErrNotFound", err)
	}

	// The source is not read: a link to a missing object is placed and
	// reads as not found, like any broken link.
	if err := s.LinkNew(ctx, b, "resized/missing.png", b, "ds/train/amd/c.png"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, b, "ds/train/amd/c.png"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("get of a link to nothing: %v, want ErrNotFound", err)
	}
	if err := s.LinkNew(ctx, "no-such-bucket", "x", "no-such-bucket", "y"); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("LinkNew in a missing bucket: %v, want ErrNotFound", err)
	}
}

// An object of a few chunks is read with direct gets and checked against
// its meta: a chunk whose bytes do not match the digest is refused, not
// returned. Objects on either side of the limit read whole.
func TestJetStreamGetChecksTheChunk(t *testing.T) {
	s, js, ctx := processedStore(t)
	const b = objstore.BucketProcessed
	put(t, s, b, "resized/a.png", []byte("pixels of a"), objstore.PutOptions{})
	obs, err := js.ObjectStore(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	oi, err := obs.GetInfo(ctx, "resized/a.png")
	if err != nil {
		t.Fatal(err)
	}
	// Same length, other bytes, appended to the object's chunk subject.
	if _, err := js.Publish(ctx, "$O."+b+".C."+oi.NUID, []byte("pixels of b")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, b, "resized/a.png"); !errors.Is(err, jetstream.ErrDigestMismatch) {
		t.Errorf("get of a corrupted chunk: %v, want ErrDigestMismatch", err)
	}
	if _, err := js.Publish(ctx, "$O."+b+".C."+oi.NUID, []byte("longer pixels")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, b, "resized/a.png"); err == nil {
		t.Error("get of a chunk longer than the object: no error")
	}

	// Objects of a few chunks (read chunk by chunk) and of many (streamed),
	// with other objects' chunks stored between theirs.
	small := objstore.NewJetStream(js, objstore.WithChunkSize(1000))
	sizes := []int{2000, 2500, 3999, 4000, 4001, 30_000}
	for i, n := range sizes {
		put(t, small, b, fmt.Sprintf("chunks/%d", n), randomBytes(uint64(100+i), n), objstore.PutOptions{})
		put(t, small, b, fmt.Sprintf("between/%d", n), randomBytes(uint64(200+i), 1500), objstore.PutOptions{})
	}
	for i, n := range sizes {
		get(t, s, b, fmt.Sprintf("chunks/%d", n), randomBytes(uint64(100+i), n))
	}
	// A chunk of a three-chunk object altered: refused.
	oi, err = obs.GetInfo(ctx, "chunks/2500")
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "OBJ_"+b)
	if err != nil {
		t.Fatal(err)
	}
	// Chunks of 1000, 1000 and 500 bytes: the first replaced at the end by
	// 1000 other bytes, so that the size still adds up.
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("$O."+b+".C."+oi.NUID), jetstream.WithPurgeKeep(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "$O."+b+".C."+oi.NUID, randomBytes(7, 1000)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, b, "chunks/2500"); !errors.Is(err, jetstream.ErrDigestMismatch) {
		t.Errorf("get of an object with an altered chunk: %v, want ErrDigestMismatch", err)
	}
}

// processedStore is a JetStream store on a server of its own, with the
// processed bucket created.
func processedStore(t *testing.T) (*objstore.JetStreamStore, jetstream.JetStream, context.Context) {
	t.Helper()
	_, js := startNATS(t)
	ctx := testContext(t)
	s := objstore.NewJetStream(js)
	if err := s.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
		t.Fatal(err)
	}
	return s, js, ctx
}
