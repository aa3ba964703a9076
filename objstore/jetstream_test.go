package objstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"eyeflow/objstore"
)

// startNATS runs an embedded JetStream server on a random 127.0.0.1 port and
// returns it with a connected JetStream client.
func startNATS(t *testing.T) (*server.Server, jetstream.JetStream) {
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
