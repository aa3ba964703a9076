package inference

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"eyeflow/internal/machine"
	"eyeflow/internal/nice"
	"eyeflow/onnx"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvORTLibrary names the environment variable with the path of
// libonnxruntime.so (scripts/install-ort.sh prints one).
const EnvORTLibrary = "EYEFLOW_ORT_LIB"

// ORTVersion is the ONNX Runtime release whose C API (version 24) the
// onnxruntime_go binding is compiled against. An older library fails to
// initialise ("Error setting ORT API base: 2").
const ORTVersion = "1.24.1"

// Execution provider names, as ONNX Runtime spells them.
const (
	ProviderCPU      = "CPUExecutionProvider"
	ProviderCUDA     = "CUDAExecutionProvider"
	ProviderTensorRT = "TensorrtExecutionProvider"
)

var (
	ortMu      sync.Mutex
	ortLibrary string
)

// InitRuntime loads the ONNX Runtime shared library and creates the
// process-wide environment. ONNX Runtime allows one environment per process,
// so every model and every env shares it: the first call initialises, later
// calls with the same (or an empty) path are no-ops, and a different path is
// an error rather than a silent mismatch. The caller finds the path
// (FindLibrary); library code reads no environment.
func InitRuntime(library string) error {
	ortMu.Lock()
	defer ortMu.Unlock()
	if ort.IsInitialized() {
		if library != "" && library != ortLibrary {
			return fmt.Errorf("onnxruntime: already initialised with %s, cannot switch to %s", ortLibrary, library)
		}
		return nil
	}
	if library == "" {
		return fmt.Errorf("onnxruntime: no library path: set --ort-lib or $%s (scripts/install-ort.sh installs ONNX Runtime %s and prints its path)", EnvORTLibrary, ORTVersion)
	}
	if _, err := os.Stat(library); err != nil {
		return fmt.Errorf("onnxruntime: library %s: %w (scripts/install-ort.sh installs ONNX Runtime %s)", library, err, ORTVersion)
	}
	ort.SetSharedLibraryPath(library)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		hint := ""
		if strings.Contains(err.Error(), "API base") {
			hint = fmt.Sprintf(" (the library is older than ONNX Runtime %s, whose C API this build needs)", ORTVersion)
		}
		return fmt.Errorf("onnxruntime: initialise %s: %w%s", library, err, hint)
	}
	ortLibrary = library
	return nil
}

// RuntimeLibrary is the path of the loaded library, "" before InitRuntime.
func RuntimeLibrary() string {
	ortMu.Lock()
	defer ortMu.Unlock()
	return ortLibrary
}

// RuntimeVersion is the loaded library's version string, "" before InitRuntime.
func RuntimeVersion() string {
	if !ort.IsInitialized() {
		return ""
	}
	return ort.GetVersion()
}

// Device selects where a model runs.
type Device struct {
	// Kind is "cpu", "cuda", "tensorrt", "webgpu" or "auto" (CUDA when
	// the library and the host support it, else WebGPU when Dawn finds a
	// GPU adapter, else the CPU).
	Kind string
	// ID is the GPU ordinal for cuda, tensorrt and webgpu.
	ID int
}

func (d Device) String() string {
	if d.Provider() != ProviderCPU && d.Provider() != "" && d.ID != 0 {
		return d.Kind + ":" + strconv.Itoa(d.ID)
	}
	return d.Kind
}

// Provider is the execution provider an explicit device runs on: "" for
// auto, which is decided when a session is created (ResolveDevice).
func (d Device) Provider() string {
	switch d.Kind {
	case "", "cpu":
		return ProviderCPU
	case "cuda":
		return ProviderCUDA
	case "tensorrt":
		return ProviderTensorRT
	case "webgpu":
		return ProviderWebGPU
	}
	return ""
}

// IsGPUProvider reports whether provider runs on a GPU (every provider
// eyeflow appends but the CPU's).
func IsGPUProvider(provider string) bool {
	return provider == ProviderCUDA || provider == ProviderTensorRT || provider == ProviderWebGPU
}

// DefaultMaxBatch is the most images per session run when none is
// configured, by the provider the model runs on. The CPU keeps 8 (several
// single-threaded runs side by side; BENCHMARKS.md, "Classifier"). A GPU
// needs large batches: DenseNet121 on an H200 through WebGPU ran 107
// images/s at batch 1, 656 at 8 and 916 at 64 (71.7 ms a run), so 64, with
// the batcher filling them while the previous run is on the GPU.
func DefaultMaxBatch(provider string) int {
	if IsGPUProvider(provider) {
		return DefaultMaxBatchGPU
	}
	return DefaultMaxBatchCPU
}

// ParseDevice parses cpu, cuda[:N], tensorrt[:N], webgpu[:N] or auto.
func ParseDevice(s string) (Device, error) {
	kind, id, hasID := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	d := Device{Kind: kind}
	switch kind {
	case "cpu", "auto":
		if hasID {
			return Device{}, fmt.Errorf("device %q: %s takes no ordinal", s, kind)
		}
	case "cuda", "tensorrt", "webgpu":
		if hasID {
			n, err := strconv.Atoi(id)
			if err != nil || n < 0 {
				return Device{}, fmt.Errorf("device %q: bad GPU ordinal %q", s, id)
			}
			d.ID = n
		}
	case "":
		return Device{Kind: "cpu"}, nil
	default:
		return Device{}, fmt.Errorf("device %q: want cpu, cuda[:N], tensorrt[:N], webgpu[:N] or auto", s)
	}
	return d, nil
}

// SessionOptions configure one ONNX Runtime session.
type SessionOptions struct {
	Device Device
	// IntraOpThreads is the number of threads one session run uses. 0
	// picks: on the CPU, the cores divided among ParallelRuns (one thread
	// per run when both are 0, unless memory bounds the runs); on a GPU,
	// ONNX Runtime's default.
	IntraOpThreads int
	// ParallelRuns is how many session runs of one loaded model execute at
	// once (an ONNX Runtime session is safe for concurrent runs, so the
	// weights are loaded once). 0 picks: on the CPU, enough runs of
	// IntraOpThreads threads to fill the cores (when neither is given, one
	// single-threaded run per core, as many as Memory holds); on a GPU,
	// one. On the CPU, single-threaded runs side by side beat runs split
	// across threads, on 2 cores as on 16: a run's parallel ops wait for
	// their slowest thread, and a thread that shares its core with
	// anything (JPEG decodes, message handling) stalls the whole op
	// (BENCHMARKS.md, "Classifier": 46.7 against 26.3 images/s at batch 1
	// on 2 cores; 131-159 for 1x16 against 85-105 for 2x8 at batch 8 on 16).
	ParallelRuns int
	// InterOpThreads parallelises independent graph branches; 0 is ORT's default.
	InterOpThreads int
	// Spin lets ONNX Runtime's idle threads busy-wait for the next op. It
	// is off by default: in eyeflow the same cores decode JPEGs and move
	// messages between runs, and spinning threads would take that time.
	Spin bool
	// WebGPU are provider options for the webgpu device (and auto, when it
	// lands there): see WebGPUOptions.
	WebGPU WebGPUOptions
	// Memory is the bytes this model's runs in flight may hold together
	// (RunBytesPerImage per image of a MaxBatch run); it bounds the
	// default ParallelRuns. 0: half the machine's memory.
	Memory int64
	// MaxBatch is the batch the runs are sized for (0: DefaultMaxBatchCPU).
	MaxBatch int
	// Nice lowers the priority of the threads CPU runs execute on by this
	// nice increment (1 to 19; 0 leaves them as they are). A model run is
	// batch work that holds its core for hundreds of milliseconds, and on
	// the same cores the NATS server, the I/O stages and the HTTP endpoints
	// wait for time slices behind it (internal/nice; BENCHMARKS.md,
	// "Splitter in the pipeline"). GPU sessions are left as they are: their
	// thread only feeds the device.
	Nice int
}

// Plan resolves IntraOpThreads and ParallelRuns for a session on provider:
// the values given, with zeros replaced as their comments say, for this
// machine (machine.Detect: GOMAXPROCS and the memory limit).
func (o SessionOptions) Plan(provider string) (threads, runs int) {
	return o.plan(provider, machine.Detect())
}

// RunBytesPerImage is the memory one image of a CPU session run holds in
// activations, the unit of the bound on parallel runs: DenseNet121 at batch
// 8 holds about 110 MB per run in flight.
const RunBytesPerImage = 14 << 20

func (o SessionOptions) plan(provider string, m machine.Machine) (threads, runs int) {
	threads, runs = o.IntraOpThreads, o.ParallelRuns
	if provider != ProviderCPU {
		return threads, max(runs, 1)
	}
	procs := max(m.Cores, 1)
	switch {
	case threads < 1 && runs < 1:
		// One single-threaded run per core; where memory holds fewer
		// runs, the cores are shared out as threads among those it holds.
		limit := o.maxRuns(m)
		threads = (procs + limit - 1) / limit
		runs = max(1, procs/threads)
	case runs < 1:
		runs = max(1, procs/threads)
	case threads < 1:
		threads = max(1, procs/runs)
	}
	return threads, runs
}

// maxRuns is how many runs of MaxBatch images fit in the memory budget.
func (o SessionOptions) maxRuns(m machine.Machine) int {
	budget := o.Memory
	if budget <= 0 {
		budget = m.Memory / 2
	}
	if budget <= 0 {
		return max(m.Cores, 1) // memory unknown: no bound
	}
	batch := o.MaxBatch
	if batch < 1 {
		batch = DefaultMaxBatchCPU
	}
	return max(1, int(budget/(int64(batch)*RunBytesPerImage)))
}

// session is one loaded ONNX graph and the provider it runs on.
type session struct {
	s *ort.DynamicAdvancedSession
	// pool holds the lowered-priority threads CPU runs execute on
	// (SessionOptions.Nice); nil: runs execute on the caller's thread.
	pool     *nice.Pool
	provider string
	input    string
	output   string
	// threads and runs are the resolved Plan: intra-op threads per run
	// (0: ONNX Runtime's default) and runs at once.
	threads, runs int
	// adapter is the GPU a WebGPU session runs on.
	adapter Adapter
	// skipped says, for auto, why each provider before the one chosen was
	// skipped; notes what the provider could not do as asked (webgpu: some
	// nodes run on the CPU).
	skipped, notes []string
}

// ErrProviderUnavailable is wrapped by errors when a requested GPU execution
// provider cannot be used (library built without it, CUDA/cuDNN missing, no
// device).
var ErrProviderUnavailable = errors.New("execution provider unavailable")

// autoProviders are the providers auto tries, in order.
func autoProviders() []string { return []string{ProviderCUDA, ProviderWebGPU, ProviderCPU} }

// newSession creates a session on opts.Device. With cuda or tensorrt, the
// CPU fallback for unsupported nodes is disabled: a GPU build that cannot
// load its CUDA libraries then fails here instead of quietly running the
// whole graph on the CPU. webgpu fails here when Dawn finds no adapter.
// Only "auto" moves on, from CUDA to WebGPU to the CPU, and the session's
// notes say why each provider before the chosen one was skipped.
func newSession(model []byte, input, output string, opts SessionOptions) (*session, error) {
	if !ort.IsInitialized() {
		return nil, errors.New("onnxruntime: not initialised (call InitRuntime first)")
	}
	if opts.Device.Kind != "auto" {
		provider := opts.Device.Provider()
		if provider == "" {
			return nil, fmt.Errorf("device %q: want cpu, cuda[:N], tensorrt[:N], webgpu[:N] or auto", opts.Device.Kind)
		}
		return createSession(model, input, output, opts, provider)
	}
	var skipped []string
	for _, provider := range autoProviders() {
		s, err := createSession(model, input, output, opts, provider)
		if err == nil {
			s.skipped = skipped
			return s, nil
		}
		if provider == ProviderCPU || !errors.Is(err, ErrProviderUnavailable) {
			return nil, err
		}
		skipped = append(skipped, "auto skipped "+provider+": "+err.Error())
	}
	return nil, errors.New("device auto: no provider left") // not reached: the CPU is last
}

// Resolution is where a device resolved to: the provider a session on it
// runs on, the adapter (webgpu) and, for auto, why each provider before it
// was skipped.
type Resolution struct {
	Device   Device
	Provider string
	Adapter  Adapter
	Notes    []string
}

// ResolveDevice checks, once at start, that opts.Device can run a model: it
// creates a session of the tiny synthetic model on it and runs one image.
// An explicit device that cannot be used is an error (wrapping
// ErrProviderUnavailable) with the provider's reason, so a process asked for
// a GPU fails at start rather than serving nothing; auto resolves to the
// first of cuda, webgpu and cpu that works, and the notes say why the others
// were skipped. Sessions created with the resolved device then skip the
// search.
func ResolveDevice(opts SessionOptions) (Resolution, error) {
	model := onnx.Tiny(2, false)
	s, err := newSession(model, onnx.InputName, onnx.OutputName, opts)
	if err != nil {
		return Resolution{}, fmt.Errorf("device %s: %w", opts.Device, err)
	}
	defer s.close()
	if _, _, err := s.run(make([]float32, 3*imageSize*imageSize), 1); err != nil {
		return Resolution{}, fmt.Errorf("device %s: %w: %s: a test run failed: %v", opts.Device, ErrProviderUnavailable, s.provider, err)
	}
	d := opts.Device
	if d.Kind == "auto" {
		d = Device{Kind: deviceKind(s.provider)}
	}
	// The test model's own notes are not the models' to come: only why auto
	// skipped a provider is.
	return Resolution{Device: d, Provider: s.provider, Adapter: s.adapter, Notes: s.skipped}, nil
}

// deviceKind is the device kind of a provider.
func deviceKind(provider string) string {
	switch provider {
	case ProviderCUDA:
		return "cuda"
	case ProviderTensorRT:
		return "tensorrt"
	case ProviderWebGPU:
		return "webgpu"
	}
	return "cpu"
}

func createSession(model []byte, input, output string, opts SessionOptions, provider string) (*session, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxruntime: session options: %w", err)
	}
	defer so.Destroy()
	threads, runs := opts.Plan(provider)
	if threads > 0 {
		if err := so.SetIntraOpNumThreads(threads); err != nil {
			return nil, fmt.Errorf("onnxruntime: intra-op threads %d: %w", threads, err)
		}
	}
	if opts.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(opts.InterOpThreads); err != nil {
			return nil, fmt.Errorf("onnxruntime: inter-op threads %d: %w", opts.InterOpThreads, err)
		}
	}
	spin := "0"
	if opts.Spin {
		spin = "1"
	}
	for _, key := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
		if err := so.AddSessionConfigEntry(key, spin); err != nil {
			return nil, fmt.Errorf("onnxruntime: %s: %w", key, err)
		}
	}
	dev := strconv.Itoa(opts.Device.ID)
	var adapter Adapter
	switch provider {
	case ProviderWebGPU:
		if err := appendWebGPU(so, opts.Device, opts.WebGPU); err != nil {
			return nil, err
		}
		adapter = webgpuAdapter()
	case ProviderCUDA:
		if err := appendCUDA(so, dev); err != nil {
			return nil, err
		}
	case ProviderTensorRT:
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return nil, fmt.Errorf("%w: TensorRT: %v (use an ONNX Runtime GPU build with TensorRT, or --device cpu|auto)", ErrProviderUnavailable, err)
		}
		defer trt.Destroy()
		if err := trt.Update(map[string]string{"device_id": dev}); err != nil {
			return nil, fmt.Errorf("%w: TensorRT options: %v", ErrProviderUnavailable, err)
		}
		if err := so.AppendExecutionProviderTensorRT(trt); err != nil {
			return nil, fmt.Errorf("%w: TensorRT: %v (use an ONNX Runtime GPU build with TensorRT, or --device cpu|auto)", ErrProviderUnavailable, err)
		}
		// Nodes TensorRT cannot take run on CUDA, still on the GPU.
		if err := appendCUDA(so, dev); err != nil {
			return nil, err
		}
	}
	if provider != ProviderCPU {
		if err := so.AddSessionConfigEntry("session.disable_cpu_ep_fallback", "1"); err != nil {
			return nil, fmt.Errorf("onnxruntime: disable CPU fallback: %w", err)
		}
	}
	var notes []string
	var pool *nice.Pool
	if provider == ProviderCPU && opts.Nice > 0 {
		if pool, err = nice.New(runs, opts.Nice); err != nil {
			// A lower priority is a courtesy to the rest of the process,
			// not a condition of running (a seccomp profile may refuse it).
			notes = append(notes, fmt.Sprintf("model runs keep the process's priority: %v", err))
		}
	}
	var s *ort.DynamicAdvancedSession
	newORTSession := func() {
		s, err = ort.NewDynamicAdvancedSessionWithONNXData(model, []string{input}, []string{output}, so)
	}
	if pool != nil && threads > 1 {
		// The intra-op threads ONNX Runtime starts for the session (beyond
		// the first) inherit the priority of the thread creating it. With
		// one thread per run there are none, and the session is created at
		// the caller's priority: a model swap should not wait behind the
		// runs of the model it replaces.
		pool.Do(newORTSession)
	} else {
		newORTSession()
	}
	if err != nil && provider == ProviderWebGPU && strings.Contains(err.Error(), cpuFallbackRefused) {
		// The adapter works (appendWebGPU got one), but the provider left
		// some nodes to the CPU: ONNX Runtime keeps shape computations
		// there (Shape, Gather, Concat on a few int64s, as torch.onnx
		// exports flatten), which is normal. Allow it, and say so.
		if err := so.AddSessionConfigEntry("session.disable_cpu_ep_fallback", "0"); err != nil {
			return nil, fmt.Errorf("onnxruntime: allow CPU fallback: %w", err)
		}
		notes = append(notes, "some nodes of this graph run on the CPU beside WebGPU (ONNX Runtime keeps shape computations there)")
		s, err = ort.NewDynamicAdvancedSessionWithONNXData(model, []string{input}, []string{output}, so)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		if provider != ProviderCPU {
			return nil, fmt.Errorf("%w: %s session: %v", ErrProviderUnavailable, provider, err)
		}
		return nil, fmt.Errorf("onnxruntime: create session: %w", err)
	}
	return &session{s: s, pool: pool, provider: provider, input: input, output: output, threads: threads, runs: runs, adapter: adapter, notes: notes}, nil
}

// cpuFallbackRefused is how ONNX Runtime refuses a session whose graph has
// nodes for the CPU while session.disable_cpu_ep_fallback is set.
const cpuFallbackRefused = "fallback to CPU EP has been explicitly disabled"

func appendCUDA(so *ort.SessionOptions, dev string) error {
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("%w: CUDA: %v (this ONNX Runtime library has no CUDA provider: use a GPU build, or --device cpu|auto)", ErrProviderUnavailable, err)
	}
	defer cuda.Destroy()
	if err := cuda.Update(map[string]string{"device_id": dev}); err != nil {
		if strings.Contains(err.Error(), "libonnxruntime_providers_shared.so") {
			// The onnxruntime-node build: CPU and WebGPU providers only.
			return fmt.Errorf("%w: CUDA: this ONNX Runtime library has no CUDA provider (no libonnxruntime_providers_shared.so beside it): "+
				"use the GPU build (processors/classifier/README.md), or --device webgpu|cpu|auto", ErrProviderUnavailable)
		}
		return fmt.Errorf("%w: CUDA options: %v", ErrProviderUnavailable, err)
	}
	if err := so.AppendExecutionProviderCUDA(cuda); err != nil {
		return fmt.Errorf("%w: CUDA: %v (GPU build without its CUDA/cuDNN libraries, or no GPU: check LD_LIBRARY_PATH, or --device cpu|auto)", ErrProviderUnavailable, err)
	}
	return nil
}

// run feeds n images of input (NCHW float32, already normalised) and
// returns the [n, width] output.
func (s *session) run(input []float32, n int) (out []float32, width int, err error) {
	if s.pool == nil {
		return s.runHere(input, n)
	}
	s.pool.Do(func() { out, width, err = s.runHere(input, n) })
	return out, width, err
}

// runHere runs the session on the calling thread (and ONNX Runtime's own).
func (s *session) runHere(input []float32, n int) (out []float32, width int, err error) {
	in, err := ort.NewTensor(ort.NewShape(int64(n), 3, imageSize, imageSize), input)
	if err != nil {
		return nil, 0, fmt.Errorf("onnxruntime: input tensor: %w", err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.s.Run([]ort.Value{in}, outs); err != nil {
		return nil, 0, fmt.Errorf("onnxruntime: run batch of %d: %w", n, err)
	}
	defer outs[0].Destroy()
	t, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, 0, fmt.Errorf("onnxruntime: output %q is %T, want a float32 tensor", s.output, outs[0])
	}
	shape := t.GetShape()
	if len(shape) != 2 || shape[0] != int64(n) {
		return nil, 0, fmt.Errorf("onnxruntime: output %q has shape %v for a batch of %d, want [%d, classes]", s.output, shape, n, n)
	}
	// Copy: the tensor's memory is freed with it.
	return append([]float32(nil), t.GetData()...), int(shape[1]), nil
}

func (s *session) close() {
	if s != nil && s.s != nil {
		_ = s.s.Destroy()
		s.s = nil
		if s.pool != nil {
			s.pool.Close()
		}
	}
}

// ioInfo reads the declared inputs and outputs of a model. The binding only
// offers this through a throwaway CPU session; it is built once per load, off
// the serving path.
func ioInfo(model []byte) ([]ort.InputOutputInfo, []ort.InputOutputInfo, error) {
	if !ort.IsInitialized() {
		return nil, nil, errors.New("onnxruntime: not initialised (call InitRuntime first)")
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(model)
	if err != nil {
		return nil, nil, fmt.Errorf("onnxruntime: read model inputs/outputs: %w", err)
	}
	return ins, outs, nil
}

// FindLibrary is the library a process uses when it is given no path:
// $EYEFLOW_ORT_LIB, else where scripts/install-ort.sh caches it
// ($EYEFLOW_CACHE, else $XDG_CACHE_HOME/eyeflow, else ~/.cache/eyeflow),
// so `eyeflow up` works after `make setup` without any flag; "" when
// neither is there. getenv is the caller's view of the environment (a
// command's os.Getenv): the package itself reads none.
func FindLibrary(getenv func(string) string) string {
	if lib := getenv(EnvORTLibrary); lib != "" {
		return lib
	}
	cache := getenv("EYEFLOW_CACHE")
	if cache == "" {
		base := getenv("XDG_CACHE_HOME")
		if base == "" {
			home := getenv("HOME")
			if home == "" {
				return ""
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "eyeflow")
	}
	lib := filepath.Join(cache, "onnxruntime-"+ORTVersion, "libonnxruntime.so.1")
	if _, err := os.Stat(lib); err != nil {
		return ""
	}
	return lib
}

// Default session-run sizes, when neither the configuration nor the model
// card sets one (MaxBatchFor).
const (
	// DefaultMaxBatchCPU: on the CPU larger batches do not run faster per
	// image (BENCHMARKS.md, "Classifier"), they only add latency.
	DefaultMaxBatchCPU = 8
	// DefaultMaxBatchGPU: a GPU needs large batches (DenseNet121 on an
	// H200, fp32: 90 images/s at batch 1, 3,806 at batch 64).
	DefaultMaxBatchGPU = 64
)

// DefaultMaxBatchOn is the run size on d before a model card is known: 64
// on a GPU device, else 8 ("auto" is decided by the provider it loads on:
// DefaultMaxBatch).
func DefaultMaxBatchOn(d Device) int {
	if d.Kind == "cuda" || d.Kind == "tensorrt" || d.Kind == "webgpu" {
		return DefaultMaxBatchGPU
	}
	return DefaultMaxBatchCPU
}

// MaxBatchFor is the largest session run of m: configured when above 0
// (but never above the card's max_batch), else the card's max_batch, else
// the provider's default (DefaultMaxBatchCPU, or DefaultMaxBatchGPU on
// CUDA and TensorRT).
func MaxBatchFor(configured int, m *Model) int {
	card, provider := 0, ProviderCPU
	if m != nil {
		card, provider = m.Card.MaxBatch, m.Provider
	}
	switch {
	case configured > 0 && card > 0:
		return min(configured, card)
	case configured > 0:
		return configured
	case card > 0:
		return card
	case provider == ProviderCPU || provider == "":
		return DefaultMaxBatchCPU
	default:
		return DefaultMaxBatchGPU
	}
}
