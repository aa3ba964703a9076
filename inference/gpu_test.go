package inference

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"testing"
)

// hasNVIDIAGPU reports whether this host has an NVIDIA GPU the driver sees.
func hasNVIDIAGPU() bool {
	if _, err := os.Stat("/dev/nvidia0"); err != nil {
		return false
	}
	return exec.Command("nvidia-smi", "-L").Run() == nil
}

// TestCUDAMatchesCPU runs the synthetic DenseNet121 on the GPU and on the
// CPU through the same library: on a GPU host the CUDA session must load,
// say it runs on CUDA with one run at a time, and agree with the CPU. A GPU
// host whose $EYEFLOW_ORT_LIB is the CPU-only build fails here, loudly.
func TestCUDAMatchesCPU(t *testing.T) {
	if !hasNVIDIAGPU() {
		t.Skip("no NVIDIA GPU on this machine (no /dev/nvidia0 or nvidia-smi): the CUDA path runs only on a GPU host; " +
			"TestCUDAUnavailableFailsClearly covers the CPU-only library")
	}
	initORT(t)
	files := denseNet(t)
	gpu, err := LoadModel(files, SessionOptions{Device: Device{Kind: "cuda"}})
	if err != nil {
		t.Fatalf("a GPU host must load the model on CUDA (set EYEFLOW_ORT_LIB to an ONNX Runtime %s GPU build, "+
			"with CUDA 12 and cuDNN 9 on LD_LIBRARY_PATH): %v", ORTVersion, err)
	}
	defer gpu.Close()
	if gpu.Provider != ProviderCUDA || gpu.ParallelRuns != 1 {
		t.Fatalf("cuda model: provider %s, %d parallel runs; want %s and 1", gpu.Provider, gpu.ParallelRuns, ProviderCUDA)
	}
	cpu, err := LoadModel(files, SessionOptions{Device: Device{Kind: "cpu"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	images := make([][]byte, 8)
	for i := range images {
		images[i] = make([]byte, ImageBytes)
		for j := range images[i] {
			images[i][j] = byte(rng.IntN(256))
		}
	}
	want, err := cpu.Run(images)
	if err != nil {
		t.Fatal(err)
	}
	got, err := gpu.Run(images)
	if err != nil {
		t.Fatal(err)
	}
	for i := range images {
		for k := range want[i] {
			// cuDNN picks its own convolution algorithms: close, not equal.
			if d := math.Abs(got[i][k] - want[i][k]); d > 1e-3 {
				t.Fatalf("image %d class %d: cuda %.6f, cpu %.6f", i, k, got[i][k], want[i][k])
			}
		}
	}
}
