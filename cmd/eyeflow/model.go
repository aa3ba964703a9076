package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"eyeflow/processors/classifier"
)

// runModel is `eyeflow model synth|push|promote|list`.
func runModel(ctx context.Context, args []string, out, errOut io.Writer) error {
	usage := "usage: eyeflow model synth|push|promote|list [flags] (eyeflow model <sub> --help)"
	if len(args) == 0 {
		fmt.Fprintln(errOut, usage)
		return errUsage
	}
	switch args[0] {
	case "synth":
		return runModelSynth(args[1:], out, errOut)
	case "push":
		return runModelPush(ctx, args[1:], out, errOut)
	case "promote":
		return runModelPromote(ctx, args[1:], out, errOut)
	case "list":
		return runModelList(ctx, args[1:], out, errOut)
	default:
		fmt.Fprintln(errOut, usage)
		return fmt.Errorf("model: unknown subcommand %q", args[0])
	}
}

func runModelSynth(args []string, out, errOut io.Writer) error {
	var o classifier.SynthOptions
	var dir string
	fs := newFlagSet("model synth", "", "Writes a synthetic model folder (model.onnx, labels.json in ImageFolder order, model.json) built in Go:\n"+
		"densenet121 is torchvision's architecture with deterministic random weights (benchmarks, first runs); tiny\n"+
		"outputs a fixed function of the mean colour (exact tests). Nothing is downloaded.", errOut)
	fs.stringVar(&o.Arch, "arch", classifier.ArchDenseNet121, "densenet121 or tiny")
	fs.stringVar(&dir, "out", "", "output folder (required)")
	fs.stringVar(&o.Name, "name", "", "model name in model.json (default per arch)")
	fs.stringVar(&o.Version, "version", "", "model version in model.json (default per arch)")
	fs.boolVar(&o.Probabilities, "probabilities", false, "tiny only: end in Softmax (output kind probabilities)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if dir == "" || fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	files, err := classifier.Synthesize(o)
	if err != nil {
		return err
	}
	if err := classifier.WriteModelDir(dir, files); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s model to %s (%d bytes model.onnx)\n", strings.ToLower(o.Arch), dir, len(files.ONNX))
	return nil
}

// registryFlags reach the registry: NATS (KV, and the object store unless --s3).
type registryFlags struct {
	nats  natsFlags
	store storeFlags
}

func (r *registryFlags) register(fs *flagSet) {
	r.nats.register(fs, defaultNATS, "NATS server URL(s)")
	r.store.register(fs)
}

func (r *registryFlags) open(ctx context.Context, name string) (*classifier.Registry, func(), error) {
	if err := r.nats.validate(); err != nil {
		return nil, nil, err
	}
	if err := r.store.validate(); err != nil {
		return nil, nil, err
	}
	nc, js, err := r.nats.dial(r.nats.url, "eyeflow-model-"+name, nopLogger())
	if err != nil {
		return nil, nil, err
	}
	store, err := r.store.open(js, 1)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	reg, err := classifier.OpenRegistry(ctx, js, store)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return reg, nc.Close, nil
}

func runModelPush(ctx context.Context, args []string, out, errOut io.Writer) error {
	var rf registryFlags
	var name, version string
	fs := newFlagSet("model push", "DIR", "Stores a model folder in the registry (bucket models, <name>/<version>/). Versions are immutable.", errOut)
	rf.register(fs)
	fs.stringVar(&name, "name", "", "model name (required)")
	fs.stringVar(&version, "version", "", "model version (required)")
	// Flags may follow DIR: `eyeflow model push DIR --name N --version V`.
	if err := parseModelArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || name == "" || version == "" {
		fs.Usage()
		return errUsage
	}
	files, err := classifier.ReadModelDir(fs.Arg(0))
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
	var env string
	fs := newFlagSet("model promote", "NAME VERSION", "Points an env at a registered model version; running classifiers swap to it between batches\n"+
		"(a model that fails to load is refused and the previous one keeps serving: check the classifier's log).", errOut)
	rf.register(fs)
	fs.stringVar(&env, "env", "", "prod, canary or staging (required)")
	if err := parseModelArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 || env == "" {
		fs.Usage()
		return errUsage
	}
	reg, closeFn, err := rf.open(ctx, "promote")
	if err != nil {
		return err
	}
	defer closeFn()
	if err := reg.Promote(ctx, env, fs.Arg(0), fs.Arg(1)); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s now serves %s %s\n", env, fs.Arg(0), fs.Arg(1))
	return nil
}

func runModelList(ctx context.Context, args []string, out, errOut io.Writer) error {
	var rf registryFlags
	fs := newFlagSet("model list", "", "Lists registered model versions and the envs serving them.", errOut)
	rf.register(fs)
	if err := fs.parse(args); err != nil {
		return err
	}
	reg, closeFn, err := rf.open(ctx, "list")
	if err != nil {
		return err
	}
	defer closeFn()
	entries, err := reg.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tARCH\tCLASSES\tOUTPUT\tENVS\tPUSHED")
	for _, e := range entries {
		envs := strings.Join(e.Envs, ",")
		if envs == "" {
			envs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Name, e.Version, e.Card.Arch, e.Card.Labels, e.Card.Output.Kind, envs, e.Modified.Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

// parseModelArgs parses flags that come before or after the positional
// arguments (Go's flag package stops at the first positional one).
func parseModelArgs(fs *flagSet, args []string) error {
	var pos []string
	for {
		if err := fs.parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(pos) // leaves exactly the positional arguments in fs.Args()
}
