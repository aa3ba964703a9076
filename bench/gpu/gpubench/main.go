// Command gpubench measures the classifier on a GPU through ONNX Runtime's
// WebGPU provider, for bench/gpu/run.sh (which carries it, built, to a GPU
// host without Go): the adapter in use, the raw session rate of the
// synthetic DenseNet121 per batch size (float32 and the fp16 variant, whose
// predictions are checked against float32 on the CPU), the provider options
// and parallel runs at one batch size, a CPU reference, and the classifier
// stage's rate at the same batch (pipeline/raw, the target being >= 0.9).
//
//	gpubench -batches 1,8,32,64,128 -variants ';preferredLayout=NCHW;validationMode=disabled'
//
// "Raw" is Model.Run, as in bench/classifier: normalisation in Go, the
// session run, softmax; every batch size gets two warm-up runs first (the
// WebGPU provider compiles its shaders per input shape). A measurement runs
// until -n images or -max-time, whichever comes first, and at least three
// runs. The JSON summary goes to -json.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"eyeflow/bus"
	"eyeflow/inference"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/processors/classifier"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

type config struct {
	jsonOut       string
	device        string
	batches       []int
	n             int
	maxTime       time.Duration
	variants      []string
	variantBatch  int
	runs          []int
	fp16          bool
	cpuBatch      int
	pipelineBatch int
	pipelineN     int
}

// rate is one measurement.
type rate struct {
	What      string  `json:"what"`
	Batch     int     `json:"batch"`
	Runs      int     `json:"parallel_runs"`
	Options   string  `json:"webgpu_options,omitempty"`
	PerSecond float64 `json:"images_per_second"`
	P50ms     float64 `json:"run_p50_ms"`
	Error     string  `json:"error,omitempty"`
}

type summary struct {
	ORT       string                 `json:"onnxruntime"`
	CPUs      int                    `json:"cpus"`
	Device    string                 `json:"device"`
	Provider  string                 `json:"provider"`
	Adapter   inference.Adapter      `json:"adapter"`
	Notes     []string               `json:"notes,omitempty"`
	Rates     []rate                 `json:"rates"`
	FP16Match *float64               `json:"fp16_max_prob_diff_vs_fp32_cpu,omitempty"`
	FP16Error string                 `json:"fp16_error,omitempty"`
	Pipeline  *pipelineResult        `json:"pipeline,omitempty"`
	Vulkan    inference.VulkanReport `json:"vulkan"`
}

type pipelineResult struct {
	Batch     int     `json:"batch"`
	Images    int     `json:"images"`
	PerSecond float64 `json:"images_per_second"`
	Raw       float64 `json:"raw_images_per_second"`
	Ratio     float64 `json:"pipeline_over_raw"`
	MeanBatch float64 `json:"mean_batch"`
}

func main() {
	ortLib := flag.String("ort-lib", os.Getenv(inference.EnvORTLibrary), "libonnxruntime.so path")
	device := flag.String("device", "webgpu", "device to measure (webgpu, or cuda with a GPU build)")
	batches := flag.String("batches", "1,8,16,32,64,128", "batch sizes for the raw rates")
	n := flag.Int("n", 1024, "images per measurement (at most)")
	maxTime := flag.Duration("max-time", 3*time.Second, "time per measurement (at most; at least 3 runs)")
	variants := flag.String("variants", ";preferredLayout=NCHW;validationMode=disabled;enableGraphCapture=1;preferredLayout=NCHW,validationMode=disabled",
		"WebGPU option sets measured at -variant-batch, separated by ';' (empty: eyeflow's defaults)")
	variantBatch := flag.Int("variant-batch", 64, "batch size for the option variants and the parallel runs")
	runs := flag.String("runs", "1,2", "parallel runs compared at -variant-batch (the WebGPU provider serialises runs; a second one overlaps the Go-side normalisation)")
	fp16 := flag.Bool("fp16", true, "also measure the fp16 variant of the model, and check its predictions against float32 on the CPU")
	cpuBatch := flag.Int("cpu-batch", 8, "batch size of the CPU reference (0: none)")
	pipelineBatch := flag.Int("pipeline-batch", 64, "batch size of the classifier stage measurement (0: none)")
	pipelineN := flag.Int("pipeline-n", 768, "split events through the classifier stage")
	jsonOut := flag.String("json", "", "write the summary here (after every section, so a run cut short keeps what it measured)")
	variant := flag.String("one-variant", "", "internal: measure only these WebGPU options at -variant-batch and print one JSON rate (each variant runs in its own process, so one that crashes ONNX Runtime costs only its line)")
	flag.Parse()
	if *variant != "" { // "," stands for the defaults

		if err := oneVariant(*ortLib, *device, *variant, *variantBatch, *n, *maxTime); err != nil {
			fmt.Fprintln(os.Stderr, "gpubench:", err)
			os.Exit(1)
		}
		return
	}
	cfg := config{jsonOut: *jsonOut, device: *device, n: *n, maxTime: *maxTime, variantBatch: *variantBatch, fp16: *fp16, cpuBatch: *cpuBatch,
		pipelineBatch: *pipelineBatch, pipelineN: *pipelineN, variants: strings.Split(*variants, ";")}
	var err error
	if cfg.batches, err = ints(*batches); err == nil {
		cfg.runs, err = ints(*runs)
	}
	if err == nil {
		var s summary
		s, err = run(*ortLib, cfg)
		err = errors.Join(err, save(cfg, s))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpubench:", err)
		os.Exit(1)
	}
}

func save(cfg config, s summary) error {
	if cfg.jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(cfg.jsonOut, b, 0o644)
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q: want positive integers, comma-separated", s)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(ortLib string, cfg config) (summary, error) {
	s := summary{CPUs: runtime.NumCPU(), Device: cfg.device}
	if err := inference.InitRuntime(cmp.Or(ortLib, inference.FindLibrary(os.Getenv))); err != nil {
		return s, err
	}
	s.ORT = inference.RuntimeVersion()
	s.Vulkan = inference.ProbeVulkan()
	dev, err := inference.ParseDevice(cfg.device)
	if err != nil {
		return s, err
	}
	res, err := inference.ResolveDevice(inference.SessionOptions{Device: dev})
	if err != nil {
		return s, err
	}
	s.Provider, s.Adapter, s.Notes = res.Provider, res.Adapter, res.Notes
	fmt.Printf("== onnxruntime %s, %d CPUs, device %s: %s on %s\n", s.ORT, s.CPUs, cfg.device, s.Provider, s.Adapter)
	for _, note := range s.Notes {
		fmt.Printf("   note: %s\n", note)
	}
	fp32, err := models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121})
	if err != nil {
		return s, err
	}
	images := randomImages(max(slices.Max(cfg.batches), cfg.variantBatch, cfg.cpuBatch, 1))
	fmt.Printf("%-48s %6s %5s %12s %12s\n", "what", "batch", "runs", "images/s", "run p50 ms")
	add := func(r rate) {
		s.Rates = append(s.Rates, r)
		if r.Error != "" {
			fmt.Printf("%-48s %6d %5d   failed: %s\n", r.What, r.Batch, r.Runs, r.Error)
			return
		}
		fmt.Printf("%-48s %6d %5d %12.1f %12.1f\n", r.What, r.Batch, r.Runs, r.PerSecond, r.P50ms)
	}

	// Raw rates per batch size, float32 then fp16, eyeflow's defaults.
	precisions := []struct {
		name string
		fp16 bool
	}{{"fp32", false}}
	if cfg.fp16 {
		precisions = append(precisions, struct {
			name string
			fp16 bool
		}{"fp16", true})
	}
	for _, p := range precisions {
		files := fp32
		if p.fp16 {
			if files, err = models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121, FP16: true}); err != nil {
				return s, err
			}
		}
		m, err := inference.LoadModel(files, inference.SessionOptions{Device: dev, ParallelRuns: 1})
		if err != nil {
			add(rate{What: "raw " + p.name, Error: err.Error()})
			if p.fp16 {
				s.FP16Error = err.Error()
			}
			continue
		}
		for _, note := range m.Notes {
			fmt.Printf("   %s note: %s\n", p.name, note)
		}
		for _, b := range cfg.batches {
			add(measure("raw "+p.name, m, images, b, 1, cfg))
		}
		if p.fp16 {
			d, err := fp16VsCPU(m, fp32, images[:min(8, len(images))])
			if err != nil {
				s.FP16Error = err.Error()
				fmt.Printf("   fp16 predictions: %v\n", err)
			} else {
				s.FP16Match = &d
				fmt.Printf("   fp16 predictions: same class as float32 on the CPU for every image, probabilities within %.3g (bar: 1e-2)\n", d)
			}
		}
		m.Close()
	}
	_ = save(cfg, s)

	// The CPU, as the classifier would plan it on this host.
	if cfg.cpuBatch > 0 {
		m, err := inference.LoadModel(fp32, inference.SessionOptions{Device: inference.Device{Kind: "cpu"}})
		if err != nil {
			return s, err
		}
		add(measure(fmt.Sprintf("raw fp32 cpu (%dx%d)", m.Threads, m.ParallelRuns), m, images, cfg.cpuBatch, m.ParallelRuns, cfg))
		m.Close()
	}

	// The classifier stage at the same batch as a raw rate.
	if cfg.pipelineBatch > 0 {
		raw := 0.0
		for _, r := range s.Rates {
			if r.What == "raw fp32" && r.Batch == cfg.pipelineBatch && r.Error == "" {
				raw = r.PerSecond
			}
		}
		if raw == 0 {
			m, err := inference.LoadModel(fp32, inference.SessionOptions{Device: dev, ParallelRuns: 1})
			if err != nil {
				return s, err
			}
			raw = measure("raw fp32", m, images, cfg.pipelineBatch, 1, cfg).PerSecond
			m.Close()
		}
		p, err := pipelineRate(fp32, inference.SessionOptions{Device: dev}, images, cfg.pipelineBatch, cfg.pipelineN)
		if err != nil {
			return s, fmt.Errorf("classifier stage: %w", err)
		}
		p.Raw, p.Ratio = raw, p.PerSecond/raw
		s.Pipeline = &p
		fmt.Printf("classifier stage at max batch %d: %.1f images/s (mean batch %.1f), raw %.1f: pipeline/raw %.2f (target >= 0.90)\n",
			p.Batch, p.PerSecond, p.MeanBatch, raw, p.Ratio)
		_ = save(cfg, s)
	}
	// Parallel runs at the variant batch size.
	for _, par := range cfg.runs {
		m, err := inference.LoadModel(fp32, inference.SessionOptions{Device: dev, ParallelRuns: par})
		if err != nil {
			add(rate{What: "raw fp32 parallel runs", Batch: cfg.variantBatch, Runs: par, Error: err.Error()})
			continue
		}
		add(measure("raw fp32 parallel runs", m, images, cfg.variantBatch, par, cfg))
		m.Close()
	}

	_ = save(cfg, s)

	// Provider option variants at one batch size, each in its own process.
	for _, v := range cfg.variants {
		opts, err := inference.ParseWebGPUOptions(v)
		if err != nil {
			return s, err
		}
		add(variantInChild(cfg, opts))
		_ = save(cfg, s)
	}
	return s, nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// variantInChild measures one set of WebGPU options in a child gpubench:
// an option ONNX Runtime or Dawn cannot take (graph capture with varying
// inputs, say) may abort the process rather than return an error.
func variantInChild(cfg config, opts inference.WebGPUOptions) rate {
	label := "raw fp32 options " + or(opts.String(), "(defaults)")
	r := rate{What: label, Batch: cfg.variantBatch, Runs: 1, Options: opts.String()}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.maxTime+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-ort-lib", inference.RuntimeLibrary(), "-device", cfg.device, "-variant-batch", strconv.Itoa(cfg.variantBatch),
		"-n", strconv.Itoa(cfg.n), "-max-time", cfg.maxTime.String(), "-one-variant", or(opts.String(), ","))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		r.Error = fmt.Sprintf("%v: %s", err, lines[len(lines)-1])
		return r
	}
	if err := json.Unmarshal(out, &r); err != nil {
		r.Error = fmt.Sprintf("child output %q: %v", out, err)
	}
	r.What, r.Options = label, opts.String()
	return r
}

// oneVariant is the child of variantInChild.
func oneVariant(ortLib, device, variant string, batch, n int, maxTime time.Duration) error {
	if err := inference.InitRuntime(cmp.Or(ortLib, inference.FindLibrary(os.Getenv))); err != nil {
		return err
	}
	opts, err := inference.ParseWebGPUOptions(variant)
	if err != nil {
		return err
	}
	dev, err := inference.ParseDevice(device)
	if err != nil {
		return err
	}
	files, err := models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121})
	if err != nil {
		return err
	}
	m, err := inference.LoadModel(files, inference.SessionOptions{Device: dev, ParallelRuns: 1, WebGPU: opts})
	if err != nil {
		return err
	}
	defer m.Close()
	r := measure("variant", m, randomImages(batch), batch, 1, config{n: n, maxTime: maxTime})
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func randomImages(n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	images := make([][]byte, n)
	for i := range images {
		images[i] = make([]byte, inference.ImageBytes)
		for j := range images[i] {
			images[i][j] = byte(rng.IntN(256))
		}
	}
	return images
}

// measure times m.Run on batches of b from par goroutines sharing the
// session, after two warm-up runs of that batch size.
func measure(what string, m *inference.Model, images [][]byte, b, par int, cfg config) rate {
	r := rate{What: what, Batch: b, Runs: par}
	batch := images[:b]
	for range 2 {
		if _, err := m.Run(batch); err != nil {
			r.Error = err.Error()
			return r
		}
	}
	var (
		mu    sync.Mutex
		times []float64
		done  int
		errs  []error
		wg    sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(cfg.maxTime)
	for range par {
		wg.Go(func() {
			for {
				mu.Lock()
				stop := done*b >= cfg.n && len(times) >= 3 || time.Now().After(deadline) && len(times) >= 3 || len(errs) > 0
				mu.Unlock()
				if stop {
					return
				}
				t0 := time.Now()
				_, err := m.Run(batch)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					times = append(times, time.Since(t0).Seconds())
					done++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		r.Error = errs[0].Error()
		return r
	}
	r.PerSecond = float64(done*b) / time.Since(start).Seconds()
	slices.Sort(times)
	r.P50ms = times[len(times)/2] * 1e3
	return r
}

// fp16VsCPU compares the fp16 model's probabilities with the float32
// model's on the CPU: the same class for every image, and the largest
// difference, which must be at most 1e-2.
func fp16VsCPU(fp16 *inference.Model, fp32 models.ModelFiles, images [][]byte) (float64, error) {
	cpu, err := inference.LoadModel(fp32, inference.SessionOptions{Device: inference.Device{Kind: "cpu"}})
	if err != nil {
		return 0, err
	}
	defer cpu.Close()
	images = append(slices.Clone(images), inference.ProbeImages()...)
	want, err := cpu.Run(images)
	if err != nil {
		return 0, err
	}
	got, err := fp16.Run(images)
	if err != nil {
		return 0, err
	}
	worst := 0.0
	for i := range images {
		if a, b := argmax(got[i]), argmax(want[i]); a != b {
			return 0, fmt.Errorf("image %d: fp16 class %d, float32 class %d", i, a, b)
		}
		for k := range want[i] {
			worst = math.Max(worst, math.Abs(got[i][k]-want[i][k]))
		}
	}
	if worst > 1e-2 {
		return worst, fmt.Errorf("probabilities differ by up to %.4f (bar 1e-2)", worst)
	}
	return worst, nil
}

func argmax(p []float64) int {
	best := 0
	for k := range p {
		if p[k] > p[best] {
			best = k
		}
	}
	return best
}

// pipelineRate puts n split events in an embedded JetStream, runs the
// classifier for prod with max batch b, and times from the end of its
// warm-up (the first batch) to the last prediction.
func pipelineRate(files models.ModelFiles, opts inference.SessionOptions, images [][]byte, b, n int) (pipelineResult, error) {
	res := pipelineResult{Batch: b, Images: n}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "gpubench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	srv, err := bus.StartServer(bus.ServerOptions{Name: "gpubench", Listen: "127.0.0.1:0", StoreDir: dir, Logger: zerolog.Nop()})
	if err != nil {
		return res, err
	}
	defer srv.Stop()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	if err := bus.Apply(ctx, js, pipeline.Topology(bus.DefaultOptions())); err != nil {
		return res, err
	}
	store := objstore.NewJetStream(js)
	kv, err := js.KeyValue(ctx, bus.KVModels)
	if err != nil {
		return res, err
	}
	reg, err := models.OpenRegistry(ctx, store, stage.KeyValueOf(kv))
	if err != nil {
		return res, err
	}
	var card models.Card
	if err := json.Unmarshal(files.Card, &card); err != nil {
		return res, err
	}
	if _, err := reg.Push(ctx, files, card.Name, card.Version); err != nil {
		return res, err
	}
	if err := reg.Promote(ctx, schemas.EnvProd, card.Name, card.Version); err != nil {
		return res, err
	}
	for i := range n {
		s := schemas.Split{Schema: schemas.SchemaSplit, Split: schemas.SplitHoldout1}
		s.Resized = schemas.Resized{Schema: schemas.SchemaResized, ImageID: fmt.Sprintf("gpubench-%06d", i), Label: "normal",
			RGB: images[i%len(images)], ResizedWidth: 224, ResizedHeight: 224}
		data, err := json.Marshal(s)
		if err != nil {
			return res, err
		}
		if _, err := js.Publish(ctx, schemas.SplitSubject(s.Split), data, jetstream.WithMsgID(s.ImageID)); err != nil {
			return res, err
		}
	}
	arrivals := make(chan time.Time, n)
	batches := map[float64]bool{}
	var mu sync.Mutex
	sub, err := nc.Subscribe(schemas.PredictionSubject(schemas.EnvProd), func(msg *nats.Msg) {
		if p, err := schemas.DecodePrediction(msg.Data); err == nil {
			mu.Lock()
			batches[p.InferenceSeconds] = true // one value per run
			mu.Unlock()
		}
		arrivals <- time.Now()
	})
	if err != nil {
		return res, err
	}
	defer sub.Unsubscribe()
	reg2 := prometheus.NewRegistry()
	c, err := classifier.New(reg, store, stage.RunnerOf[schemas.Split](js), classifier.Config{
		Envs: []string{schemas.EnvProd}, MaxBatch: b, Session: opts,
		Logger: zerolog.Nop(), Metrics: classifier.NewMetrics(reg2), StageMetrics: stage.NewMetrics(reg2),
	})
	if err != nil {
		return res, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready(schemas.EnvProd)
	warm := min(n-1, b)
	var times []time.Time
	timeout := time.After(3 * time.Minute)
	for len(times) < n {
		select {
		case t := <-arrivals:
			times = append(times, t)
		case <-timeout:
			return res, fmt.Errorf("%d of %d predictions after 3 minutes", len(times), n)
		}
	}
	res.PerSecond = float64(n-warm) / times[n-1].Sub(times[warm-1]).Seconds()
	mu.Lock()
	res.MeanBatch = float64(n) / float64(max(len(batches), 1))
	mu.Unlock()
	cancel()
	<-done
	return res, nil
}
