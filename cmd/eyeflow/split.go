package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"eyeflow/internal/deployment"
	"eyeflow/objstore"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
	"eyeflow/security/pseudonym"
	"eyeflow/stage"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// splitFlags configure the split function. Every command that takes them
// (`eyeflow up`, `splitter`, `split explain`) names them --split-* and reads
// the same EYEFLOW_SPLIT_* variables, so an explain run in the stage's
// environment answers with the stage's salt.
type splitFlags struct {
	salt, saltVersion string
	train             float64
	weights           string
	keyPattern        string
	prefix            string
	concurrency       int
}

// register adds the flags; stage adds the splitter stage's own
// (--split-concurrency).
func (f *splitFlags) register(fs *flagSet, stage bool) {
	def := splitter.DefaultConfig()
	fs.stringVar(&f.salt, "split-salt", def.Salt, "salt of the split hash: changing it reshuffles every split (bump --split-salt-version with it)")
	fs.stringVar(&f.saltVersion, "split-salt-version", def.SaltVersion, "salt version recorded in every eye.split event")
	fs.float64Var(&f.train, "split-train-fraction", def.TrainFraction, "share of each class assigned to train; the rest is the test part")
	fs.stringVar(&f.weights, "split-holdout-weights", "1,1,1", "relative sizes of holdout_1,holdout_2,holdout_3 within the test part")
	fs.stringVar(&f.keyPattern, "split-key-pattern", "", "Go regexp with a (?P<patient>...) group matched against the source key, for uploads without patient-id metadata")
	registerSplitPrefix(fs, &f.prefix)
	if stage {
		// Only the stage copies; explain has nothing to run concurrently.
		fs.intVar(&f.concurrency, "split-concurrency", def.Concurrency, "images the splitter places and copies at once")
	}
}

// registerSplitPrefix adds --split-prefix, the dataset folder every command
// that reads or writes the dataset shares.
func registerSplitPrefix(fs *flagSet, p *string) {
	fs.stringVar(p, "split-prefix", splitter.DefaultPrefix, "dataset folder in the processed bucket")
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
		return cfg, fmt.Errorf("--split-holdout-weights %q: want three comma-separated numbers, e.g. 1,1,1", f.weights)
	}
	for i, p := range parts {
		w, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return cfg, fmt.Errorf("--split-holdout-weights %q: %w", f.weights, err)
		}
		cfg.HoldoutWeights[i] = w
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("split settings: %w", err)
	}
	return cfg, nil
}

func (f *splitFlags) validate() error {
	_, err := f.config()
	return err
}

func (f *splitFlags) processor(ctx context.Context, p *proc, js jetstream.JetStream, store objstore.Store) (stage.Processor[schemas.Resized], error) {
	cfg, err := f.config()
	if err != nil {
		return stage.Processor[schemas.Resized]{}, err
	}
	if cfg.Patients, err = patientRule(ctx, p, js, cfg.Salt); err != nil {
		return stage.Processor[schemas.Resized]{}, fmt.Errorf("splitter: %w", err)
	}
	s, err := splitter.New(cfg, store)
	if err != nil {
		return stage.Processor[schemas.Resized]{}, err
	}
	return splitter.Processor(s, p.log, p.metrics), nil
}

// patientRule is the deployment's patient pseudonym rule for a stage with
// the given split salt, from the deployment record: there is no default,
// so a deployment without one fails the stage's start, saying how to make
// it. A legacy deployment's rule is logged as a warning: its pseudonyms are
// only as secret as its split salt.
func patientRule(ctx context.Context, p *proc, js jetstream.JetStream, salt string) (pseudonym.Rule, error) {
	rule, rec, err := deployment.PseudonymRule(ctx, js, salt)
	if err != nil {
		return rule, err
	}
	if rule.Scheme() != pseudonym.SchemeLegacy {
		p.log.Info().Str("pseudonyms", rec.String()).Msg("patient ids are pseudonymised under the deployment's key")
		return rule, nil
	}
	ev := p.log.Warn().Str("pseudonyms", rec.String())
	if salt == splitter.DefaultConfig().Salt {
		ev = ev.Str("hint", "--split-salt is the public default: anyone reading eye.resized or eye.split can recover guessable patient ids by hashing candidates")
	}
	ev.Msg("patient pseudonyms keep the legacy salted hash of a deployment made before pseudonym keys (so its splits do not move): keep --split-salt secret")
	return rule, nil
}

// runSplitter is `eyeflow splitter`: the stage alone against --nats and --s3.
func runSplitter(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var sf splitFlags
	fs := newFlagSet("splitter", "", "Runs the splitter processor: eye.resized -> eye.split.<split>, copying labelled images into\n"+
		"transformed_eye_dataset/{train,test,holdout_N}/<class>/ in the processed bucket.", out, errOut)
	s.register(fs)
	sf.register(fs, true)
	if err := fs.parse(args, s.validate, sf.validate); err != nil {
		return err
	}
	return s.run(ctx, "splitter", errOut, stageNeeds(schemas.StageSplitter, nil), func(e standaloneEnv) ([]task, error) {
		sp, err := sf.processor(ctx, e.p, e.js, e.store)
		if err != nil {
			return nil, err
		}
		return []task{stageTask(e.js, sp)}, nil
	})
}

// splitSubcommands are the verbs of `eyeflow split`.
func splitSubcommands() []subcommand {
	return []subcommand{
		{"explain", "which split each local file would get, and the hash it came from (no pipeline needed)", runSplitExplain},
		{"report", "per-class counts per split, listed from the processed bucket", runSplitReport},
		{"export", "copy the dataset layout to a local folder (for training)", runSplitExport},
	}
}

// runSplit is `eyeflow split explain|report|export`.
func runSplit(ctx context.Context, args []string, out, errOut io.Writer) error {
	return runGroup(ctx, "split", "The dataset the splitter builds: explain the split of local files, report or export what is in the bucket.",
		splitSubcommands(), args, out, errOut)
}

func runSplitExplain(ctx context.Context, args []string, out, errOut io.Writer) error {
	var sf splitFlags
	var n natsFlags
	var class, patient string
	var asJSON bool
	fs := newFlagSet("split explain", "FILE...", "Prints the split and holdout each local file would get and the hash it came from, without running\n"+
		"the pipeline. The image id is the SHA-256 of the file's bytes, as in the pipeline. Without --class a\n"+
		"file is unlabeled (never in a training split); the split it would get with a class is shown too.\n"+
		"A patient (--patient-id, --split-key-pattern) is keyed by its pseudonym under the deployment's\n"+
		"secret key, read from the deployment's NATS cluster (--nats); files without one need no cluster.", out, errOut)
	n.register(fs, defaultNATS(), natsClientUsage+"; read only for a patient's pseudonym key")
	fs.stringVar(&class, "class", "", "class (label) of the files")
	fs.stringVar(&patient, "patient-id", "", "patient id of the files, as the upload's patient-id metadata would give")
	fs.boolVar(&asJSON, "json", false, "print JSON")
	sf.register(fs, false)
	for _, n := range []string{"salt", "salt-version", "train-fraction", "holdout-weights", "key-pattern", "prefix"} {
		fs.deprecate(n, "split-"+n)
	}
	if err := fs.parse(args, sf.validate); err != nil {
		return err
	}
	files := fs.Args()
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			return fmt.Errorf("split explain: %s is a directory: name the files (e.g. %s)", f, filepath.Join(f, "*.jpg"))
		} else if err != nil {
			return fmt.Errorf("split explain: %w", err)
		}
	}
	cfg, err := sf.config()
	if err != nil {
		return err
	}
	if strings.TrimSpace(patient) != "" || cfg.KeyPattern != "" {
		if cfg.Patients, err = explainRule(ctx, &n, cfg.Salt); err != nil {
			return fmt.Errorf("split explain: %w", err)
		}
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

// explainRule reads the deployment's pseudonym rule for explain: once,
// without the waits and retries of a long-running process.
func explainRule(ctx context.Context, n *natsFlags, salt string) (pseudonym.Rule, error) {
	if err := n.validate(); err != nil {
		return pseudonym.Rule{}, err
	}
	nc, js, err := n.dial(n.url, "eyeflow-split-explain", zerolog.Nop(), nats.MaxReconnects(0))
	if err != nil {
		return pseudonym.Rule{}, fmt.Errorf("a patient's pseudonym needs the deployment's key: %w", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rule, _, err := deployment.PseudonymRule(ctx, js, salt)
	return rule, err
}

func runSplitReport(ctx context.Context, args []string, out, errOut io.Writer) error {
	var c storeClient
	var prefix string
	var asJSON bool
	fs := newFlagSet("split report", "", "Lists the dataset in the processed bucket and prints per-class image counts per split, with any\n"+
		"broken invariant (a test image in no or several holdouts, an image in train and test).", out, errOut)
	c.register(fs)
	registerSplitPrefix(fs, &prefix)
	fs.boolVar(&asJSON, "json", false, "print JSON, for the dashboard")
	if err := fs.parse(args, c.validate); err != nil {
		return err
	}
	store, closeStore, err := c.open(ctx, "split report", errOut)
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
		"layout torchvision's ImageFolder reads (point it at DIR/train). Existing files of the same size are kept.\n"+
		"Beside the splits it writes the whole data set's classes: DIR/classes.json (sorted, as ImageFolder sorts them)\n"+
		"and DIR/class_to_idx.json ({class: index}). ImageFolder numbers only the classes present in the folder it\n"+
		"reads, so a class missing from one split shifts the indices of the others (normal can be 8 in train and 5\n"+
		"in holdout_1), and a model fitted on train is scored against the wrong labels. Map each split's targets\n"+
		"through the file:\n"+
		"  c2i = json.load(open('DIR/class_to_idx.json'))\n"+
		"  ds = torchvision.datasets.ImageFolder('DIR/holdout_2')\n"+
		"  ds.target_transform = {i: c2i[c] for c, i in ds.class_to_idx.items()}.__getitem__\n"+
		"and give the model len(c2i) outputs.", out, errOut)
	c.register(fs)
	registerSplitPrefix(fs, &prefix)
	fs.stringVar(&dir, "out", "", "local folder to write the dataset into")
	fs.require("out")
	if err := fs.parse(args, c.validate); err != nil {
		return err
	}
	store, closeStore, err := c.open(ctx, "split export", errOut)
	if err != nil {
		return err
	}
	defer closeStore()
	root := strings.Trim(prefix, "/") + "/"
	var files int
	var bytes int64
	classes := map[string]bool{}
	for info, err := range store.List(ctx, objstore.BucketProcessed, root) {
		if err != nil {
			return fmt.Errorf("split export: %w", err)
		}
		// Keys were checked when written; check again before they become paths.
		if err := objkey.Check(info.Key); err != nil {
			return fmt.Errorf("split export: %s: %w", info.Key, err)
		}
		rel := strings.TrimPrefix(info.Key, root)
		if parts := strings.Split(rel, "/"); len(parts) == 3 && parts[1] != "" {
			classes[parts[1]] = true // <split>/<class>/<file>
		}
		dst := filepath.Join(dir, filepath.FromSlash(rel))
		if st, err := os.Stat(dst); err == nil && st.Size() == info.Size {
			continue
		}
		if err := exportObject(ctx, store, info.Key, dst); err != nil {
			return err
		}
		files++
		bytes += info.Size
	}
	names, err := writeClassIndex(dir, classes)
	if err != nil {
		return fmt.Errorf("split export: %w", err)
	}
	fmt.Fprintf(out, "exported %d files (%s) to %s; %d classes in %s and %s\n", files, humanBytes(bytes), dir, len(names),
		filepath.Join(dir, "classes.json"), filepath.Join(dir, "class_to_idx.json"))
	return nil
}

// writeClassIndex writes dir/classes.json (the classes, sorted as
// ImageFolder sorts them) and dir/class_to_idx.json ({class: index}) for
// the whole data set, whichever splits each class is in.
func writeClassIndex(dir string, classes map[string]bool) ([]string, error) {
	names := make([]string, 0, len(classes))
	for c := range classes {
		names = append(names, c)
	}
	slices.Sort(names)
	idx := make(map[string]int, len(names))
	for i, c := range names {
		idx[c] = i
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for name, v := range map[string]any{"classes.json": names, "class_to_idx.json": idx} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	return names, nil
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
