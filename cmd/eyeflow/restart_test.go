package main

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/demodata"
	"eyeflow/internal/testenv"
	"eyeflow/schemas"
)

// writeImages writes n small distinct JPEGs in ImageFolder layout.
func writeImages(t *testing.T, dir string, n int) {
	t.Helper()
	classes := demodata.Classes()
	for i := range n {
		img := image.NewRGBA(image.Rect(0, 0, 48, 36))
		for p := 0; p < 48*36; p++ {
			img.Set(p%48, p/48, color.RGBA{byte(i), byte(i >> 8), byte(p), 255})
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, nil); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, classes[i%len(classes)], "img-"+strconv.Itoa(i)+".jpg")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func predictionsBy(t *testing.T, httpAddr, env string) int {
	t.Helper()
	return metricSum(t, httpAddr, "predictions_total", `env="`+env+`"`)
}

// TestUpRestartMidRun: the whole embedded `eyeflow up` is restarted in the
// middle of a run; it resumes from its data directory and every image gets
// exactly one prediction.
func TestUpRestartMidRun(t *testing.T) {
	const n = 300
	data, images, model := t.TempDir(), t.TempDir(), t.TempDir()
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	ctx := testenv.Context(t, 5*time.Minute)
	if err := run(ctx, []string{"model", "synth", "--arch", "tiny", "--out", model}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	writeImages(t, images, n)
	up := func() func() {
		return startUpWith(t, data, natsAddr, httpAddr, "--model", model, "--envs", schemas.EnvProd)
	}
	stop := up()
	if err := run(ctx, []string{"put", "--nats", "nats://" + natsAddr, images}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for predictionsBy(t, httpAddr, schemas.EnvProd) < n/3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	first := predictionsBy(t, httpAddr, schemas.EnvProd)
	stop()
	if first >= n {
		t.Fatalf("the run finished (%d predictions) before the restart: the test proved nothing", first)
	}
	up()
	deadline = time.Now().Add(3 * time.Minute)
	_, js := testenv.Connect(t, "nats://"+natsAddr)
	var msgs int
	for time.Now().Before(deadline) {
		if msgs = len(testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvProd))); msgs >= n {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(time.Second)
	seen := map[string]bool{}
	for _, m := range testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvProd)) {
		p, err := schemas.DecodePrediction(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if seen[p.ImageID] {
			t.Fatalf("image %s predicted twice across the restart", p.ImageID)
		}
		seen[p.ImageID] = true
	}
	if len(seen) != n {
		t.Fatalf("%d images predicted after a restart at %d, want %d", len(seen), first, n)
	}
}
