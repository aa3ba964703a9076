// Command classifier measures what the classifier pipeline loses around ONNX
// Runtime: for each batch size it times (1) raw session runs of the model on
// preprocessed images, and (2) the whole classifier stage on the same model,
// threads and batch size: split events with inline pixels already in an
// embedded JetStream, consumed, batched, classified, published as
// predictions and acknowledged. It prints images/s for both, their ratio
// (the target is >= 0.90), and the p50/p99 of the per-batch session time.
//
//	go run ./bench/classifier -threads 2 -batches 1,8 -n 200
//
// The library comes from --ort-lib or $EYEFLOW_ORT_LIB (scripts/install-ort.sh).
// The model is the synthetic DenseNet121 (15 classes) unless --model DIR.
// Timings are noisy on a shared machine: the load average is printed.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	ejs "eyeflow/jetstream"
	"eyeflow/objstore"
	"eyeflow/processors/classifier"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func main() {
	ortLib := flag.String("ort-lib", os.Getenv(classifier.EnvORTLibrary), "libonnxruntime.so path")
	threads := flag.Int("threads", 2, "intra-op threads")
	batches := flag.String("batches", "1,8", "batch sizes")
	n := flag.Int("n", 200, "images per measurement")
	rounds := flag.Int("rounds", 3, "raw/pipeline pairs per batch size, alternated so load changes hit both; the median ratio is reported")
	modelDir := flag.String("model", "", "model folder (default: synthetic DenseNet121)")
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
	if err := run(*ortLib, *threads, *batches, *n, *rounds, *modelDir); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench/classifier:", err)
		os.Exit(1)
	}
}

func run(ortLib string, threads int, batchList string, n, rounds int, modelDir string) error {
	if err := classifier.InitRuntime(ortLib); err != nil {
		return err
	}
	var files classifier.ModelFiles
	var err error
	if modelDir != "" {
		files, err = classifier.ReadModelDir(modelDir)
	} else {
		files, err = classifier.Synthesize(classifier.SynthOptions{Arch: classifier.ArchDenseNet121})
	}
	if err != nil {
		return err
	}
	var card classifier.Card
	_ = json.Unmarshal(files.Card, &card)
	opts := classifier.SessionOptions{IntraOpThreads: threads}

	rng := rand.New(rand.NewPCG(1, 2))
	images := make([][]byte, 16)
	for i := range images {
		images[i] = make([]byte, classifier.ImageBytes)
		for j := range images[i] {
			images[i][j] = byte(rng.IntN(256))
		}
	}
	fmt.Printf("model %s %s, onnxruntime %s, %d intra-op threads, %d images per measurement, GOMAXPROCS=%s\n",
		card.Name, card.Version, classifier.RuntimeVersion(), threads, n, os.Getenv("GOMAXPROCS"))
	fmt.Printf("load before: %s\n", uptime())
	fmt.Printf("%-6s %12s %12s %8s %14s %14s\n", "batch", "raw img/s", "pipe img/s", "ratio", "run p50 ms", "run p99 ms")
	for _, f := range strings.Split(batchList, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || b < 1 {
			return fmt.Errorf("batch %q", f)
		}
		var ratios []float64
		for r := range rounds {
			raw, err := rawRate(files, opts, images, b, n)
			if err != nil {
				return err
			}
			pipe, runs, err := pipelineRate(files, card, opts, images, b, n)
			if err != nil {
				return err
			}
			ratios = append(ratios, pipe/raw)
			fmt.Printf("%-6d %12.1f %12.1f %8.2f %14.1f %14.1f   (round %d)\n", b, raw, pipe, pipe/raw, pct(runs, 0.5)*1e3, pct(runs, 0.99)*1e3, r+1)
		}
		fmt.Printf("batch %d: median pipeline/raw ratio %.2f over %d rounds\n", b, pct(ratios, 0.5), rounds)
	}
	fmt.Printf("load after:  %s\n", uptime())
	return nil
}

// rawRate times Model.Run (normalisation in Go + session run + softmax) on
// n images in batches of b, after one warm-up batch.
func rawRate(files classifier.ModelFiles, opts classifier.SessionOptions, images [][]byte, b, n int) (float64, error) {
	m, err := classifier.LoadModel(files, opts)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	batch := make([][]byte, b)
	for i := range batch {
		batch[i] = images[i%len(images)]
	}
	if _, err := m.Run(batch); err != nil {
		return 0, err
	}
	runs := (n + b - 1) / b
	start := time.Now()
	for range runs {
		if _, err := m.Run(batch); err != nil {
			return 0, err
		}
	}
	return float64(runs*b) / time.Since(start).Seconds(), nil
}

// pipelineRate puts n split events in an embedded JetStream, then runs the
// classifier for prod and times from its model being ready to the last
// prediction being acknowledged.
func pipelineRate(files classifier.ModelFiles, card classifier.Card, opts classifier.SessionOptions, images [][]byte, b, n int) (float64, []float64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "bench-classifier-")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(dir)
	srv, err := ejs.StartServer(ejs.ServerOptions{Name: "bench", Listen: "127.0.0.1:0", StoreDir: dir, Logger: zerolog.Nop()})
	if err != nil {
		return 0, nil, err
	}
	defer srv.Stop()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return 0, nil, err
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		return 0, nil, err
	}
	if err := ejs.Apply(ctx, js, ejs.Build(ejs.DefaultOptions())); err != nil {
		return 0, nil, err
	}
	store := objstore.NewJetStream(js)
	reg, err := classifier.OpenRegistry(ctx, js, store)
	if err != nil {
		return 0, nil, err
	}
	if _, err := reg.Push(ctx, files, card.Name, card.Version); err != nil {
		return 0, nil, err
	}
	if err := reg.Promote(ctx, schemas.EnvProd, card.Name, card.Version); err != nil {
		return 0, nil, err
	}
	for i := range n {
		s := schemas.Split{Schema: schemas.SchemaSplit, Split: schemas.SplitHoldout1}
		s.Resized = schemas.Resized{Schema: schemas.SchemaResized, ImageID: fmt.Sprintf("bench-%06d", i), Label: "normal",
			RGB: images[i%len(images)], ResizedWidth: 224, ResizedHeight: 224}
		data, _ := json.Marshal(s)
		if _, err := js.Publish(ctx, schemas.SplitSubject(s.Split), data, natsjs.WithMsgID(s.ImageID)); err != nil {
			return 0, nil, err
		}
	}
	promReg := prometheus.NewRegistry()
	var runs []float64
	c, err := classifier.New(ctx, js, store, classifier.Config{
		Envs: []string{schemas.EnvProd}, MaxBatch: b, Session: opts,
		Logger: zerolog.Nop(), Metrics: classifier.NewMetrics(promReg), StageMetrics: stage.NewMetrics(promReg),
	})
	if err != nil {
		return 0, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	<-c.Ready(schemas.EnvProd)
	start := time.Now()
	cons, err := js.Consumer(ctx, ejs.StreamSplits, ejs.ClassifierConsumer(schemas.EnvProd))
	if err != nil {
		return 0, nil, err
	}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return 0, nil, err
		}
		if info.AckFloor.Consumer >= uint64(n) {
			break
		}
		// Coarse enough not to load the server it measures.
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	<-done
	// Per-run session times, from the predictions (one value per run).
	seen := map[float64]bool{}
	oc, err := js.OrderedConsumer(context.Background(), ejs.StreamPredictions, natsjs.OrderedConsumerConfig{})
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
	return float64(n) / elapsed.Seconds(), runs, nil
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
