package e2e_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/ingest"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestClusterNodeLossMidRun: on a three-node cluster with R3 streams, with
// two instances of every stage, one node is killed in the middle of a
// 2,000-image run and brought back; every image still gets exactly one
// prediction per env.
func TestClusterNodeLossMidRun(t *testing.T) {
	const n = 2000
	c := testenv.Cluster(t, 3)
	store := setup(t, c.URL, 3)
	ups := makeUploads(t, n)
	want := expected(ups)
	_, js := testenv.Connect(t, c.URL)
	// Two instances of every stage share each durable consumer, as scaled-out
	// processes would.
	startPipeline(t, c.URL, 3)
	startPipeline(t, c.URL, 3)

	put := make(chan error, 1)
	go func() { put <- putAll(store, ups) }()
	// Kill a node once a third of prod's predictions are out.
	deadline := time.Now().Add(5 * time.Minute)
	for predictedSoFar(t, js)["prod"] < n/3 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	c.Kill(1)
	time.Sleep(5 * time.Second)
	c.Restart(1)
	if err := <-put; err != nil {
		t.Fatalf("uploads during the node loss: %v", err)
	}
	waitPredictions(t, js, want, 10*time.Minute)
}

// TestProcessorKilledMidBatch: an instance of every stage dies without a
// graceful shutdown while it holds messages; a new instance takes over.
func TestProcessorKilledMidBatch(t *testing.T) {
	const n = 400
	env := testenv.NATS(t, testenv.TopologyOptions())
	store := setup(t, env.URL, 1)
	ups := makeUploads(t, n)
	first := startPipeline(t, env.URL, 1)
	putUploads(t, store, ups)
	deadline := time.Now().Add(5 * time.Minute)
	for predictedSoFar(t, env.JS)["prod"] < n/4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	first.kill()
	startPipeline(t, env.URL, 1)
	waitPredictions(t, env.JS, expected(ups), 5*time.Minute)
}

// TestSlowClassifier: while the classifier is slow, uploads are still
// accepted, the classifier holds at most MaxAckPending messages (its memory
// bound), the lag shows on /metrics, and everything drains once it is fast.
func TestSlowClassifier(t *testing.T) {
	const n, maxAckPending = 300, 16
	env := testenv.NATS(t, testenv.TopologyOptions())
	store := objstore.NewJetStream(env.JS)
	setupWith(t, env.JS, store, 1, func(o *bus.Options) { o.MaxAckPending = maxAckPending })
	p := startPipeline(t, env.URL, 1)
	p.cls.SetDrillDelay(500 * time.Millisecond)
	ups := makeUploads(t, n)
	start := time.Now()
	putUploads(t, store, ups)
	t.Logf("%d uploads accepted in %s while the classifier was slow", n, time.Since(start).Round(time.Millisecond))

	cons, err := env.JS.Consumer(context.Background(), bus.StreamSplits, bus.ClassifierConsumer(schemas.EnvProd))
	if err != nil {
		t.Fatal(err)
	}
	var sawLag bool
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !sawLag; {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending > maxAckPending {
			t.Fatalf("classifier holds %d unacknowledged messages, MaxAckPending is %d", info.NumAckPending, maxAckPending)
		}
		sawLag = info.NumPending > 0 && metricValue(t, p.metrics, "eyeflow_consumer_pending_messages", "consumer", bus.ClassifierConsumer(schemas.EnvProd)) > 0
		time.Sleep(250 * time.Millisecond)
	}
	if !sawLag {
		t.Fatal("the slow classifier's lag never showed on eyeflow_consumer_pending_messages")
	}
	p.cls.SetDrillDelay(0)
	waitPredictions(t, env.JS, expected(ups), 5*time.Minute)
}

// metricValue is the sum of a gauge or counter's series whose label has value.
func metricValue(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// TestMinIOOutageAndDuplicateReports: MinIO is down for a while in the
// middle of a run; the resize stage retries with backoff and nothing is
// dead-lettered. Afterwards MinIO's replay and the reconciler report the
// same objects again: still one prediction per image per env.
func TestMinIOOutageAndDuplicateReports(t *testing.T) {
	const n = 200
	env := testenv.NATS(t, testenv.TopologyOptions())
	minio := testenv.MinIO(t, testenv.MinIOOptions{NATSAddress: strings.TrimPrefix(env.URL, "nats://")})
	s3cfg := objstore.S3Config{Endpoint: minio.Endpoint, AccessKey: minio.AccessKey, SecretKey: minio.SecretKey}
	newS3 := func(jetstream.JetStream) objstore.Store {
		s, err := objstore.NewS3(s3cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	store := newS3(nil).(*objstore.S3Store)
	setupWith(t, env.JS, store, 1, nil)
	ctx := testenv.Context(t, 5*time.Minute)
	if err := store.EnableNATSNotifications(ctx, objstore.BucketRaw, minio.ARN); err != nil {
		t.Fatal(err)
	}
	p := startPipelineOn(t, env.URL, newS3)
	ups := makeUploads(t, n)
	putUploads(t, store, ups)
	// MinIO has reported every upload; now it goes away while the pipeline
	// is still reading them.
	for len(testenv.StreamMessages(t, env.JS, bus.StreamUploads, schemas.SubjectUploads)) < n {
		time.Sleep(20 * time.Millisecond)
	}
	minio.Stop()
	time.Sleep(8 * time.Second)
	minio.Start()
	want := expected(ups)
	waitPredictions(t, env.JS, want, 4*time.Minute)
	if metricValue(t, p.metrics, "eyeflow_messages_retried_total", "stage", schemas.StageResize) == 0 {
		t.Fatal("resize never retried: the outage did not hit the pipeline, so the test proved nothing")
	}

	// MinIO's queue replay: the same notifications again, without Msg-Ids.
	for _, m := range testenv.StreamMessages(t, env.JS, bus.StreamUploads, schemas.SubjectUploads)[:n/2] {
		if _, err := env.JS.Publish(ctx, schemas.SubjectUploads, m.Data()); err != nil {
			t.Fatal(err)
		}
	}
	// The reconciler lists the bucket: every object already has its event.
	ledger := ingest.NewLedger(stagetest.Bucket(t, env.JS, bus.KVUploads), stage.StreamReaderOf(env.JS))
	rec := &ingest.Reconciler{Store: store, Bucket: objstore.BucketRaw, Pub: ingest.NewPublisher(stage.PublisherOf(env.JS), ledger), Log: zerolog.Nop()}
	if res, err := rec.Once(ctx); err != nil || res.Published != 0 || res.Listed != n {
		t.Fatalf("reconciler %+v (%v): want %d listed, none published", res, err, n)
	}
	testenv.WaitConsumerIdle(t, env.JS, bus.StreamUploads, bus.ConsumerResize)
	waitPredictions(t, env.JS, want, time.Minute)
}
