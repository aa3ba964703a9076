package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"eyeflow/bus"
	"eyeflow/models"
	"eyeflow/processors/trainer"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

// modelSubcommands are the verbs of `eyeflow model`.
func modelSubcommands() []subcommand {
	return []subcommand{
		{"synth", "write a synthetic model folder (no download)", func(ctx context.Context, args []string, out, errOut io.Writer) error {
			return runModelSynth(args, out, errOut)
		}},
		{"push", "store a model folder in the registry", runModelPush},
		{"promote", "point an env at a registered version (an event on eye.models)", runModelPromote},
		{"rollback", "point an env back at what it served before (an event on eye.models)", runModelRollback},
		{"list", "registered versions, their envs, stage and holdout figures (--json for scripts)", runModelList},
		{"timeline", "every step on eye.models, and each prod version's accuracy on labelled live images", runModelTimeline},
	}
}

// runModel is `eyeflow model synth|push|promote|rollback|list|timeline`.
func runModel(ctx context.Context, args []string, out, errOut io.Writer) error {
	return runGroup(ctx, "model", "The model registry: versions in the models bucket, env -> version in KV "+bus.KVModels+", every step on eye.models.",
		modelSubcommands(), args, out, errOut)
}

func runModelSynth(args []string, out, errOut io.Writer) error {
	var o models.SynthOptions
	var dir string
	fs := newFlagSet("model synth", "", "Writes a synthetic model folder (model.onnx, labels.json in ImageFolder order, model.json) built in Go:\n"+
		"densenet121 is torchvision's architecture with deterministic random weights (benchmarks, first runs); tiny\n"+
		"outputs a fixed function of the mean colour (exact tests). Nothing is downloaded.", out, errOut)
	fs.stringVar(&o.Arch, "arch", models.ArchDenseNet121, "densenet121 or tiny")
	fs.stringVar(&dir, "out", "", "output folder")
	fs.require("out")
	fs.stringVar(&o.Name, "name", "", "model name in model.json (default per arch)")
	fs.stringVar(&o.Version, "version", "", "model version in model.json (default per arch)")
	fs.boolVar(&o.Probabilities, "probabilities", false, "tiny only: end in Softmax (output kind probabilities)")
	fs.boolVar(&o.FP16, "fp16", false, "densenet121 only: compute in half precision (weights stored as float16, float32 in and out; for GPUs, see processors/classifier/README.md)")
	if err := fs.parse(args); err != nil {
		return err
	}
	files, err := models.Synthesize(o)
	if err != nil {
		return err
	}
	if err := models.WriteModelDir(dir, files); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s model to %s (%d bytes model.onnx)\n", strings.ToLower(o.Arch), dir, len(files.ONNX))
	return nil
}

// registryFlags reach the registry: NATS (KV, and the object store unless --s3).
type registryFlags struct {
	nats  natsFlags
	store storeFlags
	// warn reports a store check that could not be made.
	warn func(error)
}

func (r *registryFlags) register(fs *flagSet) {
	r.warn = func(err error) { fmt.Fprintf(fs.errOut, "eyeflow %s: warning: %v\n", fs.name, err) }
	r.nats.register(fs, defaultNATS(), natsClientUsage)
	r.store.register(fs)
}

func (r *registryFlags) validate() error {
	if err := r.nats.validate(); err != nil {
		return err
	}
	return r.store.validate()
}

func (r *registryFlags) open(ctx context.Context, name string) (*models.Registry, func(), error) {
	reg, _, closeFn, err := r.openWith(ctx, name)
	return reg, closeFn, err
}

// openWith also returns the JetStream context, for commands that record
// rollouts and publish model events.
func (r *registryFlags) openWith(ctx context.Context, name string) (*models.Registry, jetstream.JetStream, func(), error) {
	nc, js, err := r.nats.dial(r.nats.url, "eyeflow-model-"+name, nopLogger())
	if err != nil {
		return nil, nil, nil, err
	}
	store, err := r.store.open(js, 1)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	// Before the registry opens (and creates its bucket in the wrong store).
	if err := checkStore(ctx, js, &r.store, store, r.warn); err != nil {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("model %s: %w", name, err)
	}
	reg, err := openRegistry(ctx, js, store, 1)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return reg, js, nc.Close, nil
}

// rollout returns the trainer's rollout bookkeeping over the registry, so
// a manual promotion or rollback is recorded and announced like the
// trainer's own.
func (r *registryFlags) rollout(ctx context.Context, name string) (*trainer.Trainer, func(), error) {
	reg, js, closeFn, err := r.openWith(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	kv, err := openKeyValue(ctx, js, bus.KVTrainer, 1)
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("kv %s: %w", bus.KVTrainer, err)
	}
	return trainer.ForRegistry(reg, kv, stage.PublisherOf(js), nopLogger()), closeFn, nil
}

func runModelPush(ctx context.Context, args []string, out, errOut io.Writer) error {
	var rf registryFlags
	var name, version string
	fs := newFlagSet("model push", "DIR", "Stores a model folder (model.onnx, labels.json, model.json) in the registry (bucket models,\n"+
		"<name>/<version>/). Versions are immutable. Flags may follow DIR.", out, errOut)
	rf.register(fs)
	fs.stringVar(&name, "name", "", "model name")
	fs.stringVar(&version, "version", "", "model version")
	fs.require("name", "version")
	fs.examples = []string{"eyeflow model push ./export --name fundus --version v7", "eyeflow model promote --env canary fundus v7"}
	if err := fs.parse(args, rf.validate); err != nil {
		return err
	}
	files, err := models.ReadModelDir(fs.Arg(0))
	if err != nil {
		return err
	}
	reg, closeFn, err := rf.open(ctx, "push")
	if err != nil {
		return err
	}
	defer closeFn()
	card, err := reg.Push(ctx, files, name, version)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "pushed %s %s (%d classes, output %s); promote with: eyeflow model promote --env ENV %s %s\n", name, version, card.Labels, card.Output.Kind, name, version)
	return nil
}

func runModelPromote(ctx context.Context, args []string, out, errOut io.Writer) error {
	var rf registryFlags
	var env, to, reason string
	fs := newFlagSet("model promote", "NAME VERSION", "Points an env at a registered model version; running classifiers swap to it between batches\n"+
		"(a model that fails to load is refused and the previous one keeps serving: check the classifier's log).\n"+
		"The step is recorded in the trainer's rollout records and published on eye.models with --reason.", out, errOut)
	rf.register(fs)
	fs.stringVar(&env, "env", "", "env to serve the version: prod, canary or staging")
	fs.stringVar(&to, "to", "", "same as --env")
	fs.stringVar(&reason, "reason", "", "why (required for prod: the clinical sign-off), recorded in the model event")
	fs.examples = []string{"eyeflow model promote --env canary fundus v7", "eyeflow model promote --to prod --reason \"signed off by Dr. A, ticket 123\" fundus v7"}
	if err := fs.parse(args, rf.validate); err != nil {
		return err
	}
	if to != "" && env != "" && to != env {
		return fmt.Errorf("model promote: --env %s and --to %s disagree", env, to)
	}
	if env == "" {
		env = to
	}
	switch {
	case env == "":
		return fs.usageErr("--env (or --to) is required: prod, canary or staging")
	case !slices.Contains(schemas.Envs(), env):
		return fs.check(fmt.Errorf("model promote: --env %q: want one of %v", env, schemas.Envs()))
	case env == schemas.EnvProd && strings.TrimSpace(reason) == "":
		return fs.usageErr("--reason is required for prod (who signed it off, and why)")
	}
	if reason == "" {
		reason = "promoted with eyeflow model promote"
	}
	t, closeFn, err := rf.rollout(ctx, "promote")
	if err != nil {
		return err
	}
	defer closeFn()
	if err := t.Promote(ctx, fs.Arg(0), fs.Arg(1), env, reason); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s now serves %s %s\n", env, fs.Arg(0), fs.Arg(1))
	return nil
}

func runModelRollback(ctx context.Context, args []string, out, errOut io.Writer) error {
	var rf registryFlags
	var env, reason string
	fs := newFlagSet("model rollback", "", "Points an env back at the version it served before its current one; the current one is marked\n"+
		"rolled back in the rollout records, and the step is published on eye.models.", out, errOut)
	rf.register(fs)
	fs.stringVar(&env, "env", schemas.EnvProd, "prod, canary or staging")
	fs.stringVar(&reason, "reason", "", "why, recorded in the model event")
	fs.require("reason")
	if err := fs.parse(args, rf.validate); err != nil {
		return err
	}
	t, closeFn, err := rf.rollout(ctx, "rollback")
	if err != nil {
		return err
	}
	defer closeFn()
	if err := t.Rollback(ctx, env, reason); err != nil {
		return err
	}
	reg, _, c2, err := rf.openWith(ctx, "rollback")
	if err != nil {
		return err
	}
	defer c2()
	if a, ok, err := reg.Assigned(ctx, env); err == nil && ok {
		fmt.Fprintf(out, "%s now serves %s %s again\n", env, a.Name, a.Version)
	}
	return nil
}

func runModelTimeline(ctx context.Context, args []string, out, errOut io.Writer) error {
	var rf registryFlags
	var asJSON bool
	fs := newFlagSet("model timeline", "", "Prints every model event (eye.models) in order, then each version that served prod with its accuracy\n"+
		"on the labelled images it classified there (predictions that carry a true label).", out, errOut)
	rf.register(fs)
	fs.boolVar(&asJSON, "json", false, "print the events as JSON lines")
	if err := fs.parse(args, rf.validate); err != nil {
		return err
	}
	_, js, closeFn, err := rf.openWith(ctx, "timeline")
	if err != nil {
		return err
	}
	defer closeFn()
	evs, err := trainer.Timeline(ctx, stage.StreamReaderOf(js))
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		for _, ev := range evs {
			if err := enc.Encode(ev); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tMODEL\tENVS\tHOLDOUT_2 ACC\tHOLDOUT_3 ACC\tREASON")
	var prodSince []struct {
		version string
		since   time.Time
	}
	for _, ev := range evs {
		envs := "-"
		if ev.ToEnv != "" {
			envs = or(ev.FromEnv, "new") + " -> " + ev.ToEnv
		}
		acc := func(split string) string {
			if m, ok := ev.Metrics[split]; ok && m.Images > 0 {
				return fmt.Sprintf("%.3f", m.Accuracy)
			}
			return "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\n", ev.Time.Format("15:04:05"), ev.Kind, ev.Name, ev.Version, envs,
			acc(trainer.GateHoldout), acc(trainer.ReportHoldout), ev.Reason)
		if ev.ToEnv == schemas.EnvProd && (ev.Kind == schemas.ModelPromoted) {
			prodSince = append(prodSince, struct {
				version string
				since   time.Time
			}{ev.Version, ev.Time})
		}
		if ev.Kind == schemas.ModelRolledBack && ev.ToEnv == schemas.EnvProd {
			prodSince = append(prodSince, struct {
				version string
				since   time.Time
			}{ev.PreviousVersion, ev.Time})
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range prodSince {
		st, err := trainer.Live(ctx, stage.StreamReaderOf(js), schemas.EnvProd, p.version, p.since, 0.5)
		if err != nil {
			return err
		}
		if st.Labelled > 0 {
			fmt.Fprintf(out, "prod %s since %s: %d predictions, accuracy %.3f on %d labelled images\n", p.version, p.since.Format("15:04:05"), st.Predictions, st.Accuracy(), st.Labelled)
		} else {
			fmt.Fprintf(out, "prod %s since %s: %d predictions, none of a labelled image yet\n", p.version, p.since.Format("15:04:05"), st.Predictions)
		}
	}
	return nil
}

// modelListEntry is one line of `eyeflow model list --json`.
type modelListEntry struct {
	Name        string                            `json:"name"`
	Version     string                            `json:"version"`
	Envs        []string                          `json:"envs"`
	Stage       string                            `json:"stage,omitempty"`
	Engine      string                            `json:"engine"`
	Arch        string                            `json:"arch,omitempty"`
	Classes     int                               `json:"classes"`
	Output      string                            `json:"output"`
	TrainImages int                               `json:"train_images,omitempty"`
	Pushed      time.Time                         `json:"pushed"`
	Metrics     map[string]schemas.HoldoutMetrics `json:"metrics,omitempty"`
}

func runModelList(ctx context.Context, args []string, out, errOut io.Writer) error {
	var rf registryFlags
	var asJSON bool
	fs := newFlagSet("model list", "", "Lists registered model versions, the envs serving them, their rollout stage and holdout figures.", out, errOut)
	rf.register(fs)
	fs.boolVar(&asJSON, "json", false, "print a JSON array (metrics.holdout_N.accuracy, macro_f1, ...) for scripts")
	if err := fs.parse(args, rf.validate); err != nil {
		return err
	}
	reg, js, closeFn, err := rf.openWith(ctx, "list")
	if err != nil {
		return err
	}
	defer closeFn()
	entries, err := reg.List(ctx)
	if err != nil {
		return err
	}
	stages := map[string]string{}
	if kv, err := js.KeyValue(ctx, bus.KVTrainer); err == nil {
		recs, err := trainer.ListRecords(ctx, stage.KeyValueOf(kv))
		if err != nil {
			return err
		}
		for _, r := range recs {
			stages[r.Name+" "+r.Version] = r.Stage
		}
	}
	list := make([]modelListEntry, 0, len(entries))
	for _, e := range entries {
		le := modelListEntry{Name: e.Name, Version: e.Version, Envs: e.Envs, Stage: stages[e.Name+" "+e.Version],
			Engine: trainer.EnginePushed, Arch: e.Card.Arch, Classes: e.Card.Labels, Output: e.Card.Output.Kind,
			Pushed: e.Modified, Metrics: e.Metrics}
		if le.Envs == nil {
			le.Envs = []string{}
		}
		if models.IsPlaceholder(e.Name) {
			le.Engine = "synthetic"
		}
		if tr := e.Card.Training; tr != nil {
			le.Engine, le.TrainImages = tr.Engine, tr.TrainImages
		}
		if le.Metrics == nil {
			le.Metrics = e.Card.Metrics
		}
		list = append(list, le)
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tENVS\tSTAGE\tENGINE\tTRAIN\tHOLDOUT_2 ACC\tHOLDOUT_3 ACC\tHOLDOUT_3 F1\tPUSHED")
	fig := func(m map[string]schemas.HoldoutMetrics, split string, f func(schemas.HoldoutMetrics) float64) string {
		if hm, ok := m[split]; ok && hm.Images > 0 {
			return fmt.Sprintf("%.3f", f(hm))
		}
		return "-"
	}
	acc := func(h schemas.HoldoutMetrics) float64 { return h.Accuracy }
	f1 := func(h schemas.HoldoutMetrics) float64 { return h.MacroF1 }
	for _, e := range list {
		envs := strings.Join(e.Envs, ",")
		if envs == "" {
			envs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Name, e.Version, envs, or(e.Stage, "-"), e.Engine, e.TrainImages,
			fig(e.Metrics, trainer.GateHoldout, acc), fig(e.Metrics, trainer.ReportHoldout, acc), fig(e.Metrics, trainer.ReportHoldout, f1),
			e.Pushed.Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
