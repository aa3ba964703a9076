package labelsink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/demodata"
	"eyeflow/ingest"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/labelsink"
	"eyeflow/processors/resize"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

type fixture struct {
	env   *testenv.NATSEnv
	store objstore.Store
	sink  *labelsink.Sink
	cfg   labelsink.Config
	ls    *recorder
	m     *stage.Metrics
}

// recorder stands in for Label Studio and records sync calls.
type recorder struct {
	mu    sync.Mutex
	calls []string
	srv   *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.calls = append(r.calls, req.Method+" "+req.URL.Path+" "+req.Header.Get("Authorization"))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"id": 7, "status": "queued"}`)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := testenv.NATS(t, testenv.TopologyOptions())
	store := objstore.NewJetStream(env.JS)
	ctx := testenv.Context(t, time.Minute)
	for _, b := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	ls := newRecorder(t)
	cfg := labelsink.DefaultConfig()
	cfg.Store = store
	cfg.LabelStudio = labelsink.LabelStudio{URL: ls.srv.URL, Token: "secret-token", StorageID: 7}
	sink, err := labelsink.New(ctx, stagetest.Bucket(t, env.JS, labelsink.KVBucket), stage.PublisherOf(env.JS), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, store: store, sink: sink, cfg: cfg, ls: ls, m: stage.NewMetrics(prometheus.NewRegistry())}
}

func (f *fixture) startRetrainStage(t *testing.T) {
	stagetest.Run(t, f.env.JS, labelsink.Processor(f.sink, zerolog.Nop(), f.m))
}

func fundusJPEG(t *testing.T, class string, i int) []byte {
	t.Helper()
	img, err := demodata.Image(class, i, demodata.Options{Width: 320, Height: 240})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (f *fixture) put(t *testing.T, bucket, key string, data []byte) objstore.Info {
	t.Helper()
	info, err := f.store.Put(testenv.Context(t, time.Minute), bucket, key, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func (f *fixture) get(t *testing.T, bucket, key string) ([]byte, objstore.Info) {
	t.Helper()
	rc, info, err := f.store.Get(testenv.Context(t, time.Minute), bucket, key)
	if err != nil {
		t.Fatalf("get %s/%s: %v", bucket, key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data, info
}

func (f *fixture) keys(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	var out []string
	for info, err := range f.store.List(testenv.Context(t, time.Minute), bucket, prefix) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Key)
	}
	return out
}

func pred(id, class string, conf float64, src schemas.ObjectRef) schemas.Prediction {
	return schemas.Prediction{
		Schema: schemas.SchemaPrediction, ImageID: id, Source: src, Split: schemas.SplitUnlabeled,
		Env: "prod", ModelName: "tiny", ModelVersion: "v1", PredictedClass: class, Confidence: conf,
		TopK: []schemas.ClassProb{{Class: class, Probability: conf}},
	}
}

func retrainEvent(eventID string, ps ...schemas.Prediction) schemas.Retrain {
	r := schemas.Retrain{Schema: schemas.SchemaRetrain, EventID: eventID, Kind: schemas.RetrainRequested, Reason: "test",
		Env: "prod", ModelVersion: "v1", AlertID: "alert-" + eventID, Time: time.Now().UTC()}
	for _, p := range ps {
		r.Samples = append(r.Samples, p.Source)
		r.Predictions = append(r.Predictions, p)
	}
	return r
}

func publishRetrain(t *testing.T, js jetstream.JetStream, r schemas.Retrain) {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(testenv.Context(t, 10*time.Second), &nats.Msg{Subject: schemas.SubjectRetrain, Data: data}); err != nil {
		t.Fatal(err)
	}
}

// settle waits until a consumer has acknowledged everything in its stream
// (the ack floor reaches the last sequence: right after a publish the
// pending count may still read 0).
func settle(t *testing.T, js jetstream.JetStream, stream, consumer string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	for {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		c, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.AckFloor.Stream >= s.CachedInfo().State.LastSeq && info.NumAckPending == 0 && info.NumPending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("consumer %s did not settle: %+v", consumer, info)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// testID is a valid image id (64 hex digits, schemas.ValidImageID) for n.
func testID(n int) string { return fmt.Sprintf("%064x", n) }

func TestTasksWrittenOnceAndSynced(t *testing.T) {
	// Image ids are SHA-256 hex (schemas.ValidImageID); these sort a, b, c.
	idA, idB, idC := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	f := newFixture(t)
	f.startRetrainStage(t)
	a := pred(idA, "glaucoma", 0.31, schemas.ObjectRef{Bucket: "raw", Key: "unlabeled/a.jpg"})
	b := pred(idB, "normal", 0.42, schemas.ObjectRef{Bucket: "raw", Key: "unlabeled/b.png"})
	c := pred(idC, "amd", 0.2, schemas.ObjectRef{Bucket: "raw", Key: "unlabeled/c.jpg"})
	publishRetrain(t, f.env.JS, retrainEvent("ev1", a, b))
	settle(t, f.env.JS, bus.StreamRetrain, bus.ConsumerLabelsink)
	_, first := f.get(t, "labeling", "tasks/"+idA+".json")
	// The same request again and another one sharing an image: one task
	// per image, the existing one untouched.
	publishRetrain(t, f.env.JS, retrainEvent("ev1", a, b))
	publishRetrain(t, f.env.JS, retrainEvent("ev2", b, c, a))
	settle(t, f.env.JS, bus.StreamRetrain, bus.ConsumerLabelsink)

	if got := f.keys(t, "labeling", "tasks/"); strings.Join(got, ",") != "tasks/"+idA+".json,tasks/"+idB+".json,tasks/"+idC+".json" {
		t.Fatalf("tasks %v, want one per image", got)
	}
	data, again := f.get(t, "labeling", "tasks/"+idA+".json")
	if again.VersionID != first.VersionID {
		t.Fatalf("task of image a rewritten: version %s then %s", first.VersionID, again.VersionID)
	}
	var task labelsink.Task
	if err := json.Unmarshal(data, &task); err != nil {
		t.Fatal(err)
	}
	if task.Data.Image != "s3://raw/unlabeled/a.jpg" || task.Meta.ImageID != idA || task.Meta.AlertID != "alert-ev1" ||
		task.Meta.Env != "prod" || task.Meta.ModelVersion != "v1" || len(task.Predictions) != 1 ||
		task.Predictions[0].Score != 0.31 || task.Predictions[0].Result[0].Value.Choices[0] != "glaucoma" ||
		task.Predictions[0].Result[0].FromName != labelsink.ChoicesTag || task.Predictions[0].Result[0].ToName != labelsink.ImageTag {
		t.Fatalf("task %s", data)
	}
	xml, _ := f.get(t, "labeling", labelsink.LabelConfig)
	if n := strings.Count(string(xml), "<Choice value="); n != 15 || !strings.Contains(string(xml), `<Choice value="glaucoma"/>`) {
		t.Fatalf("label config with %d choices:\n%s", n, xml)
	}
	// One sync per event: ev1's redelivery finds it synced.
	want := "POST /api/storages/s3/7/sync Token secret-token"
	if calls := f.ls.Calls(); len(calls) != 2 || calls[0] != want || calls[1] != want {
		t.Fatalf("Label Studio calls %q, want two of %q", calls, want)
	}
}

// annotationExport is what Label Studio's target storage writes for one
// submitted annotation: the annotation with its task nested.
func annotationExport(imageID, class string, cancelled bool, task labelsink.Task) []byte {
	result := []map[string]any{}
	if class != "" {
		result = append(result, map[string]any{"id": "r1", "from_name": labelsink.ChoicesTag, "to_name": labelsink.ImageTag,
			"type": "choices", "origin": "manual", "value": map[string]any{"choices": []string{class}}})
	}
	b, _ := json.Marshal(map[string]any{
		"id": 101, "result": result, "was_cancelled": cancelled, "ground_truth": false, "lead_time": 3.2,
		"completed_by": map[string]any{"id": 1, "email": "doc@example.org"},
		"task":         map[string]any{"id": 55, "data": task.Data, "meta": task.Meta, "project": 3, "is_labeled": true},
		"created_at":   "2025-03-01T12:00:00Z",
	})
	return b
}

func (f *fixture) task(t *testing.T, imageID string) labelsink.Task {
	t.Helper()
	data, _ := f.get(t, "labeling", "tasks/"+imageID+".json")
	var task labelsink.Task
	if err := json.Unmarshal(data, &task); err != nil {
		t.Fatal(err)
	}
	return task
}

// TestExportBecomesLabelledUpload runs the loop end to end on the embedded
// store: an unlabelled upload goes through resize and the splitter, a
// retrain request makes its task, Label Studio's export of the annotation
// turns into raw/<class>/<image-id>.jpg, which the watcher publishes as an
// upload and resize and the splitter place in a split with its label. The
// event's manifest lists the training split and the new label.
func TestExportBecomesLabelledUpload(t *testing.T) {
	f := newFixture(t)
	js := f.env.JS
	ctx := testenv.Context(t, 2*time.Minute)
	ledger := ingest.NewLedger(stagetest.Bucket(t, js, bus.KVUploads), stage.StreamReaderOf(js))
	wctx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = ingest.WatchJetStream(wctx, objstore.NewJetStream(js), objstore.BucketRaw, ingest.NewPublisher(stage.PublisherOf(js), ledger), zerolog.Nop())
	}()
	t.Cleanup(func() { stopWatch(); <-watchDone })
	m := f.m
	rcfg := resize.DefaultConfig()
	rcfg.Store = f.store
	scfg := splitter.DefaultConfig()
	scfg.Patients = stagetest.Patients(t, scfg.Salt)
	rcfg.Patients = scfg.Patients
	rz, err := resize.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	stagetest.Run(t, js, resize.Processor(rz, 1, zerolog.Nop(), m))
	sp, err := splitter.New(scfg, f.store)
	if err != nil {
		t.Fatal(err)
	}
	stagetest.Run(t, js, splitter.Processor(sp, zerolog.Nop(), m))
	f.startRetrainStage(t)

	// A training image (for the manifest) and the unlabelled one.
	f.put(t, "processed", "transformed_eye_dataset/train/normal/0123.png", []byte("png"))
	img := fundusJPEG(t, "cataract", 3)
	f.put(t, "raw", "scan 1.jpg", img) // no folder: no label
	splits := waitSplits(t, js, 1)
	un := splits[0]
	if un.Split != schemas.SplitUnlabeled || un.Label != "" {
		t.Fatalf("first split of %s: split %q label %q, want the unlabelled upload", un.Source.Key, un.Split, un.Label)
	}

	publishRetrain(t, js, retrainEvent("ev-loop", pred(un.ImageID, "normal", 0.3, un.Source)))
	settle(t, js, bus.StreamRetrain, bus.ConsumerLabelsink)
	task := f.task(t, un.ImageID)
	f.put(t, "labeling", "exports/101", annotationExport(un.ImageID, "cataract", false, task))
	if err := f.sink.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// Polling again finds nothing new.
	if err := f.sink.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	rawKey := "cataract/" + un.ImageID + ".jpg"
	if got, _ := f.get(t, "raw", rawKey); !bytes.Equal(got, img) {
		t.Fatalf("raw/%s does not hold the image", rawKey)
	}
	splits = waitSplits(t, js, 2)
	lab := splits[1]
	if lab.Label != "cataract" || lab.ImageID != un.ImageID || lab.Source.Key != rawKey || lab.Split == schemas.SplitUnlabeled {
		t.Fatalf("labelled split of %s: image %s label %q split %q, want image %s labelled cataract in train or a holdout", lab.Source.Key, lab.ImageID, lab.Label, lab.Split, un.ImageID)
	}

	manifest, _ := f.get(t, "labeling", "retrain/ev-loop/manifest.jsonl")
	lines := strings.Split(strings.TrimSpace(string(manifest)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"origin":"train"`) || !strings.Contains(lines[0], `"class":"normal"`) ||
		!strings.Contains(lines[1], `"key":"`+rawKey+`"`) || !strings.Contains(lines[1], `"class":"cataract"`) {
		t.Fatalf("manifest:\n%s", manifest)
	}
	var ready []schemas.Retrain
	for _, m := range testenv.StreamMessages(t, js, bus.StreamRetrain, schemas.SubjectRetrain) {
		r, err := schemas.DecodeRetrain(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == schemas.RetrainManifestReady {
			ready = append(ready, r)
		}
	}
	if len(ready) != 1 || ready[0].EventID != "ev-loop" || ready[0].Manifest == nil || ready[0].Manifest.Key != "retrain/ev-loop/manifest.jsonl" || ready[0].Labelled != 1 {
		t.Fatalf("manifest_ready events %+v, want one for ev-loop", ready)
	}
}

// waitSplits waits for n split events and returns them in order.
func waitSplits(t *testing.T, js jetstream.JetStream, n int) []schemas.Split {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var out []schemas.Split
		for _, m := range testenv.StreamMessages(t, js, bus.StreamSplits, schemas.SubjectSplitAll) {
			s, err := schemas.DecodeSplit(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d split events after 90s, want %d", len(out), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestMalformedExportsDeadLettered(t *testing.T) {
	f := newFixture(t)
	ctx := testenv.Context(t, time.Minute)
	f.put(t, "raw", "incoming/x.jpg", []byte("jpeg bytes"))
	src := schemas.ObjectRef{Bucket: "raw", Key: "incoming/x.jpg"}
	if _, err := f.sink.HandleRetrain(ctx, retrainEvent("ev-bad", pred(testID(1), "normal", 0.2, src))); err != nil {
		t.Fatal(err)
	}
	task := f.task(t, testID(1))
	taskExport := func(anns ...map[string]any) []byte {
		b, _ := json.Marshal(map[string]any{"id": 5, "data": task.Data, "meta": task.Meta, "annotations": anns})
		return b
	}
	choice := func(c string) map[string]any {
		return map[string]any{"type": "choices", "from_name": labelsink.ChoicesTag, "to_name": labelsink.ImageTag, "value": map[string]any{"choices": []string{c}}}
	}
	noSource := task
	noSource.Meta.SourceKey, noSource.Data.Image = "", "https://elsewhere/x.jpg"
	tests := []struct {
		name, reason string
		data         []byte
	}{
		{"not json", schemas.ReasonBadExport, []byte("this is not json")},
		{"not label studio", schemas.ReasonBadExport, []byte(`{"hello": "world"}`)},
		{"unknown class", schemas.ReasonUnknownClass, annotationExport(testID(1), "conjunctivitis", false, task)},
		{"empty result", schemas.ReasonEmptyAnnotation, annotationExport(testID(1), "", false, task)},
		{"cancelled", schemas.ReasonCancelledAnnotation, annotationExport(testID(1), "glaucoma", true, task)},
		{"task without annotations", schemas.ReasonEmptyAnnotation, taskExport()},
		{"conflicting annotations", schemas.ReasonConflictingAnnotations, taskExport(
			map[string]any{"result": []any{choice("glaucoma")}}, map[string]any{"result": []any{choice("normal")}})},
		{"no image source", schemas.ReasonMissingSource, annotationExport(testID(1), "glaucoma", false, noSource)},
		{"image gone", schemas.ReasonObjectMissing, func() []byte {
			gone := task
			gone.Meta.SourceKey = "incoming/deleted.jpg"
			return annotationExport(testID(1), "glaucoma", false, gone)
		}()},
		{"empty array", schemas.ReasonEmptyAnnotation, []byte(`[]`)},
	}
	for i, tt := range tests {
		f.put(t, "labeling", fmt.Sprintf("exports/bad-%02d.json", i), tt.data)
	}
	if err := f.sink.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.sink.PollOnce(ctx); err != nil { // processed files are not dead-lettered twice
		t.Fatal(err)
	}
	dls := testenv.StreamMessages(t, f.env.JS, bus.StreamDLQ, schemas.DLQSubject(schemas.StageLabelsink))
	if len(dls) != len(tests) {
		t.Fatalf("%d dead letters, want %d", len(dls), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := schemas.DecodeDeadLetter(dls[i].Data())
			if err != nil {
				t.Fatal(err)
			}
			wantSubject := fmt.Sprintf("s3://labeling/exports/bad-%02d.json", i)
			if d.Reason != tt.reason || d.Subject != wantSubject || !d.Permanent || d.Stage != schemas.StageLabelsink || len(d.Payload) == 0 {
				t.Fatalf("dead letter %+v, want reason %s for %s", d, tt.reason, wantSubject)
			}
		})
	}
	if keys := f.keys(t, "raw", "glaucoma/"); len(keys) != 0 {
		t.Fatalf("rejected exports made labelled uploads: %v", keys)
	}
	// The event's only image was rejected, so its manifest is due.
	if _, _, err := f.store.Get(ctx, "labeling", "retrain/ev-bad/manifest.jsonl"); err != nil {
		t.Fatalf("manifest of an event whose images were all rejected: %v", err)
	}
}

func TestLowConfidencePredictions(t *testing.T) {
	f := newFixture(t)
	ctx := testenv.Context(t, time.Minute)
	cfg := f.cfg
	cfg.LowConfidence = 0.5
	cfg.LabelStudio = labelsink.LabelStudio{}
	sink, err := labelsink.New(ctx, stagetest.Bucket(t, f.env.JS, labelsink.KVBucket), stage.PublisherOf(f.env.JS), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id       string
		conf     float64
		wantTask bool
	}{{testID(0x10), 0.2, true}, {testID(0x11), 0.8, false}, {testID(0x12), 0.5, false}}
	for _, tt := range tests {
		if _, err := sink.HandlePrediction(ctx, pred(tt.id, "normal", tt.conf, schemas.ObjectRef{Bucket: "raw", Key: "u/" + tt.id + ".jpg"})); err != nil {
			t.Fatal(err)
		}
		_, err := f.store.Stat(ctx, "labeling", "tasks/"+tt.id+".json")
		if got := err == nil; got != tt.wantTask {
			t.Errorf("%s (confidence %v): task written %v, want %v", tt.id, tt.conf, got, tt.wantTask)
		}
	}
}
