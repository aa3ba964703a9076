package resize_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/resize"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestHostileKeysThroughStage runs the real resize stage on embedded NATS
// with uploads whose keys try to climb out of their folder, are too long or
// carry bytes that a log, a JSON re-encoding or a file system would alter.
// Each is dead-lettered as bad_key before anything is read; the good keys
// are resized, and every object the stage wrote is under resized/ in the
// processed bucket whatever the upload key was.
func TestHostileKeysThroughStage(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- stage.Run(ctx, f.env.JS, resize.Processor(f.r, 2, zerolog.Nop(), stage.NewMetrics(reg)))
	}()
	t.Cleanup(func() { cancel(); <-done })

	jpg := fundusJPEG(t, 320, 240)
	hostile := []string{
		"../../etc/passwd",
		"amd/../../../outside.jpg",
		`amd\..\..\win.jpg`,
		"/absolute/amd/x.jpg",
		"%2e%2e/%2e%2e/encoded.jpg",
		"amd%2F..%2F..%2Fencoded2.jpg",
		"amd/" + strings.Repeat("a", 1100) + ".jpg",
		"amd/ctrl\x00nul.jpg",
		"amd/new\nline.jpg",
		"amd/esc\x1b[2Jcls.jpg",
		"amd/bad\xff\xfeutf8.jpg",
		"amd//double.jpg",
	}
	good := []string{"amd/fine.jpg", "normal/ok dots..name.jpg", "x.jpg"}
	publish := func(ev schemas.S3Event) {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.env.JS.Publish(testenv.Context(t, 10*time.Second), schemas.SubjectUploads, data); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range good {
		publish(f.put(t, k, jpg, nil))
	}
	for i, k := range hostile {
		// The object need not exist: the key is refused before a read.
		publish(schemas.NewUploadEvent(schemas.Upload{Bucket: objstore.BucketRaw, Key: k, Size: int64(len(jpg)), ETag: string(rune('a' + i))}))
	}
	testenv.WaitConsumerIdle(t, f.env.JS, bus.StreamUploads, bus.ConsumerResize)

	resized := map[string]schemas.Resized{}
	for _, msg := range testenv.StreamMessages(t, f.env.JS, bus.StreamResized, schemas.SubjectResized) {
		r, err := schemas.DecodeResized(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		resized[r.Source.Key] = r
		if r.Processed.Bucket != objstore.BucketProcessed || objkey.Under("resized/", r.Processed.Key) != nil {
			t.Errorf("%q written to %s/%s, outside processed/resized/", r.Source.Key, r.Processed.Bucket, r.Processed.Key)
		}
	}
	for _, k := range good {
		if _, ok := resized[k]; !ok {
			t.Errorf("good key %q was not resized", k)
		}
	}
	if len(resized) != len(good) {
		t.Errorf("%d resized events, want %d", len(resized), len(good))
	}

	dead := map[string]string{}
	for _, msg := range testenv.StreamMessages(t, f.env.JS, bus.StreamDLQ, schemas.DLQSubject(schemas.StageResize)) {
		dl, err := schemas.DecodeDeadLetter(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		ev, err := schemas.DecodeS3Event(dl.Payload)
		if err != nil {
			t.Fatal(err)
		}
		ups, _ := ev.Uploads()
		dead[ups[0].Key] = dl.Reason
	}
	for _, k := range hostile {
		t.Run(strings.ToValidUTF8(k[:min(len(k), 40)], "?"), func(t *testing.T) {
			if dead[k] != schemas.ReasonBadKey {
				t.Errorf("key %q: dead letter reason %q, want %q", k, dead[k], schemas.ReasonBadKey)
			}
		})
	}

	// Nothing outside resized/ appeared in the processed bucket.
	for info, err := range f.store.List(testenv.Context(t, time.Minute), objstore.BucketProcessed, "") {
		if err != nil {
			t.Fatal(err)
		}
		if objkey.Under("resized/", info.Key) != nil {
			t.Errorf("processed bucket holds %q, outside resized/", info.Key)
		}
	}
}
