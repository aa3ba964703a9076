package objstore_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7/pkg/notification"
	"github.com/nats-io/nats.go/jetstream"

	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/schemas"
)

func newS3(t *testing.T, m *testenv.MinIOServer) *objstore.S3Store {
	t.Helper()
	s, err := objstore.NewS3(objstore.S3Config{
		Endpoint:  m.Endpoint,
		AccessKey: m.AccessKey,
		SecretKey: m.SecretKey,
		Region:    "us-east-1",
		PartSize:  5 << 20, // S3's minimum, so that tests exercise multipart puts
	})
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return s
}

func TestS3Contract(t *testing.T) {
	m := testenv.MinIO(t, testenv.MinIOOptions{})
	testContract(t, newS3(t, m))
}

func TestNewS3Config(t *testing.T) {
	const secret = "top-secret-value"
	tests := []struct {
		name     string
		endpoint string
		ok       bool
	}{
		{"http", "http://127.0.0.1:9000", true},
		{"https", "https://s3.example.com", true},
		{"trailing slash", "http://127.0.0.1:9000/", true},
		{"no scheme", "127.0.0.1:9000", false},
		{"ftp", "ftp://127.0.0.1:9000", false},
		{"path", "http://127.0.0.1:9000/bucket", false},
		{"userinfo", "http://user:" + secret + "@127.0.0.1:9000", false},
		{"bad url", "http://[::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := objstore.S3Config{Endpoint: tt.endpoint, AccessKey: "ak", SecretKey: secret}
			_, err := objstore.NewS3(cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("NewS3(%q) err = %v, want ok=%v", tt.endpoint, err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the secret: %v", err)
			}
			var logged bytes.Buffer
			slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "s3", cfg)
			for _, s := range []string{cfg.String(), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg), logged.String()} {
				if strings.Contains(s, secret) {
					t.Errorf("formatted config leaks the secret: %s", s)
				}
			}
		})
	}
}

// MinIO with the NATS target publishes an S3 event into a JetStream stream,
// which eyeflow's schema decodes back to the original key.
func TestS3NATSNotification(t *testing.T) {
	srv, js := startNATS(t)
	ctx := testContext(t)
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "UPLOADS",
		Subjects: []string{testenv.MinIONATSSubject},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := testenv.MinIO(t, testenv.MinIOOptions{NATSAddress: srv.Addr().String()})
	if m.ARN != "arn:minio:sqs::EYEFLOW:nats" {
		t.Errorf("ARN = %q", m.ARN)
	}
	s := newS3(t, m)
	if err := s.EnsureBucket(ctx, objstore.BucketRaw); err != nil {
		t.Fatal(err)
	}
	// Twice: the second call must not add a second rule.
	for range 2 {
		if err := s.EnableNATSNotifications(ctx, objstore.BucketRaw, m.ARN); err != nil {
			t.Fatalf("EnableNATSNotifications: %v", err)
		}
	}
	cfg, err := s.Client().GetBucketNotification(ctx, objstore.BucketRaw)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.QueueConfigs) != 1 || cfg.QueueConfigs[0].Queue != m.ARN ||
		len(cfg.QueueConfigs[0].Events) != 1 || cfg.QueueConfigs[0].Events[0] != notification.ObjectCreatedAll {
		t.Errorf("notification config = %+v, want one queue rule for %s on %s", cfg.QueueConfigs, m.ARN, notification.ObjectCreatedAll)
	}

	const key = "patients/P 42/left+eye ü.jpg"
	data := []byte("fundus image bytes")
	put(t, s, objstore.BucketRaw, key, data, objstore.PutOptions{
		ContentType: "image/jpeg",
		Metadata:    map[string]string{"patient-id": "P-42"},
	})

	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
	if err != nil {
		t.Fatalf("no event on %s: %v", testenv.MinIONATSSubject, err)
	}
	ev, err := schemas.DecodeS3Event(msg.Data())
	if err != nil {
		t.Fatalf("DecodeS3Event(%s): %v", msg.Data(), err)
	}
	ups, err := ev.Uploads()
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 1 {
		t.Fatalf("got %d uploads, want 1: %s", len(ups), msg.Data())
	}
	u := ups[0]
	if u.Key != key || u.Bucket != objstore.BucketRaw || u.Size != int64(len(data)) {
		t.Errorf("upload = %+v, want key %q in %s, size %d (event %s)", u, key, objstore.BucketRaw, len(data), msg.Data())
	}
	if u.Metadata["patient-id"] != "P-42" || u.ContentType != "image/jpeg" {
		t.Errorf("upload metadata %v, content type %q (event %s)", u.Metadata, u.ContentType, msg.Data())
	}
	if !strings.HasPrefix(ev.EventName, "s3:ObjectCreated:") {
		t.Errorf("EventName = %q", ev.EventName)
	}
}
