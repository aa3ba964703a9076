package inference

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"eyeflow/internal/tinytest"
	"eyeflow/models"
)

func TestParseDeviceWebGPU(t *testing.T) {
	for _, tc := range []struct {
		in       string
		want     Device
		str      string
		provider string
	}{
		{"webgpu", Device{Kind: "webgpu"}, "webgpu", ProviderWebGPU},
		{"WebGPU:0", Device{Kind: "webgpu"}, "webgpu", ProviderWebGPU},
		{"webgpu:1", Device{Kind: "webgpu", ID: 1}, "webgpu:1", ProviderWebGPU},
		{"cuda:2", Device{Kind: "cuda", ID: 2}, "cuda:2", ProviderCUDA},
		{"cpu", Device{Kind: "cpu"}, "cpu", ProviderCPU},
		{"auto", Device{Kind: "auto"}, "auto", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDevice(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("ParseDevice(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.str || got.Provider() != tc.provider {
				t.Errorf("%v: String %q, Provider %q; want %q, %q", got, got.String(), got.Provider(), tc.str, tc.provider)
			}
		})
	}
	for _, bad := range []string{"webgpu:x", "webgpu:-1", "vulkan", "gpu"} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDefaultMaxBatch(t *testing.T) {
	for _, tc := range []struct {
		provider string
		want     int
	}{
		{ProviderCPU, 8},
		{ProviderWebGPU, 64},
		{ProviderCUDA, 64},
		{ProviderTensorRT, 64},
	} {
		if got := DefaultMaxBatch(tc.provider); got != tc.want {
			t.Errorf("DefaultMaxBatch(%s) = %d, want %d", tc.provider, got, tc.want)
		}
	}
}

func TestWebGPUOptions(t *testing.T) {
	for _, tc := range []struct {
		in      string
		wantErr string
		// want is what ONNX Runtime is handed.
		want map[string]string
	}{
		{"", "", map[string]string{"dawnBackendType": "Vulkan", "powerPreference": "high-performance"}},
		{"preferredLayout=NCHW, enableGraphCapture=1,validationMode=disabled", "", map[string]string{
			"dawnBackendType": "Vulkan", "powerPreference": "high-performance",
			"preferredLayout": "NCHW", "enableGraphCapture": "1", "validationMode": "disabled"}},
		{"ep.webgpuexecutionprovider.powerPreference=low-power", "", map[string]string{"dawnBackendType": "Vulkan", "powerPreference": "low-power"}},
		{"maxStorageBufferBindingSize=134217728", "", map[string]string{
			"dawnBackendType": "Vulkan", "powerPreference": "high-performance", "maxStorageBufferBindingSize": "134217728"}},
		{"validationMode=off", `want one of disabled, wgpuOnly, basic, full`, nil},
		{"preferedLayout=NCHW", `no such option`, nil},
		{"deviceId=1", `no such option`, nil},
		{"maxStorageBufferBindingSize=big", `unsigned integer`, nil},
		{"enableGraphCapture", `want key=value`, nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			o, err := ParseWebGPUOptions(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseWebGPUOptions(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := o.providerOptions()
			if len(got) != len(tc.want) {
				t.Fatalf("provider options %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("provider option %s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}

func TestDiagnoseWebGPU(t *testing.T) {
	llvmpipe := Adapter{Name: "llvmpipe (LLVM 15.0.6, 256 bits)", Type: "CPU"}
	h200 := Adapter{Name: "NVIDIA H200", Type: "discrete GPU"}
	for _, tc := range []struct {
		name string
		r    VulkanReport
		want []string
	}{
		{"no loader", VulkanReport{Problem: "no Vulkan loader (libvulkan.so.1): not found"}, []string{"no Vulkan loader", "libvulkan1 libglvnd0"}},
		{"no driver", VulkanReport{Loader: "1.3.275", Problem: "vkCreateInstance failed: VK_ERROR_INCOMPATIBLE_DRIVER"}, []string{"VK_DRIVER_FILES", "nvidia_icd.json", "eyeflow doctor"}},
		{"software only", VulkanReport{Loader: "1.3.239", Devices: []Adapter{llvmpipe}}, []string{"only software rasterisers", "llvmpipe", "VK_DRIVER_FILES"}},
		{"gpu refused", VulkanReport{Loader: "1.4.0", Devices: []Adapter{llvmpipe, h200}}, []string{"NVIDIA H200 (discrete GPU)", "Dawn's warnings"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := diagnoseWebGPU(tc.r)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("diagnosis %q lacks %q", got, w)
				}
			}
		})
	}
}

func TestVulkanPreferred(t *testing.T) {
	cpu := Adapter{Name: "llvmpipe", Type: "CPU"}
	igpu := Adapter{Name: "Intel UHD", Type: "integrated GPU"}
	dgpu := Adapter{Name: "NVIDIA H200", Type: "discrete GPU"}
	for _, tc := range []struct {
		name    string
		devices []Adapter
		want    string
	}{
		{"none", nil, ""},
		{"software only", []Adapter{cpu}, "llvmpipe"},
		{"discrete after integrated and software", []Adapter{cpu, igpu, dgpu}, "NVIDIA H200"},
		{"integrated over software", []Adapter{cpu, igpu}, "Intel UHD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := VulkanReport{Devices: tc.devices}.Preferred()
			if got.Name != tc.want || ok != (tc.want != "") {
				t.Errorf("Preferred = %q, %v; want %q", got.Name, ok, tc.want)
			}
		})
	}
}

// ProbeVulkan runs on any machine: with or without a loader it must report
// something coherent, never crash.
func TestProbeVulkanReports(t *testing.T) {
	r := ProbeVulkan()
	switch {
	case r.Loader == "" && r.Problem == "":
		t.Fatal("no loader and no problem stated")
	case len(r.Devices) == 0 && r.Problem == "":
		t.Fatalf("loader %s, no devices and no problem stated", r.Loader)
	}
	for _, d := range r.Devices {
		if d.Name == "" || d.Backend != "vulkan" || d.Type == "" {
			t.Errorf("device %+v: name, type and backend must be set", d)
		}
	}
	t.Logf("Vulkan: %+v", r)
}

// envNoAdapter marks the child process of TestWebGPUWithoutAdapter.
const envNoAdapter = "EYEFLOW_TEST_WEBGPU_NO_ADAPTER"

func wantClearError(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded without a Vulkan driver", what)
	}
	if !errors.Is(err, ErrProviderUnavailable) {
		t.Errorf("%s: %v, want ErrProviderUnavailable", what, err)
	}
	for _, want := range []string{"WebGPU", "Failed to get a WebGPU adapter", "VK_DRIVER_FILES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %q lacks %q", what, err, want)
		}
	}
	if strings.Contains(err.Error(), "webgpu_context.cc") {
		t.Errorf("%s: error %q carries ONNX Runtime's source location instead of its message", what, err)
	}
}

func notesSay(notes []string, parts ...string) bool {
	for _, n := range notes {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(n, p)
		}
		if all {
			return true
		}
	}
	return false
}

// hasGPUForWebGPU reports whether this host should run WebGPU: an NVIDIA GPU
// the kernel shows, or EYEFLOW_TEST_WEBGPU=1 for another GPU.
func hasGPUForWebGPU() bool {
	if os.Getenv("EYEFLOW_TEST_WEBGPU") == "1" {
		return true
	}
	_, err := os.Stat("/dev/nvidia0")
	return err == nil
}

// TestWebGPUMatchesCPU runs the synthetic DenseNet121 through WebGPU and
// through the CPU in the same library: on a GPU host the WebGPU session must
// load, say it runs on WebGPU, one run at a time, on a GPU adapter (not a
// software rasteriser), and agree with the CPU within 1e-4 on every class
// probability (the H200 measurement agreed within 1.6e-6 on the logits). A
// GPU host whose Vulkan setup is incomplete fails here with the reasons
// `eyeflow doctor` gives.
func TestWebGPUMatchesCPU(t *testing.T) {
	if !hasGPUForWebGPU() {
		t.Skip("no GPU on this machine (no /dev/nvidia0; EYEFLOW_TEST_WEBGPU=1 runs this on another GPU): the WebGPU path runs only on a GPU host; " +
			"TestWebGPUWithoutAdapter covers the failure and the fallback here")
	}
	initORT(t)
	files := denseNet(t)
	gpu, err := LoadModel(files, SessionOptions{Device: Device{Kind: "webgpu"}})
	if err != nil {
		t.Fatalf("a GPU host must load the model on WebGPU (README, \"GPU hosts\": the Vulkan loader, VK_DRIVER_FILES, XDG_RUNTIME_DIR; eyeflow doctor): %v", err)
	}
	defer gpu.Close()
	if gpu.Provider != ProviderWebGPU || gpu.ParallelRuns != 1 {
		t.Fatalf("webgpu model: provider %s, %d parallel runs; want %s and 1", gpu.Provider, gpu.ParallelRuns, ProviderWebGPU)
	}
	if gpu.Adapter.Name == "" || gpu.Adapter.Software() {
		t.Fatalf("webgpu adapter %+v: want a GPU", gpu.Adapter)
	}
	t.Logf("adapter %s; notes %q; load %s", gpu.Adapter, gpu.Notes, gpu.LoadTime)
	cpu, err := LoadModel(files, SessionOptions{Device: Device{Kind: "cpu"}})
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.Close()
	images := testImages(7, 8)
	want, err := cpu.Run(images)
	if err != nil {
		t.Fatal(err)
	}
	got, err := gpu.Run(images)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range images {
		for k := range want[i] {
			d := math.Abs(got[i][k] - want[i][k])
			worst = max(worst, d)
			if d > 1e-4 {
				t.Fatalf("image %d class %d: webgpu %.7f, cpu %.7f", i, k, got[i][k], want[i][k])
			}
		}
	}
	t.Logf("largest probability difference from the CPU: %.3g", worst)

	// The fp16 variant on the GPU against the float32 model on the CPU.
	half, err := models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121, FP16: true})
	if err != nil {
		t.Fatal(err)
	}
	fp16, err := LoadModel(half, SessionOptions{Device: Device{Kind: "webgpu"}})
	if err != nil {
		t.Fatalf("fp16 variant on WebGPU: %v", err)
	}
	defer fp16.Close()
	t.Logf("fp16 on WebGPU: notes %q; largest probability difference from float32 on the CPU: %.3g", fp16.Notes, fp16Matches(t, fp16, cpu, images))
}

// fp16Matches compares the fp16 variant's predictions with the float32
// model's: the same top class on every image, and every probability within
// 1e-2 (the bar for offering the variant). It returns the largest difference.
func fp16Matches(t *testing.T, fp16, fp32 *Model, images [][]byte) float64 {
	t.Helper()
	want, err := fp32.Run(images)
	if err != nil {
		t.Fatal(err)
	}
	got, err := fp16.Run(images)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range images {
		if a, b := tinytest.Argmax(got[i]), tinytest.Argmax(want[i]); a != b {
			t.Errorf("image %d: fp16 says class %d (%.4f), float32 class %d (%.4f)", i, a, got[i][a], b, want[i][b])
		}
		for k := range want[i] {
			worst = max(worst, math.Abs(got[i][k]-want[i][k]))
		}
	}
	if worst > 1e-2 {
		t.Errorf("fp16 probabilities differ from float32 by up to %.4f, want at most 0.01", worst)
	}
	return worst
}

func testImages(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	images := make([][]byte, n)
	for i := range images {
		images[i] = make([]byte, ImageBytes)
		for j := range images[i] {
			images[i][j] = byte(rng.IntN(256))
		}
	}
	return append(images, ProbeImages()...)
}

// TestFP16VariantOnCPU checks the fp16 DenseNet121 (eyeflow model synth
// --fp16) against the float32 one where any machine can: on the CPU, which
// runs the fp16 graph through casts ONNX Runtime inserts. It loads as an
// ordinary model (float32 in and out, same card contract) and predicts the
// same classes within 1e-2. The speed that decides whether to use it is a
// GPU's, measured by bench/gpu/run.sh.
func TestFP16VariantOnCPU(t *testing.T) {
	initORT(t)
	half, err := models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121, FP16: true})
	if err != nil {
		t.Fatal(err)
	}
	fp16, err := LoadModel(half, SessionOptions{Device: Device{Kind: "cpu"}})
	if err != nil {
		t.Fatalf("fp16 variant: %v", err)
	}
	defer fp16.Close()
	if fp16.Card.Name != models.SyntheticName+"-fp16" || !models.IsPlaceholder(fp16.Card.Name) {
		t.Errorf("fp16 variant named %q", fp16.Card.Name)
	}
	fp32, err := LoadModel(denseNet(t), SessionOptions{Device: Device{Kind: "cpu"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fp32.Close()
	t.Logf("largest probability difference, fp16 vs float32 on the CPU: %.3g", fp16Matches(t, fp16, fp32, testImages(9, 4)))
}
