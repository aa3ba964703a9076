// Command eyeflow is the one binary of the eyeflow pipeline: `eyeflow up`
// runs everything embedded (NATS, JetStream, object store, every processor);
// the other subcommands run one processor against an external NATS cluster
// and S3 store, manage the topology and buckets, and upload images.
package main

import (
	"context"
	"errors"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/schemas"
	"eyeflow/telemetry"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out, errOut io.Writer) error
}

func commands() []command {
	cmds := []command{
		{"up", "run the whole pipeline embedded: NATS, JetStream, object store, every processor, HTTP", runUp},
		{"put", "upload files or ImageFolder trees into the raw bucket", runPut},
		{"topology", "apply the JetStream topology: `eyeflow topology apply`", runTopology},
		{"buckets", "create the buckets and MinIO's bucket notification: `eyeflow buckets init`", runBuckets},
		{"reconcile", "publish upload events for raw objects that have none, once or every --reconcile-interval", runReconcile},
		{"split", "explain which split files would get; report per-class split counts from the bucket", runSplit},
		{"predict", "classify local image files with a model folder (JSON lines)", runPredict},
		{"model", "model registry: `eyeflow model synth|push|promote|rollback|list|timeline`", runModel},
		{"train", "train a model version now, evaluate it and register it as a candidate", runTrain},
		{"preprocess", "decode and resize one image exactly as the resize stage does", runPreprocess},
		{"dashboard", "serve the dashboard alone (dataset, pipeline, models) against --nats and --s3", runDashboard},
		{"status", "print streams, consumers, dead letters, models and drift per env (--json for scripts)", runStatus},
		{"doctor", "say where this host can run models (cpu, cuda, webgpu) and, for a GPU it cannot use, why not", runDoctor},
		{"demo-data", "write a deterministic synthetic fundus data set in ImageFolder layout (or a shifted unlabelled batch)", runDemoData},
		{"demo-annotate", "answer the demo's Label Studio tasks with the true classes, as Label Studio's export writes them", runDemoAnnotate},
		{"nats-config", "write the nats-server config of the per-processor NATS users and permissions", runNATSConfig},
	}
	// One command per stage of the catalogue, with its summary.
	cmdsOf := stageCmds()
	for _, st := range pipeline.Stages() {
		run := cmdsOf[st.Name].run
		if run == nil {
			run = func(context.Context, []string, io.Writer, io.Writer) error {
				return fmt.Errorf("stage %s is in the catalogue but has no command (cmd/eyeflow stageCmds)", st.Name)
			}
		}
		cmds = append(cmds, command{st.Name, st.Summary, run})
	}
	return cmds
}

// stageCmd is how this binary runs one stage of the catalogue: alone, as
// `eyeflow <stage>` (its flags, and how its processor is built from them),
// and inside `eyeflow up` (from up's flags). What the stage reads,
// publishes and stores is the catalogue's (package pipeline), never
// repeated here.
type stageCmd struct {
	run func(ctx context.Context, args []string, out, errOut io.Writer) error
	// up builds the stage's tasks in `eyeflow up`; nil for ingest, which
	// every up runs on its own terms (with the embedded store's watcher).
	up func(ctx context.Context, f *upFlags, e upEnv) ([]task, error)
}

// upEnv is what `eyeflow up` builds its stages from.
type upEnv struct {
	p     *proc
	js    jetstream.JetStream
	store objstore.Store
	srv   *telemetry.Server
}

// stageCmds has one entry per stage of the catalogue.
func stageCmds() map[string]stageCmd {
	return map[string]stageCmd{
		schemas.StageIngest: {run: runIngest},
		schemas.StageResize: {run: runResize, up: func(ctx context.Context, f *upFlags, e upEnv) ([]task, error) {
			// Patient pseudonyms are made with the splitter's salt.
			f.resize.salt, f.resize.saltVersion = f.split.salt, f.split.saltVersion
			rp, err := f.resize.processor(ctx, e.p, e.js, e.store)
			return []task{stageTask(e.js, rp)}, err
		}},
		schemas.StageSplitter: {run: runSplitter, up: func(ctx context.Context, f *upFlags, e upEnv) ([]task, error) {
			sp, err := f.split.processor(ctx, e.p, e.js, e.store)
			return []task{stageTask(e.js, sp)}, err
		}},
		schemas.StageClassifier: {run: runClassifier, up: func(ctx context.Context, f *upFlags, e upEnv) ([]task, error) {
			// Loads ONNX Runtime, serves --model or registers the synthetic
			// DenseNet121 as prod on an empty registry, mounts POST /predict.
			t, err := f.classifier.setup(ctx, e.p, e.js, e.store, e.srv, true)
			return []task{t}, err
		}},
		schemas.StageDriftwatch: {run: runDriftwatch, up: func(ctx context.Context, f *upFlags, e upEnv) ([]task, error) {
			dp, err := f.driftwatch.processor(ctx, e.p, e.js, f.replicas)
			return []task{stageTask(e.js, dp)}, err
		}},
		schemas.StageLabelsink: {run: runLabelsink, up: func(ctx context.Context, f *upFlags, e upEnv) ([]task, error) {
			return f.labelsink.tasks(ctx, e.p, e.js, e.store, f.replicas)
		}},
		schemas.StageTrainer: {run: runTrainer, up: func(ctx context.Context, f *upFlags, e upEnv) ([]task, error) {
			t, _, err := f.trainer.build(ctx, e.p, &f.classifier.rt, e.js, e.store, f.split.prefix, f.replicas)
			if err != nil {
				return nil, err
			}
			return f.trainer.tasks(t, e.p, e.js), nil
		}},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if msg := errorLine(err); msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	os.Exit(exitCode(err))
}

// exitCode is 0 for success and --help, 2 for a wrong command line, 1 for
// any other error.
func exitCode(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

// errorLine is what main prints for err: nothing for --help or when the
// usage was printed already.
func errorLine(err error) string {
	if err == nil || errors.Is(err, flag.ErrHelp) || err == errUsage {
		return ""
	}
	return "eyeflow: " + err.Error()
}

func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	cmds := commands()
	if len(args) == 0 {
		usage(errOut, cmds)
		return errUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			// `eyeflow help model push` is `eyeflow model push --help`.
			return run(ctx, append(args[1:], "--help"), out, errOut)
		}
		usage(out, cmds)
		return flag.ErrHelp
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(ctx, args[1:], out, errOut)
		}
	}
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	return &usageError{msg: fmt.Sprintf("unknown command %q%s (eyeflow --help lists the commands)", args[0], suggest(args[0], names))}
}

func usage(w io.Writer, cmds []command) {
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	fmt.Fprintln(w, "eyeflow: fundus photographs in object storage -> eye-disease predictions, as NATS JetStream stream processors")
	fmt.Fprintln(w, "\nusage: eyeflow <command> [flags]\n\ncommands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `eyeflow <command> --help` for a command's flags; every flag has an EYEFLOW_* environment equivalent.")
}

// groups are the commands with verbs of their own, and their verbs.
func groups() map[string][]subcommand {
	return map[string][]subcommand{
		"topology": topologySubcommands(),
		"buckets":  bucketsSubcommands(),
		"split":    splitSubcommands(),
		"model":    modelSubcommands(),
	}
}

// subcommand is one verb of a command group (`eyeflow model push`).
type subcommand struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out, errOut io.Writer) error
}

// runGroup dispatches `eyeflow <group> <verb> ...`: --help lists the verbs
// and exits 0, an unknown verb is named.
func runGroup(ctx context.Context, group, summary string, subs []subcommand, args []string, out, errOut io.Writer) error {
	help := func(w io.Writer) {
		names := make([]string, len(subs))
		for i, s := range subs {
			names[i] = s.name
		}
		fmt.Fprintf(w, "usage: eyeflow %s %s [flags]\n\n%s\n\nsubcommands:\n", group, strings.Join(names, "|"), summary)
		for _, s := range subs {
			fmt.Fprintf(w, "  %-9s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nRun `eyeflow %s <subcommand> --help` for its flags.\n", group)
	}
	if len(args) == 0 {
		help(errOut)
		return errUsage
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		help(out)
		return flag.ErrHelp
	}
	names := make([]string, len(subs))
	for i, s := range subs {
		if s.name == args[0] {
			return s.run(ctx, args[1:], out, errOut)
		}
		names[i] = s.name
	}
	what := "unknown subcommand"
	if strings.HasPrefix(args[0], "-") {
		what = "flags come after the subcommand, got"
	}
	return &usageError{msg: fmt.Sprintf("%s: %s %q%s; want %s (eyeflow %s --help)", group, what, args[0], suggest(args[0], names), strings.Join(names, ", "), group)}
}

// suggest returns ", did you mean X?" for the name closest to s, when one is
// close enough to be a typo.
func suggest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
