package ingest_test

import (
	"bytes"
	"encoding/json"
	"eyeflow/internal/stagetest"
	"image/jpeg"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/demodata"
	"eyeflow/ingest"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/resize"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestMinIOEventFlowsThroughOnce is the S3 path end to end: an object put
// into a real MinIO arrives as an eye.uploads event sent by MinIO itself,
// passes the resize stage and comes out once, even when MinIO's queue
// replays the event and the reconciler lists the bucket afterwards.
func TestMinIOEventFlowsThroughOnce(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	addr := strings.TrimPrefix(env.URL, "nats://")
	minio := testenv.MinIO(t, testenv.MinIOOptions{NATSAddress: addr})
	ctx := testenv.Context(t, 3*time.Minute)
	store, err := objstore.NewS3(objstore.S3Config{Endpoint: minio.Endpoint, AccessKey: minio.AccessKey, SecretKey: minio.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.EnableNATSNotifications(ctx, objstore.BucketRaw, minio.ARN); err != nil {
		t.Fatal(err)
	}
	ledger := openLedger(t, env.JS)
	m := stage.NewMetrics(prometheus.NewRegistry())
	cfg := resize.DefaultConfig()
	cfg.Store = store
	cfg.Patients = stagetest.Patients(t, splitter.DefaultConfig().Salt)
	r, err := resize.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stagetest.Run(t, env.JS, ingest.LedgerProcessor(ledger, zerolog.Nop(), m))
	stagetest.Run(t, env.JS, resize.Processor(r, 2, zerolog.Nop(), m))

	img, err := demodata.Image("cataract", 3, demodata.Options{Width: 640, Height: 480})
	if err != nil {
		t.Fatal(err)
	}
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, img, nil); err != nil {
		t.Fatal(err)
	}
	const key = "cataract/left eye+1 ü.jpg"
	if _, err := store.Put(ctx, objstore.BucketRaw, key, bytes.NewReader(jpg.Bytes()), int64(jpg.Len()), objstore.PutOptions{ContentType: "image/jpeg", Metadata: map[string]string{"patient-id": "P 42"}}); err != nil {
		t.Fatal(err)
	}
	events := waitUploads(t, env.JS, 1)
	if events[0].Key != key || events[0].Metadata["patient-id"] != "P 42" {
		t.Fatalf("MinIO's event decoded to %+v", events[0])
	}
	raw := testenv.StreamMessages(t, env.JS, bus.StreamUploads, schemas.SubjectUploads)[0]
	var ev schemas.S3Event
	if err := json.Unmarshal(raw.Data(), &ev); err != nil || ev.Schema != "" || ev.Records[0].EventSource != "minio:s3" {
		t.Fatalf("event was not sent by MinIO: %s", raw.Data())
	}
	// MinIO's queue_dir replay sends the same event again, without a Msg-Id.
	if _, err := env.JS.Publish(ctx, schemas.SubjectUploads, raw.Data()); err != nil {
		t.Fatal(err)
	}
	testenv.WaitConsumerIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	testenv.WaitConsumerIdle(t, env.JS, bus.StreamUploads, bus.ConsumerIngestLedger)
	// The reconciler sees the object already has an event.
	rec := &ingest.Reconciler{Store: store, Bucket: objstore.BucketRaw, Pub: ingest.NewPublisher(stage.PublisherOf(env.JS), ledger), Log: zerolog.Nop()}
	res, err := rec.Once(ctx)
	if err != nil || res.Listed != 1 || res.Published != 0 {
		t.Fatalf("reconciler %+v (%v): want the object listed and nothing published", res, err)
	}
	testenv.WaitConsumerIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)

	out := testenv.StreamMessages(t, env.JS, bus.StreamResized, schemas.SubjectResized)
	if len(out) != 1 {
		t.Fatalf("%d eye.resized events for one upload, want 1", len(out))
	}
	rz, err := schemas.DecodeResized(out[0].Data())
	if err != nil {
		t.Fatal(err)
	}
	// The patient-id metadata MinIO delivered arrives as its salted hash only.
	if rz.Source.Key != key || rz.Label != "cataract" || rz.Width != 640 || rz.PatientID != "" ||
		rz.PatientHash != cfg.Patients.Of("P 42") || rz.PatientSource != schemas.PatientFromMetadata {
		t.Fatalf("resized %+v", rz)
	}
	if _, err := store.Stat(ctx, rz.Processed.Bucket, rz.Processed.Key); err != nil {
		t.Fatalf("processed PNG missing from MinIO: %v", err)
	}
}
