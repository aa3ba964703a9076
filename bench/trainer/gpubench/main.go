// Command gpubench trains a model with the trainer's PyTorch engine on demo
// fundus images and scores it on a part it never saw: bench/trainer/gpu.sh
// runs it on a GPU host (see there how to build and carry it).
//
// It renders n demo images (demodata, 2048x1536 JPEGs as `eyeflow
// demo-data` writes them), resizes them with eyeflow's imaging code to the
// 224x224 PNGs the resize stage stores, splits them by a hash of their name
// (8 in 10 train, 1 in 10 holdout_1 for model selection, 1 in 10
// holdout_3 for the score), trains, loads the exported model in ONNX Runtime
// and prints the holdout_3 accuracy, the training seconds and images/s.
//
//	gpubench -n 2000 -arch densenet121 -device cuda -epochs 20
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"image/jpeg"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"sync"
	"time"

	"eyeflow/demodata"
	"eyeflow/imaging"
	"eyeflow/inference"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/processors/trainer"

	"github.com/rs/zerolog"
)

func main() {
	n := flag.Int("n", 2000, "demo images to render")
	seed := flag.Uint64("seed", 1, "data set and training seed")
	arch := flag.String("arch", trainer.DefaultTorchArch, "architecture")
	epochs := flag.Int("epochs", 20, "epochs")
	batch := flag.Int("batch", 64, "batch size (all processes together)")
	lr := flag.Float64("lr", 1e-3, "peak learning rate")
	nproc := flag.Int("nproc", 1, "training processes (DDP)")
	device := flag.String("device", "auto", "auto, cpu, cuda or cuda:N")
	workers := flag.Int("workers", 0, "data-loader workers per process (0: auto, -1: none)")
	initWeights := flag.String("init-weights", "", "torchvision state dict to start from")
	python := flag.String("python", "", "Python interpreter with torch (default: $EYEFLOW_PYTHON, /usr/bin/python3, python3)")
	ortLib := flag.String("ort-lib", os.Getenv(inference.EnvORTLibrary), "libonnxruntime.so path")
	timeout := flag.Duration("timeout", 4*time.Minute, "training timeout")
	work := flag.String("work", "", "scratch folder (default: a temporary one, removed)")
	out := flag.String("out", "", "write the trained model folder here")
	flag.Parse()

	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, log, options{
		n: *n, seed: *seed, python: *python, ortLib: *ortLib, work: *work, out: *out,
		cfg: trainer.TorchConfig{Python: *python, Arch: *arch, Epochs: *epochs, BatchSize: *batch, LR: *lr,
			NProc: *nproc, Device: *device, Workers: *workers, InitWeights: *initWeights, Timeout: *timeout},
	}); err != nil {
		log.Error().Err(err).Msg("gpubench failed")
		os.Exit(1)
	}
}

type options struct {
	n                         int
	seed                      uint64
	python, ortLib, work, out string
	cfg                       trainer.TorchConfig
}

func run(ctx context.Context, log zerolog.Logger, o options) error {
	start := time.Now()
	if err := inference.InitRuntime(cmp.Or(o.ortLib, inference.FindLibrary(os.Getenv))); err != nil {
		return err
	}
	eng, err := trainer.NewTorchEngine(o.cfg)
	if err != nil {
		return err
	}
	env := eng.Env()
	log.Info().Str("python", eng.Python()).Str("torch", env.Torch).Any("cuda", env.CUDA).Int("gpus", env.GPUs).
		Strs("gpu_names", env.GPUNames).Str("onnxruntime", inference.RuntimeVersion()).Dur("startup", time.Since(start)).Msg("engine ready")

	t0 := time.Now()
	set, err := render(ctx, o.n, o.seed)
	if err != nil {
		return err
	}
	log.Info().Int("train", len(set.train)).Int("holdout_1", len(set.sel)).Int("holdout_3", len(set.test)).
		Dur("took", time.Since(t0)).Msg("demo images rendered and resized")

	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "gpubench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	job := trainer.Job{
		Name: "gpubench-" + o.cfg.Arch, Version: "0.0.1", Classes: demodata.Classes(),
		Train: set.train, Select: set.sel, Images: set, Seed: o.seed, WorkDir: work, Log: log,
		Progress: func(p trainer.Progress) {
			fmt.Fprintf(os.Stderr, "epoch %2d/%d  loss %.4f  holdout_1 accuracy %.4f  macro-F1 %.4f  %.0f images/s\n",
				p.Epoch, p.Epochs, p.Loss, p.SelectAccuracy, p.SelectMacroF1, p.ImagesPerSec)
		},
	}
	t1 := time.Now()
	res, err := eng.Train(ctx, job)
	if err != nil {
		return err
	}
	engineWall := time.Since(t1)
	if o.out != "" {
		if err := models.WriteModelDir(o.out, res.Files); err != nil {
			return err
		}
	}

	model, err := inference.LoadModel(res.Files, inference.SessionOptions{})
	if err != nil {
		return fmt.Errorf("load the trained model: %w", err)
	}
	defer model.Close()
	correct := 0
	for i := 0; i < len(set.test); i += 32 {
		end := min(i+32, len(set.test))
		var batch [][]byte
		for _, ex := range set.test[i:end] {
			batch = append(batch, set.rgb[ex.Key])
		}
		probs, err := model.Run(batch)
		if err != nil {
			return fmt.Errorf("score holdout_3: %w", err)
		}
		for j, p := range probs {
			if model.Labels[argmax(p)] == set.test[i+j].Class {
				correct++
			}
		}
	}
	tr := model.Card.Training
	acc := float64(correct) / float64(len(set.test))
	fmt.Printf("device             %s\n", tr.Device)
	fmt.Printf("holdout_3 accuracy %.4f (%d/%d)\n", acc, correct, len(set.test))
	fmt.Printf("training seconds   %.1f (epochs only; engine wall %.1f s with start-up, export and ONNX checks)\n", tr.Seconds, engineWall.Seconds())
	fmt.Printf("images/s           %.0f\n", tr.ImagesPerSec)
	fmt.Printf("best epoch         %v of %d\n", tr.Extra["best_epoch"], o.cfg.Epochs)
	fmt.Printf("total seconds      %.1f\n", time.Since(start).Seconds())
	line, _ := json.Marshal(map[string]any{
		"arch": model.Card.Arch, "device": tr.Device, "holdout_3_accuracy": acc, "holdout_3_images": len(set.test),
		"training_seconds": tr.Seconds, "images_per_sec": tr.ImagesPerSec, "engine_wall_seconds": engineWall.Seconds(),
		"total_seconds": time.Since(start).Seconds(), "torch": tr.Extra["torch"], "cuda": tr.Extra["cuda"],
		"target_met": acc >= 0.99 && tr.Seconds <= 60,
	})
	fmt.Println(string(line))
	return nil
}

func argmax(p []float64) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

// dataset is the rendered images, in memory, and an ImageSource over them.
type dataset struct {
	train, sel, test []trainer.Example
	png, rgb         map[string][]byte
}

func (d *dataset) PNG(_ context.Context, ex trainer.Example) ([]byte, error) {
	b, ok := d.png[ex.Key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", ex.Key, objstore.ErrNotFound)
	}
	return b, nil
}

// render makes the demo images as the pipeline would see them: rendered,
// JPEG-encoded like `eyeflow demo-data`, decoded and resized by imaging
// (libjpeg-turbo DCT scaling, Pillow-exact bilinear), stored as PNG.
func render(ctx context.Context, n int, seed uint64) (*dataset, error) {
	type item struct {
		class string
		index int
	}
	var items []item
	counts := demodata.Counts(n)
	for _, c := range demodata.Classes() {
		for i := range counts[c] {
			items = append(items, item{c, i})
		}
	}
	d := &dataset{png: map[string][]byte{}, rgb: map[string][]byte{}}
	var mu sync.Mutex
	var firstErr error
	next := make(chan item)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				key, png, rgb, err := renderOne(it.class, it.index, seed)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				d.png[key], d.rgb[key] = png, rgb
				mu.Unlock()
			}
		}()
	}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		next <- it
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, it := range items {
		name := demodata.FileName(it.class, it.index)
		ex := trainer.Example{ImageID: name, Class: it.class, Bucket: "processed", Key: it.class + "/" + name}
		h := sha256.Sum256([]byte(name))
		switch binary.BigEndian.Uint64(h[:8]) % 10 {
		case 8:
			ex.Split = "holdout_1"
			d.sel = append(d.sel, ex)
		case 9:
			ex.Split = "holdout_3"
			d.test = append(d.test, ex)
		default:
			ex.Split = "train"
			d.train = append(d.train, ex)
		}
	}
	for _, s := range [][]trainer.Example{d.train, d.sel, d.test} {
		sort.Slice(s, func(i, j int) bool { return s[i].ImageID < s[j].ImageID })
	}
	return d, nil
}

func renderOne(class string, index int, seed uint64) (key string, png, rgb []byte, err error) {
	img, err := demodata.Image(class, index, demodata.Options{Seed: seed})
	if err != nil {
		return "", nil, nil, err
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, img, &jpeg.Options{Quality: demodata.DefaultQuality}); err != nil {
		return "", nil, nil, fmt.Errorf("encode %s %d: %w", class, index, err)
	}
	res, err := imaging.Decode(jb.Bytes(), imaging.DefaultOptions())
	if err != nil {
		return "", nil, nil, fmt.Errorf("resize %s %d: %w", class, index, err)
	}
	var pb bytes.Buffer
	if err := imaging.EncodePNG(&pb, res.RGB, res.Width, res.Height); err != nil {
		return "", nil, nil, err
	}
	return class + "/" + demodata.FileName(class, index), pb.Bytes(), res.RGB, nil
}
