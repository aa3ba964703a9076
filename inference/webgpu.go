package inference

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// ProviderWebGPU is ONNX Runtime's WebGPU execution provider: Dawn, built
// into the onnxruntime-node library eyeflow loads, running on Vulkan. It
// needs no CUDA build of ONNX Runtime, only the GPU driver's Vulkan ICD and
// the Vulkan loader (README, "GPU hosts").
const ProviderWebGPU = "WebGpuExecutionProvider"

// webgpuEPName is the name AppendExecutionProvider takes for it.
const webgpuEPName = "WebGPU"

// webgpuDefaults are the WebGPU provider options eyeflow sets unless told otherwise.
// Dawn is told to use Vulkan with the high-performance preference, so the
// adapter it takes is the one ProbeVulkan reports (Preferred): a discrete GPU
// first. Everything that changes speed (layout, graph capture, validation,
// buffer caches) is left at ONNX Runtime's defaults, which is what the
// H200 measurement in processors/classifier/README.md ran with, until
// bench/gpu/run.sh shows another setting is faster.
func webgpuDefaults() map[string]string {
	return map[string]string{"dawnBackendType": "Vulkan", "powerPreference": "high-performance"}
}

// webgpuOptionValues returns the options ONNX Runtime 1.24.1's WebGPU provider
// reads (onnxruntime/core/providers/webgpu/webgpu_provider_options.h, short
// names: AppendExecutionProvider adds the "ep.webgpuexecutionprovider."
// prefix) and the values each accepts; nil accepts any unsigned integer, and
// forceCpuNodeNames any text. ONNX Runtime silently ignores a key it does
// not know, so eyeflow refuses one here instead. deviceId, webgpuInstance,
// webgpuDevice and dawnProcTable (which take pointers to an application's
// own Dawn objects) are left out on purpose; adapterIndex, enableInt64 and
// enableRobustness came after 1.24.1.
func webgpuOptionValues() map[string][]string {
	cache := []string{"disabled", "lazyRelease", "simple", "bucket"}
	return map[string][]string{
		"preferredLayout":             {"NCHW", "NHWC"},
		"enableGraphCapture":          {"0", "1"},
		"validationMode":              {"disabled", "wgpuOnly", "basic", "full"},
		"powerPreference":             {"high-performance", "low-power"},
		"dawnBackendType":             {"Vulkan", "D3D12"},
		"storageBufferCacheMode":      cache,
		"uniformBufferCacheMode":      cache,
		"queryResolveBufferCacheMode": cache,
		"defaultBufferCacheMode":      cache,
		"maxStorageBufferBindingSize": nil,
		"enablePIXCapture":            {"0", "1"},
		"preserveDevice":              {"0", "1"},
		"forceCpuNodeNames":           nil,
	}
}

// WebGPUOptions are provider options for --device webgpu, by the short names
// ONNX Runtime documents (preferredLayout=NCHW, enableGraphCapture=1,
// validationMode=disabled, ...). They are applied over eyeflow's defaults
// (Vulkan, high-performance).
type WebGPUOptions map[string]string

// ParseWebGPUOptions parses "key=value,key=value" and checks every key and
// value against what ONNX Runtime 1.24.1 accepts.
func ParseWebGPUOptions(s string) (WebGPUOptions, error) {
	o := WebGPUOptions{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("webgpu option %q: want key=value", kv)
		}
		o[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o WebGPUOptions) validate() error {
	values := webgpuOptionValues()
	for _, k := range slices.Sorted(maps.Keys(o)) {
		v := o[k]
		k = strings.TrimPrefix(k, "ep.webgpuexecutionprovider.")
		allowed, known := values[k]
		switch {
		case !known:
			return fmt.Errorf("webgpu option %q: ONNX Runtime %s's WebGPU provider has no such option (it has %s)",
				k, ORTVersion, strings.Join(slices.Sorted(maps.Keys(values)), ", "))
		case allowed == nil && k != "forceCpuNodeNames":
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				return fmt.Errorf("webgpu option %s=%q: want an unsigned integer", k, v)
			}
		case allowed != nil && !slices.Contains(allowed, v):
			return fmt.Errorf("webgpu option %s=%q: want one of %s", k, v, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// String is the options as ParseWebGPUOptions reads them, sorted.
func (o WebGPUOptions) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(o)) {
		parts = append(parts, k+"="+o[k])
	}
	return strings.Join(parts, ",")
}

// providerOptions are the options handed to ONNX Runtime: eyeflow's defaults
// with o over them.
func (o WebGPUOptions) providerOptions() map[string]string {
	out := webgpuDefaults()
	for k, v := range o {
		out[strings.TrimPrefix(k, "ep.webgpuexecutionprovider.")] = v
	}
	return out
}

// appendWebGPU adds the WebGPU provider to so. ONNX Runtime creates the
// Dawn instance, adapter and device right here (not when the session is
// created), so an unusable host fails in this call, and the error then says
// why as far as the Vulkan loader can tell.
func appendWebGPU(so *ort.SessionOptions, d Device, o WebGPUOptions) error {
	if d.ID != 0 {
		// ONNX Runtime 1.24.1's "deviceId" is a context id that needs an
		// application's own WebGPU device, and its adapterIndex option is
		// newer: it always takes the first adapter Dawn ranks.
		return fmt.Errorf("%w: webgpu:%d: ONNX Runtime %s's WebGPU provider cannot choose among adapters (it takes the first one Dawn ranks, a discrete GPU first); "+
			"expose only the GPU you want to the process (docker run --gpus device=%d, or NVIDIA_VISIBLE_DEVICES=%d under the NVIDIA Container Toolkit) and use --device webgpu",
			ErrProviderUnavailable, d.ID, ORTVersion, d.ID, d.ID)
	}
	if err := o.validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrProviderUnavailable, err)
	}
	if err := so.AppendExecutionProvider(webgpuEPName, o.providerOptions()); err != nil {
		return fmt.Errorf("%w: WebGPU: %s; %s", ErrProviderUnavailable, ortReason(err), diagnoseWebGPU(ProbeVulkan()))
	}
	return nil
}

// ortReason shortens an ONNX Runtime exception to its message: the
// binding's text starts with the source file, line and the failed
// expression ("webgpu_context.cc:63 ... was false. Failed to get a WebGPU
// adapter: No supported adapters").
func ortReason(err error) string {
	s := err.Error()
	if i := strings.Index(s, " was false. "); i >= 0 {
		return s[i+len(" was false. "):]
	}
	return s
}

// diagnoseWebGPU says, from the Vulkan loader's view, why Dawn found no
// adapter, and what to install or set. Dawn prints its own reasons to
// standard error ("Warning: vkCreateInstance: Found no drivers!", or why it
// refused a device).
func diagnoseWebGPU(r VulkanReport) string {
	pkgs := strings.Join(VulkanPackages(), " ")
	switch {
	case r.Loader == "":
		return "Vulkan: " + r.Problem + " (install " + pkgs + ")"
	case len(r.Devices) == 0:
		return "Vulkan " + r.Loader + ": " + r.Problem + ": no GPU driver's Vulkan ICD could be used (set VK_DRIVER_FILES to the driver's ICD manifest, " +
			"for NVIDIA nvidia_icd.json, e.g. /usr/share/vulkan/icd.d/nvidia_icd.json or /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json in a container; " +
			"NVIDIA's ICD also needs " + pkgs + "); `eyeflow doctor` checks each ICD"
	}
	var names []string
	gpu := false
	for _, d := range r.Devices {
		names = append(names, d.Name+" ("+d.Type+")")
		gpu = gpu || !d.Software()
	}
	if !gpu {
		return "Vulkan " + r.Loader + " lists only software rasterisers (" + strings.Join(names, "; ") + "), which Dawn does not take as a WebGPU adapter here: " +
			"this host has no usable GPU driver for Vulkan (set VK_DRIVER_FILES to the GPU driver's ICD manifest, e.g. nvidia_icd.json)"
	}
	return "Vulkan " + r.Loader + " lists " + strings.Join(names, "; ") + ", yet Dawn took none of them: see Dawn's warnings on standard error, and `eyeflow doctor`"
}

// VulkanPackages are the Debian/Ubuntu packages a host needs for the WebGPU
// provider besides the NVIDIA driver: the Vulkan loader and the GL
// vendor-neutral libraries. libvulkan1 alone is not enough: NVIDIA's Vulkan
// driver is libGLX_nvidia.so.0, which needs libglvnd, and without it the
// loader says "Could not get 'vkCreateInstance' ... for ICD
// libGLX_nvidia.so.0". Dockerfile.gpu and bench/gpu/run.sh install exactly
// these (a test checks).
func VulkanPackages() []string {
	return []string{"libvulkan1", "libglvnd0", "libglx0", "libegl1", "libgl1", "libopengl0", "libgles2",
		"libx11-6", "libxcb1", "libxau6", "libxdmcp6", "libbsd0", "libmd0", "libxext6"}
}

// webgpuAdapter is the adapter a WebGPU session runs on, as the Vulkan
// loader reports it (see Adapter).
func webgpuAdapter() Adapter {
	a, ok := ProbeVulkan().Preferred()
	if !ok {
		return Adapter{Name: "unknown", Vendor: "unknown", Type: "unknown", Backend: "vulkan"}
	}
	return a
}
