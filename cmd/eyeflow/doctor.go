package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"eyeflow/inference"
	"eyeflow/models"
)

// deviceCheck is one device as `eyeflow doctor` found it.
type deviceCheck struct {
	Device   string             `json:"device"`
	Usable   bool               `json:"usable"`
	Provider string             `json:"provider,omitempty"`
	Adapter  *inference.Adapter `json:"adapter,omitempty"`
	// MaxDiff is the largest difference from the CPU's probabilities on
	// the tiny model's test images (GPU devices that work).
	MaxDiff *float64 `json:"max_diff_vs_cpu,omitempty"`
	Problem string   `json:"problem,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// doctorReport is everything `eyeflow doctor` prints.
type doctorReport struct {
	ORTLibrary string        `json:"onnxruntime_library"`
	ORTVersion string        `json:"onnxruntime_version"`
	CPUs       int           `json:"cpus"`
	Devices    []deviceCheck `json:"devices"`
	// Auto is the device --device auto picks here.
	Auto   string                 `json:"auto"`
	Vulkan inference.VulkanReport `json:"vulkan"`
	ICDs   []inference.ICD        `json:"vulkan_icds"`
	Env    map[string]string      `json:"env"`
	Hints  []string               `json:"hints,omitempty"`
}

// runDoctor is `eyeflow doctor`: which devices this host can run the
// classifier on and, for a GPU it cannot use, why not.
func runDoctor(ctx context.Context, args []string, out, errOut io.Writer) error {
	var ortLib, webgpuOpts, require string
	var asJSON bool
	fs := newFlagSet("doctor", "", "Says where this host can run models: loads ONNX Runtime, runs a test model on cpu, cuda and webgpu\n"+
		"(comparing a GPU's output with the CPU's), and for WebGPU lists what the Vulkan loader sees (devices, driver\n"+
		"manifests and whether their libraries load) and the variables Dawn needs, with what to install or set.\n"+
		"Dawn prints its own findings on standard error.", out, errOut)
	fs.stringVar(&ortLib, "ort-lib", "", "path of libonnxruntime.so "+inference.ORTVersion)
	fs.stringVar(&webgpuOpts, "webgpu-options", "", "WebGPU provider options to check with (as for the classifier)")
	fs.stringVar(&require, "require", "", "exit with an error unless this device (cpu, cuda, webgpu or auto: any GPU) is usable")
	fs.boolVar(&asJSON, "json", false, "print one JSON object")
	if err := fs.parse(args); err != nil {
		return err
	}
	wopts, err := inference.ParseWebGPUOptions(webgpuOpts)
	if err != nil {
		return fmt.Errorf("--webgpu-options: %w", err)
	}
	switch require {
	case "", "cpu", "cuda", "webgpu", "auto":
	default:
		return fmt.Errorf("--require %q: want cpu, cuda, webgpu or auto", require)
	}
	if err := inference.InitRuntime(cmp.Or(ortLib, inference.FindLibrary(os.Getenv))); err != nil {
		return err
	}
	rep := doctor(wopts)
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
	} else {
		writeDoctor(out, rep)
	}
	if require != "" {
		for _, d := range rep.Devices {
			if d.Device == require && !d.Usable {
				return fmt.Errorf("doctor: %s is not usable here: %s", require, d.Problem)
			}
		}
		if require == "auto" && rep.Auto == "cpu" {
			return errors.New("doctor: no GPU device is usable here (auto would run on the CPU)")
		}
	}
	return nil
}

// doctor checks every device. The WebGPU session comes before the Vulkan
// probes, and the ICD checks (which load every driver library into this
// process) come last, so the session sees the host as the classifier would.
func doctor(wopts inference.WebGPUOptions) doctorReport {
	rep := doctorReport{ORTVersion: inference.RuntimeVersion(), CPUs: runtime.NumCPU(), Env: map[string]string{}}
	rep.ORTLibrary = inference.RuntimeLibrary()
	cpuModel, cpuErr := tinyOn(inference.SessionOptions{Device: inference.Device{Kind: "cpu"}})
	for _, kind := range []string{"cpu", "cuda", "webgpu"} {
		c := deviceCheck{Device: kind}
		res, err := inference.ResolveDevice(inference.SessionOptions{Device: inference.Device{Kind: kind}, WebGPU: wopts})
		if err != nil {
			c.Problem = err.Error()
			rep.Devices = append(rep.Devices, c)
			continue
		}
		c.Usable, c.Provider, c.Notes = true, res.Provider, res.Notes
		if res.Adapter.Name != "" {
			a := res.Adapter
			c.Adapter = &a
		}
		if kind != "cpu" && cpuErr == nil {
			if d, err := compareWithCPU(cpuModel, inference.SessionOptions{Device: res.Device, WebGPU: wopts}); err != nil {
				c.Usable, c.Problem = false, err.Error()
			} else {
				c.MaxDiff = &d
				if d > 1e-3 {
					c.Usable, c.Problem = false, fmt.Sprintf("its probabilities differ from the CPU's by %.3g on the test images", d)
				}
			}
		}
		rep.Devices = append(rep.Devices, c)
	}
	if cpuModel != nil {
		cpuModel.Close()
	}
	rep.Auto = "cpu"
	for _, kind := range []string{"cuda", "webgpu"} {
		for _, d := range rep.Devices {
			if d.Device == kind && d.Usable && rep.Auto == "cpu" {
				rep.Auto = kind
			}
		}
	}
	rep.Vulkan = inference.ProbeVulkan()
	for _, k := range []string{"VK_DRIVER_FILES", "VK_ICD_FILENAMES", "XDG_RUNTIME_DIR", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"} {
		if v, ok := os.LookupEnv(k); ok {
			rep.Env[k] = v
		}
	}
	rep.ICDs = inference.VulkanICDs(os.Getenv)
	rep.Hints = doctorHints(rep)
	return rep
}

// tinyOn loads the tiny synthetic model on opts.
func tinyOn(opts inference.SessionOptions) (*inference.Model, error) {
	files, err := models.Synthesize(models.SynthOptions{Arch: models.ArchTiny})
	if err != nil {
		return nil, err
	}
	return inference.LoadModel(files, opts)
}

// compareWithCPU runs the tiny model's probe images on opts and on the
// CPU and returns the largest difference between their probabilities.
func compareWithCPU(cpu *inference.Model, opts inference.SessionOptions) (float64, error) {
	m, err := tinyOn(opts)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	images := inference.ProbeImages()
	want, err := cpu.Run(images)
	if err != nil {
		return 0, err
	}
	got, err := m.Run(images)
	if err != nil {
		return 0, fmt.Errorf("a test run on %s failed: %w", m.Provider, err)
	}
	worst := 0.0
	for i := range want {
		for k := range want[i] {
			worst = math.Max(worst, math.Abs(got[i][k]-want[i][k]))
		}
	}
	return worst, nil
}

// doctorHints says what to install or set for WebGPU.
func doctorHints(rep doctorReport) []string {
	var hints []string
	usable := func(kind string) bool {
		for _, d := range rep.Devices {
			if d.Device == kind {
				return d.Usable
			}
		}
		return false
	}
	if usable("webgpu") {
		return nil
	}
	pkgs := strings.Join(inference.VulkanPackages(), " ")
	if rep.Vulkan.Loader == "" {
		hints = append(hints, "install the Vulkan loader and the GL vendor-neutral libraries: apt-get install "+pkgs)
	}
	if _, ok := rep.Env["VK_DRIVER_FILES"]; !ok {
		if _, err := os.Stat("/dev/nvidia0"); err == nil {
			hints = append(hints, "this host has an NVIDIA GPU: set VK_DRIVER_FILES to the driver's nvidia_icd.json "+
				"(/usr/share/vulkan/icd.d/nvidia_icd.json, or /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json where the NVIDIA Container Toolkit mounts the driver; "+
				"with docker, --gpus all and NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics)")
		}
	}
	for _, icd := range rep.ICDs {
		if icd.Problem != "" {
			hints = append(hints, fmt.Sprintf("Vulkan driver manifest %s: %s", icd.Manifest, icd.Problem))
		}
	}
	gpu := false
	for _, d := range rep.Vulkan.Devices {
		gpu = gpu || !d.Software()
	}
	if !gpu && !hasGPUDevice() {
		hints = append(hints, "this host shows no GPU (no /dev/nvidia0 or /dev/dri/renderD*, and Vulkan lists no GPU): --device webgpu needs a GPU host")
	}
	if _, ok := rep.Env["XDG_RUNTIME_DIR"]; !ok {
		hints = append(hints, "set XDG_RUNTIME_DIR to a private folder (e.g. mkdir -m 0700 /tmp/xdg-$(id -u)): "+
			"Vulkan drivers print \"XDG_RUNTIME_DIR is invalid or not set\" without it, and the H200 host eyeflow was measured on needed it")
	}
	return hints
}

// hasGPUDevice reports whether the kernel shows a GPU: NVIDIA's device
// node or a DRM render node.
func hasGPUDevice() bool {
	if _, err := os.Stat("/dev/nvidia0"); err == nil {
		return true
	}
	m, _ := filepath.Glob("/dev/dri/renderD*")
	return len(m) > 0
}

func writeDoctor(w io.Writer, rep doctorReport) {
	fmt.Fprintf(w, "ONNX Runtime %s: %s\n", rep.ORTVersion, rep.ORTLibrary)
	fmt.Fprintf(w, "CPUs: %d\n\n", rep.CPUs)
	for _, d := range rep.Devices {
		if d.Usable {
			fmt.Fprintf(w, "%-7s usable: %s", d.Device, d.Provider)
			if d.Adapter != nil {
				fmt.Fprintf(w, " on %s", d.Adapter)
			}
			if d.MaxDiff != nil {
				fmt.Fprintf(w, "; matches the CPU within %.2g", *d.MaxDiff)
			}
			fmt.Fprintln(w)
		} else {
			fmt.Fprintf(w, "%-7s not usable: %s\n", d.Device, d.Problem)
		}
		for _, n := range d.Notes {
			fmt.Fprintf(w, "        note: %s\n", n)
		}
	}
	fmt.Fprintf(w, "auto    would run on: %s\n\n", rep.Auto)
	if rep.Vulkan.Loader == "" {
		fmt.Fprintf(w, "Vulkan: %s\n", rep.Vulkan.Problem)
	} else {
		fmt.Fprintf(w, "Vulkan loader %s:", rep.Vulkan.Loader)
		if len(rep.Vulkan.Devices) == 0 {
			fmt.Fprintf(w, " %s\n", rep.Vulkan.Problem)
		} else {
			fmt.Fprintln(w)
			for _, d := range rep.Vulkan.Devices {
				fmt.Fprintf(w, "  device %s, Vulkan %s\n", d, d.API)
			}
		}
	}
	for _, icd := range rep.ICDs {
		state := "loads"
		if icd.Problem != "" {
			state = icd.Problem
		}
		fmt.Fprintf(w, "  driver manifest %s -> %s: %s\n", icd.Manifest, icd.Library, state)
	}
	if len(rep.ICDs) == 0 {
		fmt.Fprintln(w, "  no Vulkan driver manifest found")
	}
	var env []string
	for _, k := range []string{"VK_DRIVER_FILES", "VK_ICD_FILENAMES", "XDG_RUNTIME_DIR", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES"} {
		v, ok := rep.Env[k]
		if !ok {
			v = "(unset)"
		}
		env = append(env, k+"="+v)
	}
	fmt.Fprintf(w, "  %s\n", strings.Join(env, " "))
	if len(rep.Hints) > 0 {
		fmt.Fprintln(w, "\nTo use the GPU through WebGPU:")
		for _, h := range rep.Hints {
			fmt.Fprintf(w, "  - %s\n", h)
		}
	}
}
