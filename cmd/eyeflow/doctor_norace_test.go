//go:build !race

// Built without -race only: a race binary that started ONNX Runtime's
// WebGPU provider hangs at exit (see processors/classifier's
// webgpu_norace_test.go); make test runs this in its pass without -race.

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"eyeflow/inference"
	"eyeflow/internal/testenv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWithoutGPUAdapter runs the commands where Dawn finds no adapter, on
// any machine: the test runs again in a child whose Vulkan loader is pointed
// at a driver manifest that does not exist. There `eyeflow doctor` reports
// webgpu unusable with the provider's reason and the manifest's problem,
// `--require webgpu` fails, `eyeflow predict --device webgpu` fails at start
// (before classifying anything) with that reason, and `--device auto` runs
// on the CPU and says it skipped WebGPU.
func TestWithoutGPUAdapter(t *testing.T) {
	if os.Getenv(envDoctorChild) == "" {
		testenv.ORTLibrary(t) // install it once here, not in the child
		cmd := exec.Command(os.Args[0], "-test.run=^TestWithoutGPUAdapter$", "-test.v")
		cmd.Env = append(os.Environ(), envDoctorChild+"=1", "EYEFLOW_ORT_LIB="+testenv.ORTLibrary(t),
			"VK_DRIVER_FILES=/nonexistent/eyeflow-test-no-driver.json", "VK_ICD_FILENAMES=/nonexistent/eyeflow-test-no-driver.json")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child without a Vulkan driver: %v\n%s", err, out)
		}
		t.Logf("child without a Vulkan driver:\n%s", out)
		return
	}
	ctx := testenv.Context(t, 2*time.Minute)
	model := t.TempDir()
	if err := run(ctx, []string{"model", "synth", "--arch", "tiny", "--out", model}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	images := t.TempDir()
	writeImages(t, images, 1)
	jpgs, _ := filepath.Glob(filepath.Join(images, "*", "*.jpg"))

	t.Run("doctor", func(t *testing.T) {
		var out bytes.Buffer
		if err := run(ctx, []string{"doctor", "--json"}, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		var rep doctorReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, out.String())
		}
		byDevice := map[string]deviceCheck{}
		for _, d := range rep.Devices {
			byDevice[d.Device] = d
		}
		if !byDevice["cpu"].Usable {
			t.Errorf("cpu not usable: %+v", byDevice["cpu"])
		}
		if w := byDevice["webgpu"]; w.Usable || !strings.Contains(w.Problem, "Failed to get a WebGPU adapter") {
			t.Errorf("webgpu %+v: want unusable, with the provider's reason", w)
		}
		if rep.Auto == "webgpu" {
			t.Errorf("auto would pick webgpu without a Vulkan driver")
		}
		if rep.Env["VK_DRIVER_FILES"] == "" || !hintsSay(rep.Hints, "/nonexistent/eyeflow-test-no-driver.json", "no such file") {
			t.Errorf("hints %q: want the missing driver manifest named", rep.Hints)
		}
		err := run(ctx, []string{"doctor", "--require", "webgpu"}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "webgpu is not usable") {
			t.Errorf("doctor --require webgpu: %v, want an error", err)
		}
	})
	t.Run("predict --device webgpu fails at start", func(t *testing.T) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"predict", "--model", model, "--device", "webgpu"}, jpgs...), &out, io.Discard)
		if !errors.Is(err, inference.ErrProviderUnavailable) || !strings.Contains(err.Error(), "Failed to get a WebGPU adapter") {
			t.Fatalf("predict --device webgpu: %v, want ErrProviderUnavailable with the provider's reason", err)
		}
		if out.Len() != 0 {
			t.Errorf("predict printed results before failing: %s", out.String())
		}
	})
	t.Run("up --device webgpu fails at start", func(t *testing.T) {
		// Without the check at start the classifier would run and refuse
		// every model, serving nothing; here the command must end, quickly,
		// with the provider's reason.
		upCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := run(upCtx, []string{"up", "--data", t.TempDir(), "--http", freeAddr(t), "--nats-listen", freeAddr(t),
			"--processors", "classifier", "--envs", "prod", "--device", "webgpu"}, io.Discard, io.Discard)
		if upCtx.Err() != nil || !errors.Is(err, inference.ErrProviderUnavailable) || !strings.Contains(err.Error(), "Failed to get a WebGPU adapter") {
			t.Fatalf("up --device webgpu: %v (context: %v), want it to stop at start with the provider's reason", err, upCtx.Err())
		}
	})
	t.Run("predict --device auto runs on the CPU and says so", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if err := run(ctx, append([]string{"predict", "--model", model, "--device", "auto"}, jpgs...), &out, &errOut); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(errOut.String(), "on "+inference.ProviderCPU) || !strings.Contains(errOut.String(), "auto skipped "+inference.ProviderWebGPU) {
			t.Errorf("stderr %q: want the model on the CPU and the skipped WebGPU named", errOut.String())
		}
		if !strings.Contains(out.String(), `"provider":"`+inference.ProviderCPU+`"`) {
			t.Errorf("prediction %s: want provider %s", out.String(), inference.ProviderCPU)
		}
	})
}
