//go:build !race

// A race-detector binary that started Dawn's threads (ONNX Runtime's WebGPU
// provider) passes its tests and then hangs in the race detector's exit
// (runtime.racefini). These tests are therefore built without -race only;
// make test runs them in its pass without the race detector.

package inference

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"eyeflow/internal/tinytest"
)

// TestWebGPUWithoutAdapter checks, on every machine, what happens where
// Dawn finds no adapter: the test runs itself again in a child process whose
// Vulkan loader is pointed at a driver manifest that does not exist, so there
// is no adapter even on a GPU host (and this process's WebGPU context, which
// ONNX Runtime keeps for the whole process, is untouched). There, an explicit
// webgpu device must fail at start with ErrProviderUnavailable and the
// provider's own reason plus what to set, and auto must fall back to the CPU
// and say why it skipped WebGPU.
func TestWebGPUWithoutAdapter(t *testing.T) {
	if os.Getenv(envNoAdapter) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWebGPUWithoutAdapter$", "-test.v")
		cmd.Env = append(os.Environ(), envNoAdapter+"=1",
			"VK_DRIVER_FILES=/nonexistent/eyeflow-test-no-driver.json", "VK_ICD_FILENAMES=/nonexistent/eyeflow-test-no-driver.json")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child without a Vulkan driver: %v\n%s", err, out)
		}
		t.Logf("child without a Vulkan driver:\n%s", out)
		return
	}
	initORT(t)
	tiny := tinytest.Model(t, "v1")

	_, err := ResolveDevice(SessionOptions{Device: Device{Kind: "webgpu"}})
	wantClearError(t, "ResolveDevice(webgpu)", err)
	_, err = LoadModel(tiny, SessionOptions{Device: Device{Kind: "webgpu"}})
	wantClearError(t, "LoadModel(webgpu)", err)
	_, err = LoadModel(tiny, SessionOptions{Device: Device{Kind: "webgpu", ID: 1}})
	if !errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), "cannot choose among adapters") {
		t.Errorf("webgpu:1: %v, want ErrProviderUnavailable saying the provider cannot choose an adapter", err)
	}

	res, err := ResolveDevice(SessionOptions{Device: Device{Kind: "auto"}})
	if err != nil {
		t.Fatalf("ResolveDevice(auto): %v", err)
	}
	if res.Device.Kind == "webgpu" || res.Provider == ProviderWebGPU {
		t.Fatalf("auto chose %s without a Vulkan driver", res.Provider)
	}
	if res.Provider == ProviderCPU {
		if res.Device != (Device{Kind: "cpu"}) {
			t.Errorf("auto resolved to %v, want cpu", res.Device)
		}
		if !notesSay(res.Notes, "auto skipped "+ProviderWebGPU, "No supported adapters") {
			t.Errorf("auto fell back to the CPU without saying why it skipped WebGPU: %q", res.Notes)
		}
	}
	m, err := LoadModel(tiny, SessionOptions{Device: Device{Kind: "auto"}})
	if err != nil {
		t.Fatalf("LoadModel(auto): %v", err)
	}
	defer m.Close()
	if m.Provider == ProviderCPU && !notesSay(m.Notes, "auto skipped "+ProviderWebGPU) {
		t.Errorf("auto model on the CPU, notes %q: want the skipped WebGPU named", m.Notes)
	}
	// The CPU still works after the failed WebGPU attempts.
	if _, err := m.Run(ProbeImages()); err != nil {
		t.Fatal(err)
	}
}

// TestAutoFallsBackToCPU: with the CPU-only library and no usable GPU, auto
// loads the model anyway, never on CUDA (the CPU, or WebGPU on a GPU host).
func TestAutoFallsBackToCPU(t *testing.T) {
	initORT(t)
	m, err := LoadModel(tinytest.Model(t, "v1"), SessionOptions{Device: Device{Kind: "auto"}})
	if err != nil {
		t.Fatalf("auto: %v", err)
	}
	defer m.Close()
	if m.Provider == ProviderCUDA {
		t.Fatalf("auto chose %s without CUDA", m.Provider) // the CPU, or WebGPU on a GPU host
	}
}
