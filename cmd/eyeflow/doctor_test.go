package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"eyeflow/inference"
)

func TestDeviceFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bad webgpu ordinal", []string{"predict", "--model", "m", "--device", "webgpu:x", "f.jpg"}, "bad GPU ordinal"},
		{"unknown device", []string{"predict", "--model", "m", "--device", "vulkan", "f.jpg"}, "webgpu[:N]"},
		{"bad webgpu option value", []string{"predict", "--model", "m", "--webgpu-options", "validationMode=off", "f.jpg"}, "want one of disabled"},
		{"misspelt webgpu option", []string{"classifier", "--webgpu-options", "preferedLayout=NCHW"}, "no such option"},
		{"negative max batch", []string{"predict", "--model", "m", "--max-batch", "-1", "f.jpg"}, "--max-batch -1"},
		{"doctor requires a known device", []string{"doctor", "--require", "gpu"}, "want cpu, cuda, webgpu or auto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// envDoctorChild marks the child process of TestWithoutGPUAdapter.
const envDoctorChild = "EYEFLOW_TEST_DOCTOR_NO_ADAPTER"

// TestGPUHostPackagesAgree: Dockerfile.gpu's WebGPU image, bench/gpu/run.sh
// and the README install exactly inference.VulkanPackages, the list the
// H200 host was measured with, and the image sets the variables Dawn needs.
func TestGPUHostPackagesAgree(t *testing.T) {
	want := inference.VulkanPackages()
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("../..", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	docker := read("Dockerfile.gpu")
	stage := docker[strings.Index(docker, "AS webgpu"):]
	install := stage[strings.Index(stage, "apt-get install"):]
	install = install[:strings.Index(install, "rm -rf")]
	for _, tc := range []struct {
		name, text string
	}{
		{"Dockerfile.gpu (webgpu stage)", install},
		{"bench/gpu/run.sh", regexp.MustCompile(`(?m)^debs=\((.*)\)$`).FindStringSubmatch(read("bench/gpu/run.sh"))[1]},
		{"README.md", read("README.md")},
	} {
		for _, p := range want {
			if !regexp.MustCompile(`(^|[\s"'(])` + regexp.QuoteMeta(p) + `($|[\s"')\\])`).MatchString(tc.text) {
				t.Errorf("%s does not install %s", tc.name, p)
			}
		}
	}
	if got := strings.Fields(regexp.MustCompile(`(?m)^debs=\((.*)\)$`).FindStringSubmatch(read("bench/gpu/run.sh"))[1]); !slices.Equal(got, want) {
		t.Errorf("bench/gpu/run.sh downloads %v, want exactly %v", got, want)
	}
	for _, v := range []string{"XDG_RUNTIME_DIR=", "NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics", "VK_DRIVER_FILES="} {
		if !strings.Contains(stage, v) {
			t.Errorf("Dockerfile.gpu's webgpu image does not set %s", v)
		}
	}
}

func hintsSay(hints []string, parts ...string) bool {
	for _, h := range hints {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(h, p)
		}
		if all {
			return true
		}
	}
	return false
}
