package inference

import (
	"errors"
	"testing"

	"eyeflow/internal/machine"
	"eyeflow/internal/tinytest"
)

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]Device{"cpu": {Kind: "cpu"}, "": {Kind: "cpu"}, "cuda": {Kind: "cuda"}, "cuda:1": {Kind: "cuda", ID: 1}, "TensorRT:2": {Kind: "tensorrt", ID: 2}, "auto": {Kind: "auto"}} {
		got, err := ParseDevice(in)
		if err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"gpu", "cuda:x", "cpu:0", "cuda:-1"} {
		if _, err := ParseDevice(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCUDAUnavailableFailsClearly(t *testing.T) {
	initORT(t)
	// The test library is the CPU-only build: asking for CUDA must fail at
	// load, naming the provider, and auto must fall back to the CPU.
	gm, err := LoadModel(tinytest.Model(t, "v1"), SessionOptions{Device: Device{Kind: "cuda"}})
	if err == nil {
		// A GPU build on a GPU host: then the provider must say so.
		defer gm.Close()
		if gm.Provider != ProviderCUDA {
			t.Fatalf("cuda requested, provider %s", gm.Provider)
		}
		return
	}
	if !errorsIs(err, ErrProviderUnavailable) {
		t.Fatalf("err %v, want ErrProviderUnavailable", err)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func TestSessionPlan(t *testing.T) {
	const gib = int64(1) << 30
	big := func(cores int) machine.Machine { return machine.Machine{Cores: cores, Memory: 256 * gib} }
	for _, tc := range []struct {
		name          string
		opts          SessionOptions
		provider      string
		m             machine.Machine
		threads, runs int
	}{
		{"2 cores: a single-threaded run per core", SessionOptions{}, ProviderCPU, big(2), 1, 2},
		{"8 cores: a single-threaded run per core", SessionOptions{}, ProviderCPU, big(8), 1, 8},
		// The measurement: 1x16 gave 131-159 images/s, 2x8 85-105.
		{"16 cores: 1x16, not 2x8", SessionOptions{}, ProviderCPU, big(16), 1, 16},
		{"64 cores: 64 single-threaded runs", SessionOptions{}, ProviderCPU, big(64), 1, 64},
		{"memory unknown: no bound", SessionOptions{}, ProviderCPU, machine.Machine{Cores: 12}, 1, 12},
		// 2 GiB for the model's runs, 112 MiB per run of 8: 18 runs.
		{"memory bounds the runs: threads share the cores", SessionOptions{Memory: 2 * gib}, ProviderCPU, big(64), 4, 16},
		{"larger batches hold more memory per run", SessionOptions{Memory: 2 * gib, MaxBatch: 64}, ProviderCPU, big(16), 8, 2},
		{"less than one run's memory: still one run", SessionOptions{Memory: 1}, ProviderCPU, big(4), 4, 1},
		{"threads given", SessionOptions{IntraOpThreads: 2}, ProviderCPU, big(2), 2, 1},
		{"threads above the cores", SessionOptions{IntraOpThreads: 8}, ProviderCPU, big(2), 8, 1},
		{"threads given, many cores", SessionOptions{IntraOpThreads: 1}, ProviderCPU, big(16), 1, 16},
		{"runs given", SessionOptions{ParallelRuns: 2}, ProviderCPU, big(2), 1, 2},
		{"one run gets every core", SessionOptions{ParallelRuns: 1}, ProviderCPU, big(4), 4, 1},
		{"both given", SessionOptions{IntraOpThreads: 3, ParallelRuns: 5}, ProviderCPU, big(2), 3, 5},
		{"gpu: one run, ONNX Runtime's threads", SessionOptions{}, ProviderCUDA, big(16), 0, 1},
		{"gpu runs given", SessionOptions{ParallelRuns: 2, IntraOpThreads: 2}, ProviderTensorRT, big(16), 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			threads, runs := tc.opts.plan(tc.provider, tc.m)
			if threads != tc.threads || runs != tc.runs {
				t.Errorf("plan(%s, %d cores, %d MiB) = %d threads x %d runs, want %d x %d", tc.provider, tc.m.Cores, tc.m.Memory>>20, threads, runs, tc.threads, tc.runs)
			}
		})
	}
	// Plan is plan with this machine.
	wt, wr := SessionOptions{}.plan(ProviderCPU, machine.Detect())
	if gt, gr := (SessionOptions{}).Plan(ProviderCPU); gt != wt || gr != wr {
		t.Errorf("Plan = %d x %d, plan with machine.Detect() = %d x %d", gt, gr, wt, wr)
	}
}

// TestSessionPlanEveryCoreCount: for 2 to 64 cores the default CPU plan is
// one single-threaded run per core while memory holds them, and otherwise
// never holds more runs than the memory budget, never uses more threads
// than cores, and leaves fewer idle cores than one run's threads.
func TestSessionPlanEveryCoreCount(t *testing.T) {
	for cores := 2; cores <= 64; cores++ {
		for _, budget := range []int64{1 << 40, 8 << 30, 2 << 30, 512 << 20} {
			for _, batch := range []int{1, 8, 64} {
				o := SessionOptions{Memory: budget, MaxBatch: batch}
				threads, runs := o.plan(ProviderCPU, machine.Machine{Cores: cores, Memory: 4 * budget})
				fits := int(budget / (int64(batch) * RunBytesPerImage))
				switch {
				case fits >= cores && (threads != 1 || runs != cores):
					t.Fatalf("%d cores, room for %d runs of %d: plan %dx%d, want 1x%d", cores, fits, batch, threads, runs, cores)
				case runs < 1 || threads < 1:
					t.Fatalf("%d cores: plan %dx%d", cores, threads, runs)
				case runs > max(fits, 1):
					t.Fatalf("%d cores, room for %d runs of %d: plan %dx%d holds more", cores, fits, batch, threads, runs)
				case threads*runs > cores:
					t.Fatalf("%d cores: plan %dx%d uses %d threads", cores, threads, runs, threads*runs)
				case cores-threads*runs >= threads:
					t.Fatalf("%d cores: plan %dx%d leaves %d cores idle", cores, threads, runs, cores-threads*runs)
				}
			}
		}
	}
}

func TestMaxBatchFor(t *testing.T) {
	cpu := &Model{Provider: ProviderCPU}
	gpu := &Model{Provider: ProviderCUDA}
	trt := &Model{Provider: ProviderTensorRT}
	carded := &Model{Provider: ProviderCUDA}
	carded.Card.MaxBatch = 32
	for _, tc := range []struct {
		name       string
		configured int
		m          *Model
		want       int
	}{
		{"cpu default", 0, cpu, DefaultMaxBatchCPU},
		{"no model yet", 0, nil, DefaultMaxBatchCPU},
		{"cuda default", 0, gpu, 64},
		{"tensorrt default", 0, trt, 64},
		{"the card's", 0, carded, 32},
		{"configured", 16, gpu, 16},
		{"configured, capped by the card", 128, carded, 32},
	} {
		if got := MaxBatchFor(tc.configured, tc.m); got != tc.want {
			t.Errorf("%s: MaxBatchFor(%d) = %d, want %d", tc.name, tc.configured, got, tc.want)
		}
	}
	if DefaultMaxBatchOn(Device{Kind: "cuda"}) != 64 || DefaultMaxBatchOn(Device{Kind: "tensorrt", ID: 1}) != 64 || DefaultMaxBatchOn(Device{Kind: "webgpu"}) != 64 || DefaultMaxBatchOn(Device{Kind: "cpu"}) != 8 {
		t.Error("DefaultMaxBatchOn: want 64 on cuda, tensorrt and webgpu, 8 on the cpu")
	}
}

// With ParallelRuns 2, two runs are in flight at once: each run's observe
// hook (called inside the run, before its callers get their replies) waits
// until the other run has reached it too. Runs one at a time never meet.
