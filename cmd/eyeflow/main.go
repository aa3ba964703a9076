// Command eyeflow is the one binary of the eyeflow pipeline: `eyeflow up`
// runs everything embedded (NATS, JetStream, object store, every processor);
// the other subcommands run one processor against an external NATS cluster
// and S3 store, manage the topology and buckets, and upload images.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out, errOut io.Writer) error
}

func commands() []command {
	return []command{
		{"up", "run the whole pipeline embedded: NATS, JetStream, object store, every processor, HTTP", runUp},
		{"put", "upload files or ImageFolder trees into the raw bucket", runPut},
		{"topology", "apply the JetStream topology: `eyeflow topology apply`", runTopology},
		{"buckets", "create the buckets and MinIO's bucket notification: `eyeflow buckets init`", runBuckets},
		{"ingest", "run the upload ledger and the reconciler (beside an S3 store that notifies NATS)", runIngest},
		{"reconcile", "publish upload events for raw objects that have none, once or every --interval", runReconcile},
		{"resize", "run the resize processor alone", runResize},
		{"splitter", "run the splitter processor alone", runSplitter},
		{"split", "explain which split files would get; report per-class split counts from the bucket", runSplit},
		{"classifier", "run the classifier alone: eye.split.* -> eye.predictions.<env>, POST /predict", runClassifier},
		{"predict", "classify local image files with a model folder (JSON lines)", runPredict},
		{"model", "model registry: `eyeflow model synth|push|promote|rollback|list|timeline`", runModel},
		{"driftwatch", "run the drift watcher alone", runDriftwatch},
		{"labelsink", "run the label sink alone (Label Studio tasks, exports, retrain manifests)", runLabelsink},
		{"trainer", "run the trainer alone: train, evaluate, promote and roll back model versions", runTrainer},
		{"train", "train a model version now, evaluate it and register it as a candidate", runTrain},
		{"preprocess", "decode and resize one image exactly as the resize stage does", runPreprocess},
		{"dashboard", "serve the dashboard alone (dataset, pipeline, models) against --nats and --s3", runDashboard},
		{"status", "print streams, consumers, dead letters, models and drift per env (--json for scripts)", runStatus},
		{"doctor", "say where this host can run models (cpu, cuda, webgpu) and, for a GPU it cannot use, why not", runDoctor},
		{"demo-data", "write a deterministic synthetic fundus data set in ImageFolder layout (or a shifted unlabelled batch)", runDemoData},
		{"demo-annotate", "answer the demo's Label Studio tasks with the true classes, as Label Studio's export writes them", runDemoAnnotate},
		{"nats-config", "write the nats-server config of the per-processor NATS users and permissions", runNATSConfig},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "eyeflow: %v\n", err)
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out, errOut io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(errOut, cmds)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(ctx, args[1:], out, errOut)
		}
	}
	usage(errOut, cmds)
	return fmt.Errorf("unknown command %q", args[0])
}

func usage(w io.Writer, cmds []command) {
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	fmt.Fprintln(w, "eyeflow: fundus photographs in object storage -> eye-disease predictions, as NATS JetStream stream processors")
	fmt.Fprintln(w, "\nusage: eyeflow <command> [flags]\n\ncommands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `eyeflow <command> --help` for a command's flags; every flag has an EYEFLOW_* environment equivalent.")
}
