// Command embedded benchmarks the trainer's embedded engine (a multinomial
// logistic-regression head on frozen features of the synthetic DenseNet121,
// torchvision initialisation, through ONNX Runtime) on the demo data set,
// split as eyeflow's splitter would split it, and scores the trained model
// with the trainer's own evaluator. bench/trainer/embedded.sh runs it for
// 600 and 2000 images and prints the table of BENCHMARKS.md.
//
//	embedded -total 600 -out bench/out/trainer-embedded/600
//	embedded -table bench/out/trainer-embedded/600/result.json bench/out/trainer-embedded/2000/result.json
//
// The demo images (2048x1536 JPEGs, seed 1) are generated once into a cache
// folder (-cache; default under the user cache directory) and reused. Every
// JPEG is decoded and resized by imaging.Decode with the default options, as
// the resize stage does; the image id is the hex SHA-256 of the file's
// bytes, and splitter.NewAssigner(splitter.DefaultConfig()) assigns the
// split, so train and holdout_1..3 are those eyeflow would make.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"eyeflow/demodata"
	"eyeflow/imaging"
	"eyeflow/inference"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/processors/splitter"
	"eyeflow/processors/trainer"
	"eyeflow/schemas"
)

// splits in the order they are reported.
var splits = []string{schemas.SplitTrain, schemas.SplitHoldout1, schemas.SplitHoldout2, schemas.SplitHoldout3}

// Result is one run, as written to <out>/result.json.
type Result struct {
	Total          int            `json:"total"`
	Seed           uint64         `json:"seed"`
	Cores          int            `json:"cores"`
	Provider       string         `json:"provider"`
	SplitImages    map[string]int `json:"split_images"`
	Classes        int            `json:"classes"`
	DecodeSeconds  float64        `json:"decode_seconds"`
	BackboneLoadS  float64        `json:"backbone_load_seconds"`
	FeatureImages  int            `json:"feature_images"`
	FeatureSeconds float64        `json:"feature_seconds"`
	FeaturesPerSec float64        `json:"features_per_sec"`
	FitSeconds     float64        `json:"fit_seconds"`
	TrainSeconds   float64        `json:"train_seconds"`
	EvalSeconds    float64        `json:"eval_seconds"`
	Lambda         float64        `json:"lambda"`
	// Tried are the engine's per-lambda fits with their holdout_1 figures.
	Tried    []map[string]any                  `json:"tried"`
	Holdouts map[string]schemas.HoldoutMetrics `json:"holdouts"`
	// Majority is the train split's most frequent class and Baseline its
	// accuracy on holdout_3 (always predicting it).
	Majority string  `json:"majority_class"`
	Baseline float64 `json:"majority_baseline_holdout_3"`
	Skipped  int     `json:"skipped"`
}

func main() {
	total := flag.Int("total", 600, "demo images")
	out := flag.String("out", "", "write result.json (and the trained model under model/) to this folder")
	cache := flag.String("cache", "", "demo data folder, generated when incomplete (default <user cache>/eyeflow/bench-trainer/demo-seed1-<total>)")
	ortLib := flag.String("ort-lib", os.Getenv(inference.EnvORTLibrary), "libonnxruntime.so path")
	table := flag.Bool("table", false, "print the table of the result.json files given as arguments and exit")
	flag.Parse()

	if *table {
		if err := printTable(os.Stdout, flag.Args()); err != nil {
			fmt.Fprintln(os.Stderr, "embedded:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *total, *cache, *out, *ortLib); err != nil {
		fmt.Fprintln(os.Stderr, "embedded:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05")+" "+format+"\n", args...)
}

const seed = 1

func run(ctx context.Context, total int, cache, out, ortLib string) error {
	if total < 15 {
		return fmt.Errorf("-total %d: at least 15 (one image per class)", total)
	}
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return err
		}
		cache = filepath.Join(dir, "eyeflow", "bench-trainer", fmt.Sprintf("demo-seed%d-%d", seed, total))
	}
	if err := ensureDemo(ctx, cache, total); err != nil {
		return err
	}
	if err := inference.InitRuntime(cmp.Or(ortLib, inference.FindLibrary(os.Getenv))); err != nil {
		return err
	}

	t0 := time.Now()
	src, ds, err := load(ctx, cache)
	if err != nil {
		return err
	}
	res := Result{Total: total, Seed: seed, Cores: runtime.GOMAXPROCS(0), SplitImages: map[string]int{},
		DecodeSeconds: time.Since(t0).Seconds()}
	for _, s := range splits {
		res.SplitImages[s] = len(ds.Splits[s])
	}
	classes := ds.Classes()
	res.Classes = len(classes)
	logf("%d images decoded and resized in %.1f s: train %d, holdout_1 %d, holdout_2 %d, holdout_3 %d; %d train classes",
		len(src.png), res.DecodeSeconds, res.SplitImages[splits[0]], res.SplitImages[splits[1]], res.SplitImages[splits[2]],
		res.SplitImages[splits[3]], len(classes))

	t1 := time.Now()
	feats, err := trainer.NewFeatures(nil, inference.SessionOptions{})
	if err != nil {
		return err
	}
	defer feats.Close()
	res.BackboneLoadS = time.Since(t1).Seconds()
	res.Provider = feats.Provider()
	logf("backbone %s loaded in %.1f s on %s", feats.Digest(), res.BackboneLoadS, res.Provider)

	// Train extracts the features of train + holdout_1 itself (Features
	// without a store keeps none between calls), then fits one head per
	// lambda: its card reports both parts.
	eng := trainer.NewEmbedded(feats, trainer.EmbeddedConfig{})
	job := trainer.Job{
		Name: "bench-embedded", Version: "0.0.1", Classes: classes,
		Train: ds.Splits[schemas.SplitTrain], Select: ds.Splits[schemas.SplitHoldout1], Images: src, Seed: seed,
		Progress: func(p trainer.Progress) {
			if p.Epoch == 0 {
				logf("%s", p.Message)
				return
			}
			logf("%s: loss %.4f, holdout_1 accuracy %.4f, macro-F1 %.4f", p.Message, p.Loss, p.SelectAccuracy, p.SelectMacroF1)
		},
	}
	t2 := time.Now()
	tr, err := eng.Train(ctx, job)
	if err != nil {
		return err
	}
	res.TrainSeconds = time.Since(t2).Seconds()
	res.Skipped = len(tr.Skipped)
	var card models.Card
	if err := json.Unmarshal(tr.Files.Card, &card); err != nil {
		return fmt.Errorf("model card: %w", err)
	}
	t := card.Training
	if t == nil {
		return fmt.Errorf("model card has no training section")
	}
	res.FeatureImages = t.TrainImages + t.SelectImages
	res.FeaturesPerSec = t.ImagesPerSec
	res.FeatureSeconds = number(t.Extra["features_seconds"])
	res.FitSeconds = res.TrainSeconds - res.FeatureSeconds
	res.Lambda = number(t.Extra["chosen_lambda"])
	res.Tried = t.Epochs
	logf("trained in %.1f s: features %d images in %.1f s (%.2f/s), fit %.1f s, lambda %g",
		res.TrainSeconds, res.FeatureImages, res.FeatureSeconds, res.FeaturesPerSec, res.FitSeconds, res.Lambda)

	t3 := time.Now()
	ev := trainer.Evaluator{Images: src}
	res.Holdouts, err = ev.Evaluate(ctx, tr.Files, ds)
	if err != nil {
		return err
	}
	res.EvalSeconds = time.Since(t3).Seconds()
	res.Majority, res.Baseline = majority(ds)
	for _, h := range trainer.Holdouts() {
		m := res.Holdouts[h]
		logf("%s: %d images, accuracy %.4f [%.4f, %.4f], macro-F1 %.4f, ECE %.4f", h, m.Images, m.Accuracy,
			m.AccuracyCI95[0], m.AccuracyCI95[1], m.MacroF1, m.ECE)
	}
	logf("evaluated in %.1f s; majority class %s scores %.4f on holdout_3", res.EvalSeconds, res.Majority, res.Baseline)

	if out != "" {
		if err := models.WriteModelDir(filepath.Join(out, "model"), tr.Files); err != nil {
			return err
		}
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "result.json"), append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return printTable(os.Stdout, nil, res)
}

func number(v any) float64 {
	f, _ := v.(float64)
	return f
}

// ensureDemo generates the demo data set into dir unless a previous run
// completed it (marked by .complete).
func ensureDemo(ctx context.Context, dir string, total int) error {
	mark := filepath.Join(dir, ".complete")
	if _, err := os.Stat(mark); err == nil {
		logf("demo data: reusing %s", dir)
		return nil
	}
	logf("demo data: generating %d images into %s", total, dir)
	start := time.Now()
	sum, err := demodata.Generate(ctx, demodata.Options{Out: dir, Total: total, Seed: seed,
		Progress: func(done, n int) {
			if done%100 == 0 || done == n {
				logf("demo data: %d/%d", done, n)
			}
		}})
	if err != nil {
		return fmt.Errorf("demo data: %w", err)
	}
	logf("demo data: %d files, %d MB in %.0f s", sum.Files, sum.Bytes>>20, time.Since(start).Seconds())
	return os.WriteFile(mark, fmt.Appendf(nil, "%d\n", sum.Files), 0o644)
}

// images serves the processed PNGs from memory.
type images struct{ png map[string][]byte }

func (s *images) PNG(_ context.Context, ex trainer.Example) ([]byte, error) {
	b, ok := s.png[ex.Key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", ex.Key, objstore.ErrNotFound)
	}
	return b, nil
}

// load decodes and resizes every JPEG as the resize stage does, and lays the
// images out as the splitter would: processed/dataset/<split>/<class>/<id>.png.
func load(ctx context.Context, dir string) (*images, *trainer.Dataset, error) {
	type file struct{ class, path string }
	var files []file
	for _, class := range demodata.Classes() {
		names, err := filepath.Glob(filepath.Join(dir, class, "*.jpg"))
		if err != nil {
			return nil, nil, err
		}
		for _, n := range names {
			files = append(files, file{class, n})
		}
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("no JPEGs under %s", dir)
	}
	a, err := splitter.NewAssigner(splitter.DefaultConfig())
	if err != nil {
		return nil, nil, err
	}
	prefix := splitter.DefaultConfig().Prefix
	exs := make([]trainer.Example, len(files))
	pngs := make([][]byte, len(files))
	errs := make([]error, len(files))
	next := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				exs[i], pngs[i], errs[i] = loadOne(a, prefix, files[i].class, files[i].path)
			}
		})
	}
	for i := range files {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	src := &images{png: map[string][]byte{}}
	ds := &trainer.Dataset{Bucket: objstore.BucketProcessed, Prefix: prefix, Splits: map[string][]trainer.Example{}}
	for i, ex := range exs {
		if errs[i] != nil {
			return nil, nil, errs[i]
		}
		if _, dup := src.png[ex.Key]; dup {
			continue // the same bytes twice: one image, as in eyeflow
		}
		src.png[ex.Key] = pngs[i]
		ds.Splits[ex.Split] = append(ds.Splits[ex.Split], ex)
	}
	for _, s := range ds.Splits {
		slices.SortFunc(s, func(a, b trainer.Example) int {
			return strings.Compare(a.Class+"/"+a.ImageID, b.Class+"/"+b.ImageID)
		})
	}
	return src, ds, nil
}

func loadOne(a *splitter.Assigner, prefix, class, path string) (trainer.Example, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return trainer.Example{}, nil, err
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return trainer.Example{}, nil, err
	}
	sum := sha256.Sum256(data)
	id := hex.EncodeToString(sum[:])
	img, err := imaging.Decode(data, imaging.DefaultOptions())
	if err != nil {
		return trainer.Example{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	var png bytes.Buffer
	if err := imaging.EncodePNG(&png, img.RGB, img.Width, img.Height); err != nil {
		return trainer.Example{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	split := a.Assign(a.KeyFor(id, "", ""), class).Split
	if !slices.Contains(splits, split) {
		return trainer.Example{}, nil, fmt.Errorf("%s: split %q", path, split)
	}
	return trainer.Example{
		ImageID: id, Class: class, Split: split, Bucket: objstore.BucketProcessed,
		Key: prefix + "/" + split + "/" + class + "/" + id + ".png",
	}, png.Bytes(), nil
}

// majority is the train split's most frequent class (ties to the first in
// sorted order) and its accuracy on holdout_3.
func majority(ds *trainer.Dataset) (string, float64) {
	counts := ds.ClassCounts(schemas.SplitTrain)
	best := ""
	for _, c := range ds.Classes() {
		if best == "" || counts[c] > counts[best] {
			best = c
		}
	}
	h3 := ds.Splits[schemas.SplitHoldout3]
	if len(h3) == 0 {
		return best, 0
	}
	n := 0
	for _, ex := range h3 {
		if ex.Class == best {
			n++
		}
	}
	return best, float64(n) / float64(len(h3))
}

// printTable prints one markdown table: a row per holdout of each run, the
// run's training figures on its first row, and the majority baseline.
func printTable(w io.Writer, paths []string, extra ...Result) error {
	rs := extra
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rs = append(rs, r)
	}
	fmt.Fprintln(w, "| demo images | train / holdout_1 | features/s | features s | fit s | lambda | train s | evaluate s | holdout | images | accuracy [95% CI] | macro-F1 | ECE |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		for i, h := range trainer.Holdouts() {
			m := r.Holdouts[h]
			run := "| | | | | | | | | "
			if i == 0 {
				run = fmt.Sprintf("| %d | %d / %d | %.1f | %.1f | %.1f | %g | %.1f | %.1f | ", r.Total,
					r.SplitImages[schemas.SplitTrain], r.SplitImages[schemas.SplitHoldout1], r.FeaturesPerSec,
					r.FeatureSeconds, r.FitSeconds, r.Lambda, r.TrainSeconds, r.EvalSeconds)
			}
			fmt.Fprintf(w, "%s%s | %d | %.1f%% [%.1f, %.1f] | %.3f | %.3f |\n", run, h, m.Images, 100*m.Accuracy,
				100*m.AccuracyCI95[0], 100*m.AccuracyCI95[1], m.MacroF1, m.ECE)
		}
		fmt.Fprintf(w, "| | | | | | | | | holdout_3, majority class (%s) | %d | %.1f%% | | |\n", r.Majority,
			r.Holdouts[schemas.SplitHoldout3].Images, 100*r.Baseline)
	}
	return nil
}
