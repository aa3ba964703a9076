// Command classifier measures what the classifier pipeline loses around ONNX
// Runtime: for each configuration (intra-op threads x parallel runs of one
// session) and batch size it times (1) raw session runs of the model on
// preprocessed images, from as many goroutines as parallel runs, and (2) the
// whole classifier stage on the same model, threads, parallel runs and batch
// size: split events already in an embedded JetStream (naming the processed
// PNG, as resize publishes them, or with -pixels inline the pixels
// themselves), consumed, pixels read, batched, classified, published as
// predictions and acknowledged. The raw side is the ceiling (see rawRate).
// It prints images/s for both, their ratio (the target is >= 0.90), and the
// p50/p99 of the per-batch session time.
//
//	go run ./bench/classifier -configs 2x1,1x2 -batches 1,8 -n 200
//
// The library comes from --ort-lib or $EYEFLOW_ORT_LIB (scripts/install-ort.sh).
// The model is the synthetic DenseNet121 (15 classes) unless --model DIR.
// Timings are noisy on a shared machine: the load average is printed.
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"eyeflow/bus"
	"eyeflow/imaging"
	"eyeflow/inference"
	"eyeflow/internal/machine"
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

func main() {
	ortLib := flag.String("ort-lib", os.Getenv(inference.EnvORTLibrary), "libonnxruntime.so path")
	configs := flag.String("configs", "2x1,1x2", "THREADSxRUNS configurations: intra-op threads per run x session runs at once")
	batches := flag.String("batches", "1,8", "batch sizes")
	n := flag.Int("n", 200, "images per measurement")
	rounds := flag.Int("rounds", 3, "raw/pipeline pairs per batch size, alternated so load changes hit both; the median ratio is reported")
	modelDir := flag.String("model", "", "model folder (default: synthetic DenseNet121)")
	pixels := flag.String("pixels", "ref", "how split events carry pixels: ref (the processed PNG in the object store, resize's default) or inline")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/classifier:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench/classifier:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if *pixels != "ref" && *pixels != "inline" {
		fmt.Fprintln(os.Stderr, "bench/classifier: -pixels: want ref or inline")
		os.Exit(2)
	}
	if err := run(*ortLib, *configs, *batches, *n, *rounds, *modelDir, *pixels); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench/classifier:", err)
		os.Exit(1)
	}
}

func run(ortLib, configList, batchList string, n, rounds int, modelDir, pixels string) error {
	if err := inference.InitRuntime(cmp.Or(ortLib, inference.FindLibrary(os.Getenv))); err != nil {
		return err
	}
	var files models.ModelFiles
	var err error
	if modelDir != "" {
		files, err = models.ReadModelDir(modelDir)
	} else {
		files, err = models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121})
	}
	if err != nil {
		return err
	}
	var card models.Card
	_ = json.Unmarshal(files.Card, &card)
	var configs []inference.SessionOptions
	for _, c := range strings.Split(configList, ",") {
		if strings.TrimSpace(c) == "auto" {
			configs = append(configs, inference.SessionOptions{}) // the machine's default plan
			continue
		}
		t, r, ok := strings.Cut(strings.TrimSpace(c), "x")
		threads, err1 := strconv.Atoi(t)
		runs, err2 := strconv.Atoi(r)
		if !ok || err1 != nil || err2 != nil || threads < 1 || runs < 1 {
			return fmt.Errorf("config %q: want THREADSxRUNS, e.g. 1x2", c)
		}
		configs = append(configs, inference.SessionOptions{IntraOpThreads: threads, ParallelRuns: runs})
	}

	rng := rand.New(rand.NewPCG(1, 2))
	images := make([][]byte, 16)
	for i := range images {
		images[i] = make([]byte, inference.ImageBytes)
		for j := range images[i] {
			images[i][j] = byte(rng.IntN(256))
		}
	}
	fmt.Printf("model %s %s, onnxruntime %s, %d images per measurement, pixels %s, GOMAXPROCS=%s, %d CPUs\n",
		card.Name, card.Version, inference.RuntimeVersion(), n, pixels, os.Getenv("GOMAXPROCS"), runtime.NumCPU())
	fmt.Printf("load before: %s\n", uptime())
	fmt.Printf("%-8s %-6s %12s %12s %8s %12s %14s %14s\n", "config", "batch", "raw img/s", "pipe img/s", "ratio", "pipe cold", "run p50 ms", "run p99 ms")
	var summary []string
	for _, opts := range configs {
		cfg := fmt.Sprintf("%dx%d", opts.IntraOpThreads, opts.ParallelRuns)
		if opts.IntraOpThreads == 0 && opts.ParallelRuns == 0 {
			t, r := opts.Plan(inference.ProviderCPU)
			cfg = fmt.Sprintf("auto=%dx%d", t, r)
		}
		for _, f := range strings.Split(batchList, ",") {
			b, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || b < 1 {
				return fmt.Errorf("batch %q", f)
			}
			var ratios, raws, pipes []float64
			m, err := inference.LoadModel(files, opts)
			if err != nil {
				return err
			}
			for r := range rounds {
				raw, err := rawRate(m, images, b, n)
				if err != nil {
					m.Close()
					return err
				}
				pipe, whole, runs, err := pipelineRate(files, card, opts, images, b, n, pixels)
				if err != nil {
					m.Close()
					return err
				}
				ratios, raws, pipes = append(ratios, pipe/raw), append(raws, raw), append(pipes, pipe)
				fmt.Printf("%-8s %-6d %12.1f %12.1f %8.2f %12.1f %14.1f %14.1f   (round %d)\n", cfg, b, raw, pipe, pipe/raw, whole, pct(runs, 0.5)*1e3, pct(runs, 0.99)*1e3, r+1)
			}
			m.Close()
			summary = append(summary, fmt.Sprintf("%s batch %d: median raw %.1f img/s, pipeline %.1f img/s, pipeline/raw %.2f over %d rounds",
				cfg, b, pct(raws, 0.5), pct(pipes, 0.5), pct(ratios, 0.5), rounds))
		}
	}
	for _, l := range summary {
		fmt.Println(l)
	}
	fmt.Printf("load after:  %s\n", uptime())
	return nil
}

// rawRate is the ceiling the pipeline is held to: Model.Run (normalisation
// in Go + session run + softmax) on batches of b, from as many goroutines as
// the model's parallel runs, on a session that is already warm (m is loaded
// once per configuration and every goroutine runs warmRuns batches before
// timing starts). It is the rate of runs with every runner busy and no gap
// between them: runners x b images per mean run duration, over the runs
// that start and end while all runners are running (at least n images).
// The pipeline drives the same session plan through the same Model.Run and
// cannot keep its runners busier than that, so pipeline/raw stays at or
// below 1 up to noise; a ratio above it means the raw side was starved.
func rawRate(m *inference.Model, images [][]byte, b, n int) (float64, error) {
	const warmRuns = 3
	par := m.ParallelRuns
	batch := make([][]byte, b)
	for i := range batch {
		batch[i] = images[i%len(images)]
	}
	var (
		mu       sync.Mutex
		durs     []time.Duration
		measured int
		stop     = make(chan struct{})
		once     sync.Once
		warm     sync.WaitGroup
		start    = make(chan struct{})
		wg       sync.WaitGroup
	)
	warm.Add(par)
	errs := make([]error, par)
	for i := range par {
		wg.Go(func() {
			for range warmRuns {
				if _, err := m.Run(batch); err != nil {
					errs[i] = err
					warm.Done()
					return
				}
			}
			warm.Done()
			<-start
			for {
				select {
				case <-stop:
					return
				default:
				}
				t0 := time.Now()
				if _, err := m.Run(batch); err != nil {
					errs[i] = err
					once.Do(func() { close(stop) })
					return
				}
				d := time.Since(t0)
				mu.Lock()
				select {
				case <-stop: // ended after the others stopped: not all busy
				default:
					durs = append(durs, d)
					measured += b
					if measured >= n {
						once.Do(func() { close(stop) })
					}
				}
				mu.Unlock()
			}
		})
	}
	warm.Wait()
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, d := range durs {
		sum += d
	}
	mean := sum.Seconds() / float64(len(durs))
	return float64(par*b) / mean, nil
}

// pipelineRate puts n split events in an embedded JetStream, then runs the
// classifier for prod and times from its model being ready to the last
// prediction being acknowledged.
func pipelineRate(files models.ModelFiles, card models.Card, opts inference.SessionOptions, images [][]byte, b, n int, pixels string) (steady, whole float64, runs []float64, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "bench-classifier-")
	if err != nil {
		return 0, 0, nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := bus.StartServer(bus.ServerOptions{Name: "bench", Listen: "127.0.0.1:0", StoreDir: dir, Logger: zerolog.Nop()})
	if err != nil {
		return 0, 0, nil, err
	}
	defer srv.Stop()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return 0, 0, nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, nil, err
	}
	if err := bus.Apply(ctx, js, pipeline.Topology(bus.DefaultOptions().FitDisk(machine.DiskFree(dir)))); err != nil {
		return 0, 0, nil, err
	}
	store := objstore.NewJetStream(js)
	kv, err := js.KeyValue(ctx, bus.KVModels)
	if err != nil {
		return 0, 0, nil, err
	}
	reg, err := models.OpenRegistry(ctx, store, stage.KeyValueOf(kv))
	if err != nil {
		return 0, 0, nil, err
	}
	if _, err := reg.Push(ctx, files, card.Name, card.Version); err != nil {
		return 0, 0, nil, err
	}
	if err := reg.Promote(ctx, schemas.EnvProd, card.Name, card.Version); err != nil {
		return 0, 0, nil, err
	}
	if err := store.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
		return 0, 0, nil, err
	}
	for i := range n {
		s := schemas.Split{Schema: schemas.SchemaSplit, Split: schemas.SplitHoldout1}
		s.Resized = schemas.Resized{Schema: schemas.SchemaResized, ImageID: fmt.Sprintf("bench-%06d", i), Label: "normal",
			ResizedWidth: 224, ResizedHeight: 224}
		if pixels == "inline" {
			s.RGB = images[i%len(images)]
		} else {
			// As resize publishes by default: the event names the PNG.
			var png bytes.Buffer
			if err := imaging.EncodePNG(&png, images[i%len(images)], 224, 224); err != nil {
				return 0, 0, nil, err
			}
			key := "resized/" + s.ImageID + ".png"
			info, err := store.Put(ctx, objstore.BucketProcessed, key, &png, int64(png.Len()), objstore.PutOptions{ContentType: "image/png"})
			if err != nil {
				return 0, 0, nil, err
			}
			s.Processed = schemas.ObjectRef{Bucket: objstore.BucketProcessed, Key: key, ETag: info.ETag, Size: info.Size}
		}
		data, _ := json.Marshal(s)
		if _, err := js.Publish(ctx, schemas.SplitSubject(s.Split), data, jetstream.WithMsgID(s.ImageID)); err != nil {
			return 0, 0, nil, err
		}
	}
	// Arrival times of the predictions, over core NATS: the steady-state
	// rate runs from the end of the first run of every runner (the raw
	// loop's warm-up) to the last prediction, like the raw timing.
	arrivals := make(chan time.Time, n)
	sub, err := nc.Subscribe(schemas.PredictionSubject(schemas.EnvProd), func(*nats.Msg) { arrivals <- time.Now() })
	if err != nil {
		return 0, 0, nil, err
	}
	defer sub.Unsubscribe()
	promReg := prometheus.NewRegistry()
	c, err := classifier.New(reg, store, stage.RunnerOf[schemas.Split](js), classifier.Config{
		Envs: []string{schemas.EnvProd}, MaxBatch: b, Session: opts,
		Logger: zerolog.Nop(), Metrics: classifier.NewMetrics(promReg), StageMetrics: stage.NewMetrics(promReg),
	})
	if err != nil {
		return 0, 0, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready(schemas.EnvProd)
	start := time.Now()
	warm := min(n-1, b*max(opts.ParallelRuns, 1))
	var times []time.Time
	timeout := time.After(10 * time.Minute)
	for len(times) < n {
		select {
		case t := <-arrivals:
			times = append(times, t)
		case <-timeout:
			return 0, 0, nil, fmt.Errorf("%d of %d predictions after 10 minutes", len(times), n)
		}
	}
	cons, err := js.Consumer(ctx, bus.StreamSplits, bus.ClassifierConsumer(schemas.EnvProd))
	if err != nil {
		return 0, 0, nil, err
	}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return 0, 0, nil, err
		}
		if info.AckFloor.Consumer >= uint64(n) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	steady = float64(n-warm) / times[n-1].Sub(times[warm-1]).Seconds()
	cancel()
	<-done
	// Per-run session times, from the predictions (one value per run).
	seen := map[float64]bool{}
	oc, err := js.OrderedConsumer(context.Background(), bus.StreamPredictions, jetstream.OrderedConsumerConfig{})
	if err == nil {
		for got := 0; got < n; {
			batch, err := oc.FetchNoWait(500)
			if err != nil {
				break
			}
			k := 0
			for m := range batch.Messages() {
				k++
				if p, err := schemas.DecodePrediction(m.Data()); err == nil && !seen[p.InferenceSeconds] {
					seen[p.InferenceSeconds] = true
					runs = append(runs, p.InferenceSeconds)
				}
			}
			if k == 0 {
				break
			}
			got += k
		}
	}
	return steady, float64(n) / elapsed.Seconds(), runs, nil
}

func pct(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func uptime() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}
