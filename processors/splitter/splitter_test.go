package splitter_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// countingStore counts copies per destination and can fail once right after
// a copy succeeded, as a connection lost before the reply would: the stage
// must retry without copying again.
type countingStore struct {
	objstore.Store
	mu       sync.Mutex
	copies   map[string]int
	failNext atomic.Bool
	injected atomic.Int64
}

func (s *countingStore) Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (objstore.Info, error) {
	info, err := s.Store.Copy(ctx, srcBucket, srcKey, dstBucket, dstKey)
	if err != nil {
		return info, err
	}
	s.mu.Lock()
	s.copies[dstKey]++
	s.mu.Unlock()
	if s.failNext.CompareAndSwap(true, false) {
		s.injected.Add(1)
		return objstore.Info{}, errors.New("injected: connection reset after the copy was stored")
	}
	return info, nil
}

// tinyPNG is a small valid PNG of one colour, standing in for resize's output.
func tinyPNG(t *testing.T, seed int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 4, 3))
	for i := range img.Pix {
		img.Pix[i] = byte(seed*31 + i)
	}
	img.Set(0, 0, color.RGBA{A: 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// image is one upload as resize would report it.
type upload struct {
	resized schemas.Resized
	png     []byte
}

// newUpload stores the processed PNG of original where resize puts it and
// returns the eye.resized event for it.
func newUpload(t *testing.T, store objstore.Store, original []byte, key, patient string) upload {
	t.Helper()
	sum := sha256.Sum256(original)
	id := hex.EncodeToString(sum[:])
	data := tinyPNG(t, int(sum[0]))
	outKey := "resized/" + id + ".png"
	info, err := store.Put(testenv.Context(t, 30*time.Second), objstore.BucketProcessed, outKey, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{ContentType: "image/png"})
	if err != nil {
		t.Fatal(err)
	}
	label := ""
	if dir := filepath.Dir(key); dir != "." {
		label = filepath.Base(dir)
	}
	return upload{png: data, resized: schemas.Resized{
		Schema: schemas.SchemaResized, ImageID: id, UploadID: "raw/" + key + "@etag-" + id[:8],
		Source: schemas.ObjectRef{Bucket: "raw", Key: key}, Width: 4, Height: 3, Format: "png",
		Label: label, PatientID: patient,
		Processed:    schemas.ObjectRef{Bucket: objstore.BucketProcessed, Key: outKey, ETag: info.ETag, Size: info.Size},
		ResizedWidth: 4, ResizedHeight: 3, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}}
}

func publish(t *testing.T, js jetstream.JetStream, r schemas.Resized) {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	// No Msg-Id: a second publish is stored as a second message, as a
	// replayed or re-published event would be.
	if _, err := js.Publish(testenv.Context(t, 10*time.Second), schemas.SubjectResized, data); err != nil {
		t.Fatal(err)
	}
}

func runStage(t *testing.T, js jetstream.JetStream, s *splitter.Splitter) {
	t.Helper()
	p := splitter.Processor(s, zerolog.Nop(), stage.NewMetrics(prometheus.NewRegistry()))
	p.RetryBase = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stage.Run(ctx, js, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stage: %v", err)
		}
	})
}

// TestPipelineIntoDatasetLayout runs the stage on embedded NATS: eye.resized
// in, eye.split.* and the dataset layout out, with a re-published event, a
// failed-after-success copy that forces a redelivery, a duplicate photograph
// under another name, a patient's two eyes, unlabeled images and bad input.
func TestPipelineIntoDatasetLayout(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, 2*time.Minute)
	js := objstore.NewJetStream(env.JS)
	if err := js.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: js, copies: map[string]int{}}

	r := rand.New(rand.NewPCG(4, 4))
	classes := []string{"amd", "cataract", "diabetic_retinopathy", "glaucoma", "normal"}
	var ups []upload
	for i := range 40 {
		original := fmt.Appendf(nil, "fundus %d %d", i, r.Int())
		ups = append(ups, newUpload(t, js, original, fmt.Sprintf("%s/img %d.jpg", classes[i%len(classes)], i), ""))
	}
	// Both eyes of one patient, different classes.
	ups = append(ups,
		newUpload(t, js, []byte("patient 7 left"), "glaucoma/p7-left.jpg", "p-7"),
		newUpload(t, js, []byte("patient 7 right"), "normal/p7-right.jpg", "p-7"))
	// Unlabeled: no class folder.
	ups = append(ups,
		newUpload(t, js, []byte("no class 1"), "loose.jpg", ""),
		newUpload(t, js, []byte("no class 2"), "scan-2.jpg", ""))
	// The first image uploaded again under another name: a new upload,
	// the same content.
	dup := newUpload(t, js, fmt.Appendf(nil, "fundus %d %d", 0, rand.New(rand.NewPCG(4, 4)).Int()), "amd/copy of img 0.jpg", "")
	if dup.resized.ImageID != ups[0].resized.ImageID {
		t.Fatal("duplicate fixture has other content")
	}
	ups = append(ups, dup)

	for _, u := range ups {
		publish(t, env.JS, u.resized)
	}
	// The same event again, as a replay or a second publisher would send it.
	publish(t, env.JS, ups[3].resized)
	// Bad input: dead-lettered, the rest flows.
	bad := ups[5].resized
	bad.UploadID, bad.Label = "raw/../x@1", "../etc"
	publish(t, env.JS, bad)

	s, err := splitter.New(defaultConfig(), store)
	if err != nil {
		t.Fatal(err)
	}
	store.failNext.Store(true)
	runStage(t, env.JS, s)
	testenv.WaitConsumerIdle(t, env.JS, bus.StreamResized, bus.ConsumerSplitter)

	if in := testenv.StreamMessages(t, env.JS, bus.StreamResized, schemas.SubjectResized); len(in) != len(ups)+2 {
		t.Fatalf("%d eye.resized messages, want %d: the re-publish must be a second message", len(in), len(ups)+2)
	}
	if store.injected.Load() != 1 {
		t.Fatalf("%d injected copy failures, want 1", store.injected.Load())
	}

	// Expected events and objects, from the split function itself.
	a := s.Assigner()
	wantEvents := map[string]splitter.Assignment{} // upload id -> assignment
	wantObjects := map[string][]byte{}
	counts := map[string]map[string]int{} // class -> dir -> images
	for _, u := range ups {
		as := a.AssignResized(u.resized)
		wantEvents[u.resized.UploadID] = as
		for _, d := range as.Dirs() {
			k := splitter.DatasetKey(splitter.DefaultPrefix, d, u.resized.Label, u.resized.ImageID)
			if _, seen := wantObjects[k]; !seen {
				if counts[u.resized.Label] == nil {
					counts[u.resized.Label] = map[string]int{}
				}
				counts[u.resized.Label][d]++
			}
			wantObjects[k] = u.png
		}
	}
	p7l, p7r := wantEvents[ups[40].resized.UploadID], wantEvents[ups[41].resized.UploadID]
	if p7l.Split != p7r.Split || p7l.Key.Kind != splitter.KeyPatient {
		t.Fatalf("patient p-7's eyes: %+v and %+v", p7l, p7r)
	}

	msgs := testenv.StreamMessages(t, env.JS, bus.StreamSplits, schemas.SubjectSplitAll)
	if len(msgs) != len(wantEvents) {
		t.Fatalf("%d split events, want one per upload (%d): redelivery or re-publish made duplicates", len(msgs), len(wantEvents))
	}
	seenSplits := map[string]int{}
	for _, m := range msgs {
		ev, err := schemas.DecodeSplit(m.Data())
		if err != nil {
			t.Fatalf("decode %s: %v", m.Data(), err)
		}
		want, ok := wantEvents[ev.UploadID]
		if !ok {
			t.Fatalf("event for unknown upload %q", ev.UploadID)
		}
		delete(wantEvents, ev.UploadID)
		seenSplits[ev.Split]++
		if m.Subject() != schemas.SplitSubject(ev.Split) || ev.Split != want.Split || ev.Holdout != want.Holdout ||
			ev.SplitKey != want.Key.Kind || ev.SplitFunc != splitter.SplitFunc || ev.SaltVersion != "1" {
			t.Errorf("event on %s: split %q holdout %q key %q func %q salt %q; want %+v", m.Subject(), ev.Split, ev.Holdout, ev.SplitKey, ev.SplitFunc, ev.SaltVersion, want)
		}
		if ev.ImageID == "" || ev.Processed.Key == "" || ev.ResizedWidth != 4 || ev.Source.Key == "" {
			t.Errorf("event lost the resized fields: %+v", ev)
		}
	}
	for _, split := range []string{schemas.SplitTrain, schemas.SplitUnlabeled} {
		if seenSplits[split] == 0 {
			t.Errorf("no %s events in %v: the fixture should cover every kind", split, seenSplits)
		}
	}
	if seenSplits[schemas.SplitHoldout1]+seenSplits[schemas.SplitHoldout2]+seenSplits[schemas.SplitHoldout3] == 0 {
		t.Errorf("no holdout events in %v", seenSplits)
	}

	// The dataset holds exactly the expected objects, each copied once.
	var got []string
	for info, err := range js.List(ctx, objstore.BucketProcessed, splitter.DefaultPrefix+"/") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, info.Key)
	}
	want := make([]string, 0, len(wantObjects))
	for k := range wantObjects {
		want = append(want, k)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("dataset objects\n%q\nwant\n%q", got, want)
	}
	for k, n := range store.copies {
		if n != 1 {
			t.Errorf("%s copied %d times, want once", k, n)
		}
	}
	for k, data := range wantObjects {
		rc, _, err := js.Get(ctx, objstore.BucketProcessed, k)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("%s: %d bytes (%v), want the processed PNG", k, len(b), err)
		}
	}

	// The bad event is dead-lettered, not retried.
	dl := testenv.StreamMessages(t, env.JS, bus.StreamDLQ, schemas.DLQSubject(schemas.StageSplitter))
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	// Its label "../etc" is a key problem: bad_key.
	if d, err := schemas.DecodeDeadLetter(dl[0].Data()); err != nil || d.Reason != schemas.ReasonBadKey || !d.Permanent {
		t.Fatalf("dead letter %+v (%v), want permanent %s", d, err, schemas.ReasonBadKey)
	}

	// The report, built by listing the bucket, agrees.
	rep, err := splitter.Report(ctx, js, objstore.BucketProcessed, splitter.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || rep.Other != 0 {
		t.Fatalf("report problems %q, %d other objects", rep.Problems, rep.Other)
	}
	for _, cc := range rep.Classes {
		for _, d := range splitter.DatasetDirs() {
			if cc.Counts[d] != counts[cc.Class][d] {
				t.Errorf("report %s/%s = %d, want %d", cc.Class, d, cc.Counts[d], counts[cc.Class][d])
			}
		}
	}
	if len(rep.Classes) != len(classes) {
		t.Errorf("report has %d classes, want %d", len(rep.Classes), len(classes))
	}

	// A local copy of train/ loads as a torchvision ImageFolder would read it.
	checkImageFolder(t, js, splitter.DefaultPrefix+"/"+schemas.SplitTrain)
}

// checkImageFolder downloads bucket/<root>/ and applies torchvision
// ImageFolder's rules: the classes are the sub-folders of the root, each
// holds at least one file with an image extension, nothing else lies there,
// and every file decodes.
func checkImageFolder(t *testing.T, store objstore.Store, root string) {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	dir := t.TempDir()
	for info, err := range store.List(ctx, objstore.BucketProcessed, root+"/") {
		if err != nil {
			t.Fatal(err)
		}
		rc, _, err := store.Get(ctx, objstore.BucketProcessed, info.Key)
		if err != nil {
			t.Fatal(err)
		}
		local := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(info.Key, root+"/")))
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("train folder is empty")
	}
	for _, e := range entries {
		if !e.IsDir() {
			t.Fatalf("%s lies in the ImageFolder root, not in a class folder", e.Name())
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("class %s has no images", e.Name())
		}
		for _, f := range files {
			if f.IsDir() || filepath.Ext(f.Name()) != ".png" {
				t.Fatalf("%s/%s is not a .png file directly in its class folder", e.Name(), f.Name())
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name(), f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := png.Decode(bytes.NewReader(b)); err != nil {
				t.Fatalf("%s/%s: %v", e.Name(), f.Name(), err)
			}
		}
	}
}

// panicStore fails the test on any use: bad input must be refused before
// the store is touched.
type panicStore struct{ objstore.Store }

func TestHandleRefusesBadInput(t *testing.T) {
	good := schemas.Resized{
		Schema: schemas.SchemaResized, ImageID: strings.Repeat("ab", 32), UploadID: "raw/amd/a.jpg@e",
		Source: schemas.ObjectRef{Bucket: "raw", Key: "amd/a.jpg"}, Label: "amd",
		Processed: schemas.ObjectRef{Bucket: "processed", Key: "resized/x.png"},
	}
	bad, key := schemas.ReasonBadResized, schemas.ReasonBadKey
	tests := []struct {
		name   string
		edit   func(*schemas.Resized)
		want   string
		reason string
	}{
		{"short image id", func(r *schemas.Resized) { r.ImageID = "abc" }, "image id", bad},
		{"upper-case image id", func(r *schemas.Resized) { r.ImageID = strings.Repeat("AB", 32) }, "image id", bad},
		{"no upload id", func(r *schemas.Resized) { r.UploadID = "" }, "upload id", bad},
		{"label with slash", func(r *schemas.Resized) { r.Label = "amd/../../x" }, "label", key},
		{"dot-dot label", func(r *schemas.Resized) { r.Label = ".." }, "label", key},
		{"control character", func(r *schemas.Resized) { r.Label = "a\nb" }, "label", key},
		{"backslash label", func(r *schemas.Resized) { r.Label = `..\x` }, "label", key},
		{"invalid UTF-8 label", func(r *schemas.Resized) { r.Label = "a\xffb" }, "label", key},
		{"traversal source key", func(r *schemas.Resized) { r.Source.Key = "../../etc/passwd" }, "source", key},
		{"encoded traversal source key", func(r *schemas.Resized) { r.Source.Key = "%2e%2e/x.jpg" }, "source", key},
		{"long source key", func(r *schemas.Resized) { r.Source.Key = strings.Repeat("k", 1025) }, "source", key},
		{"labelled without processed image", func(r *schemas.Resized) { r.Processed = schemas.ObjectRef{} }, "processed", bad},
	}
	s, err := splitter.New(defaultConfig(), panicStore{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := good
			tt.edit(&in)
			_, err := s.Handle(context.Background(), in)
			var pe *stage.PermanentError
			if !errors.As(err, &pe) || pe.Reason != tt.reason || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want permanent %s mentioning %q", err, tt.reason, tt.want)
			}
		})
	}
	// Unlabeled images need no processed image: nothing is copied.
	in := good
	in.Label, in.Processed = "", schemas.ObjectRef{}
	out, err := s.Handle(context.Background(), in)
	if err != nil || len(out) != 1 || out[0].Subject != schemas.SplitSubject(schemas.SplitUnlabeled) {
		t.Fatalf("unlabeled: %+v, %v", out, err)
	}
	if ev := out[0].Event.(schemas.Split); ev.Split != schemas.SplitUnlabeled || ev.Holdout != "" || ev.Schema != schemas.SchemaSplit {
		t.Fatalf("unlabeled event %+v", ev)
	}
}

func TestNewNeedsAStore(t *testing.T) {
	if _, err := splitter.New(defaultConfig(), nil); err == nil {
		t.Fatal("New accepted a nil store")
	}
}

// TestPatientPseudonymsThroughStage runs the stage on embedded NATS with the
// three ways a patient reaches it: the hash resize computed (from upload
// metadata or a DICOM PatientID), a raw id from another producer, and the
// key pattern. All of one patient share a split; every eye.split event
// carries the patient hash and never a raw id; a hash that is not one, or
// was made under another salt version, is dead-lettered as bad_resized.
func TestPatientPseudonymsThroughStage(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, 2*time.Minute)
	js := objstore.NewJetStream(env.JS)
	if err := js.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.KeyPattern = `(^|/)(?P<patient>P\d+)_`
	s, err := splitter.New(cfg, js)
	if err != nil {
		t.Fatal(err)
	}
	const raw = "P-0042"
	h := patientHash(cfg.Salt, raw)

	fromResize := newUpload(t, js, []byte("dicom of P-0042"), "amd/scan.dcm", "").resized
	fromResize.PatientHash, fromResize.PatientSaltVersion, fromResize.PatientSource = h, cfg.SaltVersion, schemas.PatientFromDICOM
	fromOther := newUpload(t, js, []byte("P-0042 other eye"), "normal/other.jpg", raw).resized
	byKey := newUpload(t, js, []byte("P77 left"), "glaucoma/P77_left.jpg", "").resized
	otherSalt := newUpload(t, js, []byte("salt v2"), "amd/v2.jpg", "").resized
	otherSalt.PatientHash, otherSalt.PatientSaltVersion = h, "2"
	notHash := newUpload(t, js, []byte("not a hash"), "amd/nh.jpg", "").resized
	notHash.PatientHash = raw
	for _, r := range []schemas.Resized{fromResize, fromOther, byKey, otherSalt, notHash} {
		publish(t, env.JS, r)
	}
	runStage(t, env.JS, s)
	testenv.WaitConsumerIdle(t, env.JS, bus.StreamResized, bus.ConsumerSplitter)

	got := map[string]schemas.Split{}
	for _, m := range testenv.StreamMessages(t, env.JS, bus.StreamSplits, schemas.SubjectSplitAll) {
		if bytes.Contains(m.Data(), []byte(raw)) || bytes.Contains(m.Data(), []byte(`"patient_id"`)) {
			t.Errorf("eye.split carries the raw patient id: %s", m.Data())
		}
		ev, err := schemas.DecodeSplit(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		got[ev.Source.Key] = ev
	}
	if len(got) != 3 {
		t.Fatalf("%d split events, want 3", len(got))
	}
	a, b, k := got[fromResize.Source.Key], got[fromOther.Source.Key], got[byKey.Source.Key]
	if a.Split != b.Split || a.SplitKey != splitter.KeyPatient || b.SplitKey != splitter.KeyPatient {
		t.Errorf("one patient in %s (%s) and %s (%s)", a.Split, a.SplitKey, b.Split, b.SplitKey)
	}
	for _, c := range []struct {
		ev           schemas.Split
		hash, source string
	}{
		{a, h, schemas.PatientFromDICOM},
		{b, h, schemas.PatientFromMetadata},
		{k, patientHash(cfg.Salt, "P77"), schemas.PatientFromKey},
	} {
		if c.ev.PatientHash != c.hash || c.ev.PatientSource != c.source || c.ev.PatientSaltVersion != cfg.SaltVersion || c.ev.PatientID != "" {
			t.Errorf("%s: patient hash %q source %q salt %q id %q, want %q %q %q and no id",
				c.ev.Source.Key, c.ev.PatientHash, c.ev.PatientSource, c.ev.PatientSaltVersion, c.ev.PatientID, c.hash, c.source, cfg.SaltVersion)
		}
	}

	dead := map[string]schemas.DeadLetter{}
	for _, m := range testenv.StreamMessages(t, env.JS, bus.StreamDLQ, schemas.DLQSubject(schemas.StageSplitter)) {
		d, err := schemas.DecodeDeadLetter(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		r, err := schemas.DecodeResized(d.Payload)
		if err != nil {
			t.Fatal(err)
		}
		dead[r.Source.Key] = d
	}
	for key, msg := range map[string]string{
		otherSalt.Source.Key: `split salt version "2", the splitter's is "1"`,
		notHash.Source.Key:   "is not a lowercase hex sha256",
	} {
		d, ok := dead[key]
		if !ok || d.Reason != schemas.ReasonBadResized || !d.Permanent || !strings.Contains(d.Error, msg) {
			t.Errorf("%s: dead letter %+v, want permanent %s mentioning %q", key, d, schemas.ReasonBadResized, msg)
		}
	}
}

// On the JetStream object store the dataset layout holds links to the
// processed PNG, not copies: the PNG is stored once, reads through the
// dataset key give its bytes, and a second delivery changes nothing. A key
// that already holds a copy (made before links, or by another store) is
// left as it is when its bytes match.
func TestDatasetLinksNotCopies(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	store := objstore.NewJetStream(env.JS)
	ctx := testenv.Context(t, time.Minute)
	if err := store.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
		t.Fatal(err)
	}
	s, err := splitter.New(defaultConfig(), store)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := env.JS.ObjectStore(ctx, objstore.BucketProcessed)
	if err != nil {
		t.Fatal(err)
	}
	bucketBytes := func() uint64 {
		st, err := obs.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	var placed int
	for i := range 12 {
		u := newUpload(t, store, []byte(fmt.Sprint("photo ", i)), fmt.Sprintf("amd/%d.jpg", i), "")
		before := bucketBytes()
		dirs := s.Assigner().AssignResized(u.resized).Dirs()
		placedAs := make(map[string]string) // key: the link's NUID after the first delivery
		for delivery := range 2 {           // the second is a redelivery
			if _, err := s.Handle(ctx, u.resized); err != nil {
				t.Fatal(err)
			}
			for _, dir := range dirs {
				key := splitter.DatasetKey(splitter.DefaultPrefix, dir, "amd", u.resized.ImageID)
				oi, err := obs.GetInfo(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if delivery == 0 {
					placedAs[key] = oi.NUID
				} else if oi.NUID != placedAs[key] {
					t.Fatalf("the redelivery placed %s again", key)
				}
			}
		}
		for _, dir := range dirs {
			key := splitter.DatasetKey(splitter.DefaultPrefix, dir, "amd", u.resized.ImageID)
			oi, err := obs.GetInfo(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if oi.Opts == nil || oi.Opts.Link == nil || oi.Opts.Link.Name != u.resized.Processed.Key {
				t.Fatalf("%s is not a link to %s: %+v", key, u.resized.Processed.Key, oi.Opts)
			}
			rc, info, err := store.Get(ctx, objstore.BucketProcessed, key)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, u.png) || info.ETag != u.resized.Processed.ETag {
				t.Fatalf("%s reads %d bytes (etag %s), want the processed PNG", key, len(got), info.ETag)
			}
			placed++
		}
		// Links are meta messages of a few hundred bytes, not the PNG again.
		if grew := bucketBytes() - before; grew > uint64(len(dirs))*1024 {
			t.Fatalf("placing image %d in %v grew the bucket by %d bytes", i, dirs, grew)
		}
	}
	if placed < 12 {
		t.Fatalf("%d placements for 12 images", placed)
	}

	// A copy made earlier at the key, with the same bytes, is kept.
	u := newUpload(t, store, []byte("copied before"), "amd/old.jpg", "")
	dir := s.Assigner().AssignResized(u.resized).Dirs()[0]
	key := splitter.DatasetKey(splitter.DefaultPrefix, dir, "amd", u.resized.ImageID)
	if _, err := store.Copy(ctx, objstore.BucketProcessed, u.resized.Processed.Key, objstore.BucketProcessed, key); err != nil {
		t.Fatal(err)
	}
	old, _ := obs.GetInfo(ctx, key)
	if _, err := s.Handle(ctx, u.resized); err != nil {
		t.Fatal(err)
	}
	if now, _ := obs.GetInfo(ctx, key); now.NUID != old.NUID {
		t.Fatalf("an identical copy at %s was replaced", key)
	}
}
