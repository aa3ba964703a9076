package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"eyeflow/objstore"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
	"eyeflow/stage"
)

// splitFlags configure the split function. The stage (`eyeflow up`,
// `eyeflow splitter`) names them --split-*, `eyeflow split explain` without
// the prefix; both read the same EYEFLOW_SPLIT_* variables, so an explain
// run in the stage's environment answers with the stage's salt.
type splitFlags struct {
	salt, saltVersion string
	train             float64
	weights           string
	keyPattern        string
	prefix            string
	concurrency       int
}

func (f *splitFlags) register(fs *flagSet, flagPrefix string) {
	def := splitter.DefaultConfig()
	bind := func(name string) string {
		fs.env[flagPrefix+name] = envName("split-" + name)
		return flagPrefix + name
	}
	fs.StringVar(&f.salt, bind("salt"), def.Salt, "salt of the split hash: changing it reshuffles every split (bump --"+flagPrefix+"salt-version with it)")
	fs.StringVar(&f.saltVersion, bind("salt-version"), def.SaltVersion, "salt version recorded in every eye.split event")
	fs.Float64Var(&f.train, bind("train-fraction"), def.TrainFraction, "share of each class assigned to train; the rest is the test part")
	fs.StringVar(&f.weights, bind("holdout-weights"), "1,1,1", "relative sizes of holdout_1,holdout_2,holdout_3 within the test part")
	fs.StringVar(&f.keyPattern, bind("key-pattern"), "", "Go regexp with a (?P<patient>...) group matched against the source key, for uploads without patient-id metadata")
	fs.StringVar(&f.prefix, bind("prefix"), def.Prefix, "dataset folder in the processed bucket")
	if flagPrefix != "" {
		// Only the stage copies; explain has nothing to run concurrently.
		fs.IntVar(&f.concurrency, bind("concurrency"), def.Concurrency, "images the splitter places and copies at once")
	}
}

// config turns the flags into a validated splitter configuration.
func (f *splitFlags) config() (splitter.Config, error) {
	cfg := splitter.DefaultConfig()
	cfg.Salt, cfg.SaltVersion = f.salt, f.saltVersion
	cfg.TrainFraction = f.train
	cfg.KeyPattern = f.keyPattern
	cfg.Prefix = f.prefix
	if f.concurrency > 0 {
		cfg.Concurrency = f.concurrency
	}
	parts := strings.Split(f.weights, ",")
	if len(parts) != len(cfg.HoldoutWeights) {
		return cfg, fmt.Errorf("holdout weights %q: want three comma-separated numbers, e.g. 1,1,1", f.weights)
	}
	for i, p := range parts {
		w, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return cfg, fmt.Errorf("holdout weights %q: %w", f.weights, err)
		}
		cfg.HoldoutWeights[i] = w
	}
	return cfg, cfg.Validate()
}

func (f *splitFlags) validate() error {
	_, err := f.config()
	return err
}

func (f *splitFlags) processor(p *proc, store objstore.Store) (stage.Processor[schemas.Resized], error) {
	cfg, err := f.config()
	if err != nil {
		return stage.Processor[schemas.Resized]{}, err
	}
	s, err := splitter.New(cfg, store)
	if err != nil {
		return stage.Processor[schemas.Resized]{}, err
	}
	return splitter.Processor(s, p.log, p.metrics), nil
}

// runSplitter is `eyeflow splitter`: the stage alone against --nats and --s3.
func runSplitter(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var sf splitFlags
	fs := newFlagSet("splitter", "", "Runs the splitter processor: eye.resized -> eye.split.<split>, copying labelled images into\n"+
		"transformed_eye_dataset/{train,test,holdout_N}/<class>/ in the processed bucket.", errOut)
	s.register(fs)
	sf.register(fs, "split-")
	if err := fs.parse(args); err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return err
	}
	if err := sf.validate(); err != nil {
		return err
	}
	return s.run(ctx, "splitter", errOut, func(e standaloneEnv) ([]task, error) {
		sp, err := sf.processor(e.p, e.store)
		if err != nil {
			return nil, err
		}
		return []task{stageTask(e.js, sp)}, nil
	})
}

// runSplit is `eyeflow split explain|report`.
func runSplit(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "explain":
			return runSplitExplain(args[1:], out, errOut)
		case "report":
			return runSplitReport(ctx, args[1:], out, errOut)
		case "export":
			return runSplitExport(ctx, args[1:], out, errOut)
		}
	}
	fmt.Fprintln(errOut, "usage: eyeflow split explain [flags] FILE...   which split each file would get, and the hash it came from\n"+
		"       eyeflow split report [flags]           per-class counts per split, listed from the processed bucket\n"+
		"       eyeflow split export --out DIR [flags] copy the dataset layout to a local folder (for training)")
	return errUsage
}

func runSplitExplain(args []string, out, errOut io.Writer) error {
	var sf splitFlags
	var class, patient string
	var asJSON bool
	fs := newFlagSet("split explain", "FILE...", "Prints the split and holdout each local file would get and the hash it came from, without running\n"+
		"the pipeline. The image id is the SHA-256 of the file's bytes, as in the pipeline. Without --class a\n"+
		"file is unlabeled (never in a training split); the split it would get with a class is shown too.", errOut)
	fs.stringVar(&class, "class", "", "class (label) of the files")
	fs.stringVar(&patient, "patient-id", "", "patient id of the files, as the upload's patient-id metadata would give")
	fs.boolVar(&asJSON, "json", false, "print JSON")
	sf.register(fs, "")
	files, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := sf.config()
	if err != nil {
		return err
	}
	a, err := splitter.NewAssigner(cfg)
	if err != nil {
		return err
	}
	es, err := splitter.Explain(a, cfg.Prefix, files, class, patient)
	if err != nil {
		return err
	}
	if asJSON {
		return splitter.WriteExplanationsJSON(out, es)
	}
	return splitter.WriteExplanations(out, es)
}

// parseInterleaved accepts flags after file names too (`explain a.jpg
// --class amd`), which the flag package alone stops at.
func parseInterleaved(fs *flagSet, args []string) ([]string, error) {
	var files []string
	for {
		if err := fs.FlagSet.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, flag.ErrHelp
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			files = append(files, args[1:]...)
			break
		}
		files = append(files, args[0])
		args = args[1:]
	}
	// Fill the flags not given from the environment.
	return files, fs.parse(nil)
}

func runSplitReport(ctx context.Context, args []string, out, errOut io.Writer) error {
	var c storeClient
	var prefix string
	var asJSON bool
	fs := newFlagSet("split report", "", "Lists the dataset in the processed bucket and prints per-class image counts per split, with any\n"+
		"broken invariant (a test image in no or several holdouts, an image in train and test).", errOut)
	c.register(fs)
	fs.stringVar(&prefix, "split-prefix", splitter.DefaultPrefix, "dataset folder in the processed bucket")
	fs.boolVar(&asJSON, "json", false, "print JSON, for the dashboard")
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	store, closeStore, err := c.open("split-report")
	if err != nil {
		return err
	}
	defer closeStore()
	rep, err := splitter.Report(ctx, store, objstore.BucketProcessed, prefix)
	if err != nil {
		return err
	}
	if asJSON {
		return rep.WriteJSON(out)
	}
	return rep.WriteText(out)
}

func runSplitExport(ctx context.Context, args []string, out, errOut io.Writer) error {
	var c storeClient
	var prefix, dir string
	fs := newFlagSet("split export", "", "Copies processed/<prefix>/ ({train,test,holdout_N}/<class>/<image-id>.png) into --out, the\n"+
		"layout torchvision's ImageFolder reads (point it at DIR/train). Existing files of the same size are kept.", errOut)
	c.register(fs)
	fs.stringVar(&prefix, "split-prefix", splitter.DefaultPrefix, "dataset folder in the processed bucket")
	fs.stringVar(&dir, "out", "", "local folder (required)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if dir == "" || fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	store, closeStore, err := c.open("split-export")
	if err != nil {
		return err
	}
	defer closeStore()
	root := strings.Trim(prefix, "/") + "/"
	var files int
	var bytes int64
	for info, err := range store.List(ctx, objstore.BucketProcessed, root) {
		if err != nil {
			return fmt.Errorf("split export: %w", err)
		}
		// Keys were checked when written; check again before they become paths.
		if err := objkey.Check(info.Key); err != nil {
			return fmt.Errorf("split export: %s: %w", info.Key, err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(strings.TrimPrefix(info.Key, root)))
		if st, err := os.Stat(dst); err == nil && st.Size() == info.Size {
			continue
		}
		if err := exportObject(ctx, store, info.Key, dst); err != nil {
			return err
		}
		files++
		bytes += info.Size
	}
	fmt.Fprintf(out, "exported %d files (%s) to %s\n", files, humanBytes(bytes), dir)
	return nil
}

func exportObject(ctx context.Context, store objstore.Store, key, dst string) error {
	rc, _, err := store.Get(ctx, objstore.BucketProcessed, key)
	if err != nil {
		return fmt.Errorf("split export: %w", err)
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("split export: %w", err)
	}
	tmp := dst + ".part"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("split export: %w", err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("split export %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("split export: %w", err)
	}
	return os.Rename(tmp, dst)
}
