package resize_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/demodata"
	"eyeflow/internal/dicomtest"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/resize"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/security/pseudonym"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/image/bmp"
)

type fixture struct {
	env   *testenv.NATSEnv
	store objstore.Store
	r     *resize.Resizer
	// patients is r's pseudonym rule: keyed, under the splitter's default salt.
	patients pseudonym.Rule
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
	cfg := resize.DefaultConfig()
	cfg.Store = store
	cfg.Patients = stagetest.Patients(t, splitter.DefaultConfig().Salt)
	// These tests compare the pixels with the stored PNG and with PIL's:
	// carry them (TestDefaultEventNamesThePNG is the default).
	cfg.InlineRGB = true
	r, err := resize.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, store: store, r: r, patients: cfg.Patients}
}

// By default eye.resized carries no pixels, only the processed PNG (with
// its ETag and size), which holds the resized image: pixels travel once,
// in the object store (BENCHMARKS.md, "Pixels carried once").
func TestDefaultEventNamesThePNG(t *testing.T) {
	f := newFixture(t)
	cfg := resize.DefaultConfig()
	if cfg.InlineRGB {
		t.Fatal("DefaultConfig carries inline pixels")
	}
	cfg.Store = f.store
	cfg.Patients = f.patients
	r, err := resize.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, time.Minute)
	outs, err := r.Handle(ctx, f.put(t, "amd/plain.jpg", fundusJPEG(t, 640, 480), nil))
	if err != nil {
		t.Fatal(err)
	}
	res := outs[0].Event.(schemas.Resized)
	js, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RGB) != 0 || bytes.Contains(js, []byte(`"rgb"`)) || len(js) > 2048 {
		t.Fatalf("default eye.resized is %d bytes with %d inline pixel bytes: want a small event naming the PNG", len(js), len(res.RGB))
	}
	st, err := f.store.Stat(ctx, res.Processed.Bucket, res.Processed.Key)
	if err != nil {
		t.Fatal(err)
	}
	if st.ETag != res.Processed.ETag || st.Size != res.Processed.Size || res.ResizedWidth != 224 || res.ResizedHeight != 224 {
		t.Fatalf("processed %+v, stored %+v", res.Processed, st)
	}
	rc, _, err := f.store.Get(ctx, res.Processed.Bucket, res.Processed.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	img, err := png.Decode(rc)
	if err != nil || img.Bounds().Dx() != 224 || img.Bounds().Dy() != 224 {
		t.Fatalf("processed PNG: %v, %v", img.Bounds(), err)
	}
}

// put stores data in raw and returns the event MinIO or the watcher would send.
func (f *fixture) put(t *testing.T, key string, data []byte, meta map[string]string) schemas.S3Event {
	t.Helper()
	info, err := f.store.Put(testenv.Context(t, time.Minute), objstore.BucketRaw, key, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	return schemas.NewUploadEvent(schemas.Upload{Bucket: info.Bucket, Key: info.Key, Size: info.Size, ETag: info.ETag, Metadata: meta})
}

func fundusJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img, err := demodata.Image("glaucoma", 0, demodata.Options{Width: w, Height: h})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngHeaderClaiming is a PNG whose IHDR claims w x h and holds no pixels:
// a decompression bomb must be refused from the header alone.
func pngHeaderClaiming(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	chunk := append([]byte("IHDR"), ihdr...)
	_ = binary.Write(&b, binary.BigEndian, uint32(13))
	b.Write(chunk)
	_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestHandleGoodImages(t *testing.T) {
	f := newFixture(t)
	jpg := fundusJPEG(t, 1024, 768)
	var pngBuf bytes.Buffer
	rgba := image.NewNRGBA(image.Rect(0, 0, 300, 200))
	for i := range rgba.Pix {
		rgba.Pix[i] = byte(i * 7)
	}
	if err := png.Encode(&pngBuf, rgba); err != nil {
		t.Fatal(err)
	}
	dcm := dicomtest.Img2DCM(t, jpg, "JPEG", dicomtest.OphthalmicArgs()...)
	tests := []struct {
		name, key  string
		data       []byte
		meta       map[string]string
		wantLabel  string
		wantFormat string
		wantW      int
		// wantPatient is the raw id whose hash the event must carry, from
		// wantSource.
		wantPatient, wantSource string
	}{
		{"jpeg with class", "glaucoma/eye.jpg", jpg, nil, "glaucoma", "jpeg", 1024, "", ""},
		{"space plus unicode nested", "glaucoma/clinic 1/night+shift/äuge 1+2.jpg", jpg, nil, "glaucoma", "jpeg", 1024, "", ""},
		{"no folder is unlabeled", "loose.jpg", jpg, nil, "", "jpeg", 1024, "", ""},
		{"png with alpha", "normal/a.png", pngBuf.Bytes(), map[string]string{"patient-id": "P-1"}, "normal", "png", 300, "P-1", schemas.PatientFromMetadata},
		{"dicom ophthalmic photography", "amd/scan.dcm", dcm, nil, "amd", "dicom", 1024, dicomtest.PatientID, schemas.PatientFromDICOM},
		{"dicom, metadata wins", "amd/scan2.dcm", dcm, map[string]string{"patient-id": " P-9 "}, "amd", "dicom", 1024, "P-9", schemas.PatientFromMetadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := f.put(t, tt.key, tt.data, tt.meta)
			outs, err := f.r.Handle(testenv.Context(t, time.Minute), ev)
			if err != nil {
				t.Fatal(err)
			}
			if len(outs) != 1 || outs[0].Subject != schemas.SubjectResized {
				t.Fatalf("outputs %+v", outs)
			}
			res := outs[0].Event.(schemas.Resized)
			if res.Label != tt.wantLabel || res.Format != tt.wantFormat || res.Width != tt.wantW {
				t.Fatalf("resized label %q format %q width %d: want label %q format %q width %d", res.Label, res.Format, res.Width, tt.wantLabel, tt.wantFormat, tt.wantW)
			}
			wantHash, wantVersion := f.patients.Of(tt.wantPatient), ""
			if wantHash != "" {
				wantVersion = resize.DefaultConfig().SplitSaltVersion
			}
			if res.PatientHash != wantHash || res.PatientSource != tt.wantSource || res.PatientSaltVersion != wantVersion || res.PatientID != "" {
				t.Fatalf("patient hash %q source %q salt %q id %q, want %q %q %q and no raw id", res.PatientHash, res.PatientSource, res.PatientSaltVersion, res.PatientID, wantHash, tt.wantSource, wantVersion)
			}
			// Nothing identifying is published: not the raw id, not the
			// DICOM name or birth date (pixels aside: base64 may spell anything).
			noPixels := res
			noPixels.RGB = nil
			js, err := json.Marshal(noPixels)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{dicomtest.PatientID, "P-1", "P-9", "Doe", dicomtest.PatientBirthDate} {
				if bytes.Contains(js, []byte(s)) {
					t.Errorf("eye.resized carries %q", s)
				}
			}
			if res.Source.Key != tt.key || res.UploadID == "" {
				t.Fatalf("source %+v upload %q", res.Source, res.UploadID)
			}
			// The image id is the content's SHA-256 and nothing else.
			if sum := sha256.Sum256(tt.data); res.ImageID != hex.EncodeToString(sum[:]) || res.Processed.Key != "resized/"+res.ImageID+".png" {
				t.Fatalf("image id %q, processed %q: want the SHA-256 of the bytes, %x", res.ImageID, res.Processed.Key, sum)
			}
			if res.ResizedWidth != 224 || res.ResizedHeight != 224 || len(res.RGB) != 224*224*3 {
				t.Fatalf("resized to %dx%d with %d inline bytes", res.ResizedWidth, res.ResizedHeight, len(res.RGB))
			}
			// The stored PNG holds exactly the inline pixels.
			rc, _, err := f.store.Get(context.Background(), res.Processed.Bucket, res.Processed.Key)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			img, err := png.Decode(rc)
			if err != nil {
				t.Fatal(err)
			}
			for i, p := 0, 0; i < 224*224; i, p = i+1, p+3 {
				c := color.NRGBAModel.Convert(img.At(i%224, i/224)).(color.NRGBA)
				if c.R != res.RGB[p] || c.G != res.RGB[p+1] || c.B != res.RGB[p+2] {
					t.Fatalf("pixel %d: png %v, inline %v", i, c, res.RGB[p:p+3])
				}
			}
		})
	}
}

// TestImageIDIsTheContent: the same photograph uploaded under different
// keys, by different patients' folders or with other metadata, is one
// image: the same image id and one processed object. The splitter keys
// unlabelled-patient splits on it, so the same bytes can never land on
// both sides of a split.
func TestImageIDIsTheContent(t *testing.T) {
	f := newFixture(t)
	jpg := fundusJPEG(t, 320, 240)
	other := fundusJPEG(t, 320, 241)
	resized := func(key string, data []byte, meta map[string]string) schemas.Resized {
		t.Helper()
		outs, err := f.r.Handle(testenv.Context(t, time.Minute), f.put(t, key, data, meta))
		if err != nil {
			t.Fatal(err)
		}
		return outs[0].Event.(schemas.Resized)
	}
	a := resized("glaucoma/a.jpg", jpg, nil)
	tests := []struct {
		name, key string
		data      []byte
		meta      map[string]string
		same      bool
	}{
		{"same bytes, another key", "normal/b.jpg", jpg, nil, true},
		{"same bytes, another folder and patient", "clinic 2/glaucoma/a.jpg", jpg, map[string]string{"patient-id": "P-9"}, true},
		{"other bytes, same key", "glaucoma/a.jpg", other, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := resized(tt.key, tt.data, tt.meta)
			if got := a.ImageID == b.ImageID && a.Processed.Key == b.Processed.Key; got != tt.same {
				t.Fatalf("image ids %s and %s (processed %s, %s): same = %v, want %v", a.ImageID, b.ImageID, a.Processed.Key, b.Processed.Key, got, tt.same)
			}
		})
	}
}

// goldenTolerance is what the resize achieves against Pillow on each golden
// file (MAE 0.03-0.10, largest error 1-2 levels), with a small margin: a
// rounding or filter change that moves the output shows up here.
var goldenTolerance = map[string]struct {
	mae   float64
	worst int
}{
	"amd_0000":                  {0.12, 2},
	"cataract_0000":             {0.04, 2},
	"diabetic_retinopathy_0000": {0.12, 3},
	"glaucoma_0000":             {0.12, 2},
	"normal_0000":               {0.12, 2},
}

func TestHandleGoldenParity(t *testing.T) {
	f := newFixture(t)
	dir := testenv.GoldenDir(t)
	for _, name := range testenv.GoldenNames() {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(dir, name+".jpg"))
			if err != nil {
				t.Fatal(err)
			}
			refFile, err := os.Open(filepath.Join(dir, name+".224.png"))
			if err != nil {
				t.Fatal(err)
			}
			defer refFile.Close()
			ref, err := png.Decode(refFile)
			if err != nil {
				t.Fatal(err)
			}
			outs, err := f.r.Handle(testenv.Context(t, time.Minute), f.put(t, "golden/"+name+".jpg", src, nil))
			if err != nil {
				t.Fatal(err)
			}
			rgb := outs[0].Event.(schemas.Resized).RGB
			var sum, worst int
			for i := 0; i < 224*224; i++ {
				r, g, b, _ := ref.At(i%224, i/224).RGBA()
				for c, v := range []uint32{r >> 8, g >> 8, b >> 8} {
					d := int(rgb[3*i+c]) - int(v)
					d = max(d, -d)
					sum += d
					worst = max(worst, d)
				}
			}
			mae := float64(sum) / float64(224*224*3)
			t.Logf("%s: MAE %.3f max %d against PIL", name, mae, worst)
			tol, ok := goldenTolerance[name]
			if !ok {
				t.Fatalf("no tolerance for golden file %s", name)
			}
			if mae > tol.mae || worst > tol.worst {
				t.Fatalf("%s: MAE %.3f max %d against PIL, this file's tolerance is MAE <= %.2f and max <= %d", name, mae, worst, tol.mae, tol.worst)
			}
		})
	}
}

func TestHandleBadInput(t *testing.T) {
	f := newFixture(t)
	jpg := fundusJPEG(t, 640, 480)
	dcm := dicomtest.Image(dicomtest.ExplicitLE, "RGB", 40, 40, 3, make([]byte, 40*40*3)).Bytes()
	dcmTrunc := dcm[:len(dcm)/2]
	small := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	var gifBuf, bmpBuf bytes.Buffer
	if err := gif.Encode(&gifBuf, small, nil); err != nil {
		t.Fatal(err)
	}
	if err := bmp.Encode(&bmpBuf, small); err != nil {
		t.Fatal(err)
	}
	gifData, bmpData := gifBuf.Bytes(), bmpBuf.Bytes()
	rnd := make([]byte, 4096)
	for i := range rnd {
		rnd[i] = byte(rand.New(rand.NewPCG(1, 2)).Uint32())
	}
	tests := []struct {
		name       string
		key        string
		data       []byte
		deleteIt   bool
		wantReason string
	}{
		{"empty object", "normal/empty.jpg", nil, false, schemas.ReasonEmpty},
		{"truncated jpeg", "normal/trunc.jpg", jpg[:len(jpg)/2], false, schemas.ReasonCorruptImage},
		{"random bytes with image name", "normal/random.jpg", rnd, false, schemas.ReasonNotAnImage},
		{"text with image name", "normal/notes.png", []byte("patient notes, not a picture"), false, schemas.ReasonNotAnImage},
		{"decompression bomb header", "normal/bomb.png", pngHeaderClaiming(60000, 60000), false, schemas.ReasonTooLarge},
		{"deleted before read", "normal/gone.jpg", jpg, true, schemas.ReasonObjectMissing},
		{"dicom jpeg 2000", "amd/j2k.dcm", dicomtest.Image(dicomtest.JPEG2000, "YBR_ICT", 2, 2, 3, nil).Bytes(), false, schemas.ReasonUnsupportedImage},
		{"dicom 16 bit", "amd/16.dcm", dicomtest.Image(dicomtest.ExplicitLE, "MONOCHROME2", 2, 2, 1, make([]byte, 8)).Set(dicomtest.US(0x00280100, 16)).Bytes(), false, schemas.ReasonUnsupportedImage},
		{"dicom truncated", "amd/trunc.dcm", dcmTrunc, false, schemas.ReasonCorruptImage},
		{"dicom without pixels", "amd/sr.dcm", dicomtest.File{TransferSyntax: dicomtest.ExplicitLE, Elements: []dicomtest.Element{dicomtest.Str(0x00100020, "LO", "P-1")}}.Bytes(), false, schemas.ReasonNotAnImage},
		// Real images in formats eyeflow does not read: unsupported, not "not an image".
		{"gif", "normal/eye.gif", gifData, false, schemas.ReasonUnsupportedImage},
		{"bmp", "normal/eye.bmp", bmpData, false, schemas.ReasonUnsupportedImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := f.put(t, tt.key, tt.data, nil)
			if tt.deleteIt {
				obs, err := f.env.JS.ObjectStore(context.Background(), objstore.BucketRaw)
				if err != nil {
					t.Fatal(err)
				}
				if err := obs.Delete(context.Background(), tt.key); err != nil {
					t.Fatal(err)
				}
			}
			_, err := f.r.Handle(testenv.Context(t, time.Minute), ev)
			var pe *stage.PermanentError
			if !errors.As(err, &pe) || pe.Reason != tt.wantReason {
				t.Fatalf("error %v: want a permanent %q error", err, tt.wantReason)
			}
		})
	}
}

func TestLabel(t *testing.T) {
	tests := []struct{ key, prefix, want string }{
		{"cataract/a.jpg", "", "cataract"},
		{"a.jpg", "", ""},
		// ImageFolder's rule: the first folder under the root (issue 24).
		{"amd/2026/11/deep.jpg", "", "amd"},
		{"site-1/2024/amd/a.jpg", "", "site-1"},
		{"train/amd/2026/a.jpg", "train", "amd"},
		{"/amd/a.jpg", "", ""},
		{"train/amd/a.jpg", "train", "amd"},
		{"other/amd/a.jpg", "train", ""},
		{"../etc/a.jpg", "", ""},
		{"./a.jpg", "", ""},
		{".hidden/a.jpg", "", ""},
		{"bad\x01class/a.jpg", "", ""},
		{"macular hole/a.jpg", "", "macular hole"},
		{"ünïcode/a.jpg", "", "ünïcode"},
	}
	for _, tt := range tests {
		if got := resize.Label(tt.key, tt.prefix); got != tt.want {
			t.Errorf("Label(%q, %q) = %q, want %q", tt.key, tt.prefix, got, tt.want)
		}
	}
}

// TestStageFromUploadsToResizedAndDLQ runs the stage on embedded NATS: good
// uploads come out on eye.resized once each, bad ones on eye.dlq.resize with
// their reason, and the images after a bad one still flow.
func TestStageFromUploadsToResizedAndDLQ(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := stage.NewMetrics(reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stage.Run(ctx, f.env.JS, resize.Processor(f.r, 2, zerolog.Nop(), m)) }()
	t.Cleanup(func() { cancel(); <-done })

	jpg := fundusJPEG(t, 800, 600)
	publish := func(ev schemas.S3Event) {
		data, _ := json.Marshal(ev)
		if _, err := f.env.JS.Publish(testenv.Context(t, 10*time.Second), schemas.SubjectUploads, data); err != nil {
			t.Fatal(err)
		}
	}
	good1 := f.put(t, "amd/one.jpg", jpg, nil)
	publish(good1)
	publish(f.put(t, "amd/empty.jpg", nil, nil))
	publish(f.put(t, "amd/bomb.png", pngHeaderClaiming(60000, 60000), nil))
	publish(f.put(t, "normal/two two+.jpg", fundusJPEG(t, 700, 500), nil))
	publish(good1) // MinIO replay of the first upload
	testenv.WaitConsumerIdle(t, f.env.JS, bus.StreamUploads, bus.ConsumerResize)

	var keys []string
	for _, msg := range testenv.StreamMessages(t, f.env.JS, bus.StreamResized, schemas.SubjectResized) {
		r, err := schemas.DecodeResized(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, r.Source.Key)
	}
	if len(keys) != 2 || keys[0] != "amd/one.jpg" || keys[1] != "normal/two two+.jpg" {
		t.Fatalf("eye.resized carries %q, want the two good uploads once each", keys)
	}
	reasons := map[string]string{}
	for _, msg := range testenv.StreamMessages(t, f.env.JS, bus.StreamDLQ, schemas.DLQSubject(schemas.StageResize)) {
		dl, err := schemas.DecodeDeadLetter(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := schemas.DecodeS3Event(dl.Payload)
		ups, _ := ev.Uploads()
		reasons[ups[0].Key] = dl.Reason
		if dl.Error == "" {
			t.Errorf("dead letter for %s has no error text", ups[0].Key)
		}
	}
	want := map[string]string{"amd/empty.jpg": schemas.ReasonEmpty, "amd/bomb.png": schemas.ReasonTooLarge}
	if len(reasons) != len(want) || reasons["amd/empty.jpg"] != want["amd/empty.jpg"] || reasons["amd/bomb.png"] != want["amd/bomb.png"] {
		t.Fatalf("dead letters %v, want %v", reasons, want)
	}
	for reason, n := range map[string]float64{schemas.ReasonEmpty: 1, schemas.ReasonTooLarge: 1} {
		if got := failedCount(t, reg, reason); got != n {
			t.Errorf("eyeflow_messages_failed_total{reason=%q} = %v, want %v", reason, got, n)
		}
	}
}

// failedCount reads eyeflow_messages_failed_total{stage="resize",reason}.
func failedCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "eyeflow_messages_failed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["stage"] == schemas.StageResize && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestNoPseudonymRule: the stage refuses to start without the deployment's
// pseudonym rule, saying so (there is no default key to fall back on).
func TestNoPseudonymRule(t *testing.T) {
	cfg := resize.DefaultConfig()
	cfg.Store = objstore.NewJetStream(nil)
	if _, err := resize.New(cfg); err == nil || !strings.Contains(err.Error(), "pseudonym rule is required") {
		t.Fatalf("New without a pseudonym rule: %v", err)
	}
	cfg.Patients = stagetest.Patients(t, "s")
	if _, err := resize.New(cfg); err != nil {
		t.Fatal(err)
	}
}
