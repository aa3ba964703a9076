package e2e_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"eyeflow/internal/testenv"
)

// TestDemoLearningLoop runs `make demo`'s script, the README's first
// command, on a small data set with a freshly built binary: the
// placeholder classifies, version 1 trains, is evaluated and reaches prod;
// a shifted batch makes drift fire; labelsink's tasks are answered through
// the Label Studio export reader; the manifest trains version 2, which the
// gate promotes or refuses with its reason; every step is on eye.models.
func TestDemoLearningLoop(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "eyeflow")
	build := exec.Command("go", "build", "-o", bin, "./cmd/eyeflow")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts/demo.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"EYEFLOW_BIN="+bin, "DEMO_EXIT=1", "DEMO_TOTAL=300", "DEMO_SHIFT_TOTAL=100", "DEMO_LIVE_TOTAL=60",
		"DEMO_IMAGES="+filepath.Join(dir, "images"), "EYEFLOW_DATA="+filepath.Join(dir, "data"), "DEMO_WORK="+dir,
		"EYEFLOW_HTTP="+testenv.FreeAddr(t), "DEMO_NATS_LISTEN="+testenv.FreeAddr(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s\nlog tail:\n%s", err, out.String(), tail(filepath.Join(dir, "data", "eyeflow.log")))
	}
	got := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`version 1 \(v1-[0-9a-f]{10}\) serves prod`),
		regexp.MustCompile(`drift fired on prod`),
		regexp.MustCompile(`(?m)^\S+\s+trained\s+fundus v1-\S+\s+-\s+[0-9.]+\s+[0-9.]+\s+bootstrap`),
		regexp.MustCompile(`(?m)^\S+\s+promoted\s+fundus v1-\S+\s+canary -> prod`),
		regexp.MustCompile(`(?m)^\S+\s+trained\s+fundus v2-\S+\s+.*retrain `),
		regexp.MustCompile(`(?m)^\S+\s+(promoted\s+fundus v2-\S+\s+staging -> canary|refused\s+fundus v2-\S+\s+-\s+.*holdout_2)`),
	} {
		if !want.MatchString(got) {
			t.Errorf("demo output lacks %s", want)
		}
	}
	if m := regexp.MustCompile(`annotated (\d+) tasks \(`).FindStringSubmatch(got); m == nil || m[1] == "0" {
		t.Errorf("the annotator answered no task")
	}
	// Version 1's holdout_3 accuracy is recorded, and above chance (15 classes).
	acc := regexp.MustCompile(`(?m)^fundus\s+v1-\S+\s+\S+\s+\S+\s+embedded\s+\d+\s+[0-9.]+\s+([0-9.]+)`).FindStringSubmatch(got)
	if acc == nil {
		t.Fatalf("no holdout_3 accuracy for version 1 in:\n%s", got)
	}
	if a, _ := strconv.ParseFloat(acc[1], 64); a <= 1.0/15 {
		t.Errorf("version 1 holdout_3 accuracy %v is not above chance", a)
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", got)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
