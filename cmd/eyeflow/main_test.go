package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/resize"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
)

func freeAddr(t *testing.T) string { return testenv.FreeAddr(t) }

// syncBuffer collects a process's log safely across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startUp runs `eyeflow up` in-process until the returned stop is called.
func startUp(t *testing.T, data, natsAddr, httpAddr string) (stop func()) {
	t.Helper()
	return startUpWith(t, data, natsAddr, httpAddr)
}

// startUpWith is startUp with more flags.
func startUpWith(t *testing.T, data, natsAddr, httpAddr string, flags ...string) (stop func()) {
	t.Helper()
	_, stop = startUpLogged(t, data, natsAddr, httpAddr, flags...)
	return stop
}

// startUpLogged is startUpWith that also returns up's log.
func startUpLogged(t *testing.T, data, natsAddr, httpAddr string, flags ...string) (*syncBuffer, func()) {
	t.Helper()
	logs, stopUp := startUpArgs(t, httpAddr, append([]string{"--data", data, "--nats-listen", natsAddr}, flags...)...)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stopUp()
			if strings.Contains(logs.String(), `"level":"error"`) {
				t.Errorf("eyeflow up logged errors:\n%s", logs.String())
			}
		})
	}
	t.Cleanup(stop)
	return logs, stop
}

func processed(t *testing.T, httpAddr string) int {
	t.Helper()
	return processedBy(t, httpAddr, "resize")
}

func processedBy(t *testing.T, httpAddr, stage string) int {
	t.Helper()
	return metricSum(t, httpAddr, "eyeflow_messages_processed_total", `stage="`+stage+`"`)
}

// metricSum adds up the series of a metric whose labels contain label.
func metricSum(t *testing.T, httpAddr, name, label string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + name + `\{([^}]*)\} (\S+)`)
	var sum float64
	for _, m := range re.FindAllSubmatch(body, -1) {
		if strings.Contains(string(m[1]), label) {
			v, _ := strconv.ParseFloat(string(m[2]), 64)
			sum += v
		}
	}
	return int(sum)
}

// TestUpPutAndRestart is the embedded default as a user runs it: eyeflow up,
// eyeflow demo-data, eyeflow put in another terminal; every image is resized
// once; a restart resumes from the data directory without redoing any.
func TestUpPutAndRestart(t *testing.T) {
	data, images := t.TempDir(), t.TempDir()
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	logs, stop := startUpLogged(t, data, natsAddr, httpAddr)
	// The first line says where up listens and the exact command to
	// upload; on an empty registry up alone registers the placeholder and
	// says why.
	first, _, _ := strings.Cut(logs.String(), "\n")
	if !strings.Contains(first, "eyeflow put --nats nats://"+natsAddr+" DIR") || !strings.Contains(first, "http://"+httpAddr) {
		t.Errorf("up's first log line: %s", first)
	}
	if !strings.Contains(logs.String(), "placeholder model: registered the synthetic DenseNet121") || !strings.Contains(logs.String(), "because the model registry was empty") {
		t.Errorf("up does not say it registered the placeholder and why:\n%s", lastBytes(logs.String(), 4<<10))
	}

	ctx := testenv.Context(t, 3*time.Minute)
	var out bytes.Buffer
	const n = 20
	if err := run(ctx, []string{"demo-data", "--out", images, "--total", strconv.Itoa(n), "--width", "320", "--height", "240"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"put", "--nats", "nats://" + natsAddr, images}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("uploaded %d files", n)) {
		t.Fatalf("put said %q", out.String())
	}
	deadline := time.Now().Add(60 * time.Second)
	for processed(t, httpAddr) < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := processed(t, httpAddr); got != n {
		t.Fatalf("resize processed %d of %d uploads", got, n)
	}
	for processedBy(t, httpAddr, "splitter") < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// The split report lists the dataset layout in the bucket: every
	// labelled image is in exactly one of train and the holdouts.
	var report bytes.Buffer
	if err := run(ctx, []string{"split", "report", "--nats", "nats://" + natsAddr, "--json"}, &report, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Total    map[string]int `json:"total"`
		Images   int            `json:"images"`
		Problems []string       `json:"problems"`
	}
	if err := json.Unmarshal(report.Bytes(), &rep); err != nil {
		t.Fatalf("split report %s: %v", report.String(), err)
	}
	holdouts := rep.Total["holdout_1"] + rep.Total["holdout_2"] + rep.Total["holdout_3"]
	if rep.Images != n || rep.Total["train"]+rep.Total["test"] != n || holdouts != rep.Total["test"] || len(rep.Problems) != 0 {
		t.Fatalf("split report %+v: want %d images, each in train or test, every test image in one holdout", rep, n)
	}
	// A local copy for training: DIR/train/<class>/<image-id>.png, as ImageFolder reads it.
	exported := t.TempDir()
	if err := run(ctx, []string{"split", "export", "--nats", "nats://" + natsAddr, "--out", exported}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for dir, want := range rep.Total {
		pngs, _ := filepath.Glob(filepath.Join(exported, dir, "*", "*.png"))
		if len(pngs) != want {
			t.Errorf("export has %d PNGs under %s/<class>/, the report counts %d", len(pngs), dir, want)
		}
	}
	stop()

	logs, _ = startUpLogged(t, data, natsAddr, httpAddr)
	if !strings.Contains(logs.String(), "placeholder model: not needed, prod serves a model") {
		t.Errorf("a restarted up does not say why it registers no placeholder:\n%s", lastBytes(logs.String(), 4<<10))
	}
	time.Sleep(time.Second)
	if got := processed(t, httpAddr); got != 0 {
		t.Fatalf("after a restart resize processed %d uploads again, want 0", got)
	}
	_, js := testenv.Connect(t, "nats://"+natsAddr)
	if got := len(testenv.StreamMessages(t, js, bus.StreamResized, schemas.SubjectResized)); got != n {
		t.Fatalf("eye.resized holds %d events, want %d", got, n)
	}
}

// stageOutput runs the resize stage's handler on data, as uploaded into
// the raw bucket, and returns its eye.resized event (pixels inline).
func stageOutput(t *testing.T, data []byte) schemas.Resized {
	t.Helper()
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	store := objstore.NewJetStream(env.JS)
	for _, b := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	cfg := resize.DefaultConfig()
	cfg.Store = store
	cfg.Patients = stagetest.Patients(t, splitter.DefaultConfig().Salt)
	cfg.InlineRGB = true // the pixels, to compare with preprocess's PNG
	r, err := resize.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, err := store.Put(ctx, objstore.BucketRaw, "normal/in.jpg", bytes.NewReader(data), int64(len(data)), objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := r.Handle(ctx, schemas.NewUploadEvent(schemas.Upload{Bucket: info.Bucket, Key: info.Key, Size: info.Size, ETag: info.ETag}))
	if err != nil || len(outs) != 1 {
		t.Fatalf("resize stage: %d outputs, %v", len(outs), err)
	}
	return outs[0].Event.(schemas.Resized)
}

// TestPreprocessMatchesTheStage: `eyeflow preprocess` writes a PNG with
// exactly the resize stage's pixels and names the stage's image id; bad
// input fails with the stage's reason.
func TestPreprocessMatchesTheStage(t *testing.T) {
	dir := t.TempDir()
	golden := filepath.Join(testenv.GoldenDir(t), "normal_0000.jpg")
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"golden jpeg", nil, ""},
		{"empty file", []byte{}, "empty"},
		{"not an image", []byte("hello, not a fundus"), "not an image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := golden
			if tt.in != nil {
				in = filepath.Join(dir, "in.jpg")
				if err := os.WriteFile(in, tt.in, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			outPath := filepath.Join(dir, "out.png")
			var out bytes.Buffer
			err := run(context.Background(), []string{"preprocess", in, outPath}, &out, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(out.String(), "jpeg 2048x1536") || !strings.Contains(out.String(), "224x224") {
					t.Fatalf("preprocess said %q", out.String())
				}
				src, err := os.ReadFile(in)
				if err != nil {
					t.Fatal(err)
				}
				want := stageOutput(t, src)
				if !strings.Contains(out.String(), "image id "+want.ImageID) {
					t.Errorf("preprocess said %q, the stage's image id is %s", out.String(), want.ImageID)
				}
				f, err := os.Open(outPath)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				img, err := png.Decode(f)
				if err != nil {
					t.Fatalf("preprocess wrote no PNG: %v", err)
				}
				if b := img.Bounds(); b.Dx() != want.ResizedWidth || b.Dy() != want.ResizedHeight {
					t.Fatalf("PNG is %v, the stage's is %dx%d", b, want.ResizedWidth, want.ResizedHeight)
				}
				for i, p := 0, 0; i < want.ResizedWidth*want.ResizedHeight; i, p = i+1, p+3 {
					c := color.NRGBAModel.Convert(img.At(i%want.ResizedWidth, i/want.ResizedWidth)).(color.NRGBA)
					if c.R != want.RGB[p] || c.G != want.RGB[p+1] || c.B != want.RGB[p+2] || c.A != 255 {
						t.Fatalf("pixel %d: preprocess wrote %v, the stage %v", i, c, want.RGB[p:p+3])
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestFlagsFromEnvironmentAndValidation(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"bad replicas from env", map[string]string{"EYEFLOW_REPLICAS": "9"}, []string{"up"}, "$EYEFLOW_REPLICAS (--replicas) 9"},
		{"unparsable env", map[string]string{"EYEFLOW_RECONCILE_INTERVAL": "soon"}, []string{"up"}, "$EYEFLOW_RECONCILE_INTERVAL"},
		{"s3 without credentials", map[string]string{"EYEFLOW_S3": "http://127.0.0.1:9"}, []string{"resize"}, "needs credentials"},
		{"s3 not a url", nil, []string{"resize", "--s3", "minio:9000"}, "want http(s)://host:port"},
		{"command line beats env", map[string]string{"EYEFLOW_RESIZE_CONCURRENCY": "-2"}, []string{"up", "--resize-concurrency", "-1"}, "--resize-concurrency -1"},
		{"unknown command", nil, []string{"frobnicate"}, "unknown command"},
		{"secret on the command line", nil, []string{"resize", "--s3-secret-key", "hunter2"}, "not on the command line"},
		{"negative parallel runs from env", map[string]string{"EYEFLOW_PARALLEL_RUNS": "-1"}, []string{"classifier"}, "--parallel-runs"},
		{"negative classifier concurrency", nil, []string{"up", "--classifier-concurrency", "-2"}, "--classifier-concurrency -2"},
		{"bad envs from env named by its variable", map[string]string{"EYEFLOW_ENVS": "prod,qa"}, []string{"classifier"}, `$EYEFLOW_ENVS (--envs): "qa" is not one of`},
		{"negative max pixels", nil, []string{"resize", "--max-pixels", "-5"}, "--max-pixels -5: must be at least 1"},
		{"negative max pixels from env", map[string]string{"EYEFLOW_MAX_PIXELS": "-5"}, []string{"preprocess", "a.jpg", "b.png"}, "$EYEFLOW_MAX_PIXELS (--max-pixels) -5"},
		{"explain a directory", nil, []string{"split", "explain", "."}, "split explain: . is a directory: name the files"},
		{"preprocess writes PNG only", nil, []string{"preprocess", "a.jpg", "b.jpg"}, "b.jpg: the output is a PNG"},
		{"placeholder policy", nil, []string{"up", "--placeholder", "sometimes"}, `--placeholder "sometimes": want auto, on or off`},
		{"standalone classifier registers no model", nil, []string{"classifier", "--model", "dir"}, "unknown flag --model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			err := run(context.Background(), tt.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestBucketsInitWithMinIO: `eyeflow topology apply` and `eyeflow buckets
// init` against a real MinIO make MinIO itself publish eye.uploads, and
// `eyeflow put --s3` uploads into it; credentials come from the environment.
func TestBucketsInitWithMinIO(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	minio := testenv.MinIO(t, testenv.MinIOOptions{NATSAddress: strings.TrimPrefix(env.URL, "nats://")})
	t.Setenv("EYEFLOW_S3_ACCESS_KEY", minio.AccessKey)
	t.Setenv("EYEFLOW_S3_SECRET_KEY", minio.SecretKey)
	ctx := testenv.Context(t, 2*time.Minute)
	var out bytes.Buffer
	if err := run(ctx, []string{"topology", "apply", "--nats", env.URL}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	// NATS too: buckets init records the store as the deployment's.
	t.Setenv("EYEFLOW_NATS", env.URL)
	for range 2 { // idempotent
		if err := run(ctx, []string{"buckets", "init", "--s3", minio.Endpoint, "--notify-arn", minio.ARN}, &out, io.Discard); err != nil {
			t.Fatalf("buckets init: %v\n%s", err, out.String())
		}
	}
	if want := "recorded the S3 store at " + minio.Endpoint + " as the deployment's object store"; !strings.Contains(out.String(), want) {
		t.Errorf("buckets init did not say %q:\n%s", want, out.String())
	}
	img := filepath.Join(testenv.GoldenDir(t), "amd_0000.jpg")
	out.Reset()
	if err := run(ctx, []string{"put", "--s3", minio.Endpoint, "--class", "amd", img}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "uploaded 1 file (") {
		t.Errorf("put said %q", out.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	var msgs int
	for time.Now().Before(deadline) {
		if msgs = len(testenv.StreamMessages(t, env.JS, bus.StreamUploads, schemas.SubjectUploads)); msgs > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if msgs != 1 {
		t.Fatalf("MinIO published %d eye.uploads events for one put, want 1\n%s", msgs, out.String())
	}
	if strings.Contains(out.String(), minio.SecretKey) {
		t.Fatal("a command printed the S3 secret key")
	}
}
