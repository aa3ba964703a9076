package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/ingest"
	"eyeflow/internal/deployment"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

func runTopology(ctx context.Context, args []string, out, errOut io.Writer) error {
	return runGroup(ctx, "topology", "The JetStream topology: every stream, consumer and KV bucket the pipeline uses, as code.",
		topologySubcommands(), args, out, errOut)
}

func topologySubcommands() []subcommand {
	return []subcommand{{"apply", "create or update every stream, consumer and KV bucket (idempotent)", runTopologyApply}}
}

func runTopologyApply(ctx context.Context, args []string, out, errOut io.Writer) error {
	var n natsFlags
	var lf logFlags
	var wait time.Duration
	o := bus.DefaultOptions()
	fs := newFlagSet("topology apply", "", "Creates or updates every stream, consumer and KV bucket; safe to run again. Waits up to --wait for\n"+
		"NATS and JetStream (a deployment may start it before the servers).", out, errOut)
	n.register(fs, defaultNATS(), natsClientUsage)
	lf.register(fs)
	fs.durationVar(&wait, "wait", 2*time.Minute, "how long to wait for NATS and JetStream to answer (0: do not wait)")
	fs.intVar(&o.Replicas, "replicas", o.Replicas, "replicas per stream, consumer and KV bucket (3 on a three-node cluster)")
	fs.durationVar(&o.MaxAge, "max-age", o.MaxAge, "how long pipeline events are kept")
	fs.int64Var(&o.MaxBytes, "stream-max-bytes", o.MaxBytes, "bytes each stream keeps at most, oldest out first (-1: no bound)")
	fs.durationVar(&o.Duplicates, "duplicates", o.Duplicates, "duplicate window for Nats-Msg-Id")
	fs.durationVar(&o.AckWait, "ack-wait", o.AckWait, "time a processor may hold a message before redelivery")
	fs.intVar(&o.MaxDeliver, "max-deliver", o.MaxDeliver, "deliveries before a message is dead-lettered")
	fs.intVar(&o.MaxAckPending, "max-ack-pending", o.MaxAckPending, "unacknowledged messages per consumer (a slow stage's memory bound)")
	if err := fs.parse(args, n.validate, func() error {
		if err := o.Validate(); err != nil {
			return fmt.Errorf("topology: %w", err)
		}
		return nil
	}); err != nil {
		return err
	}
	log, err := lf.logger(errOut)
	if err != nil {
		return err
	}
	wctx, cancel := waitContext(ctx, wait)
	defer cancel()
	nc, js, err := waitNATS(wctx, log, newReadiness(), &n, n.url, "eyeflow-topology")
	if err != nil {
		return err
	}
	defer nc.Close()
	t := pipeline.Topology(o)
	if err := retryJetStream(wctx, log, "apply the topology", func(ctx context.Context) error { return bus.Apply(ctx, js, t) }); err != nil {
		return err
	}
	fmt.Fprintf(out, "topology applied: %d streams, %d consumers, %d KV buckets (replicas %d)\n", len(t.Streams), len(t.Consumers), len(t.KV), o.Replicas)
	return nil
}

// waitContext bounds a one-shot command's waiting for its servers: wait
// 0 means one attempt.
func waitContext(ctx context.Context, wait time.Duration) (context.Context, context.CancelFunc) {
	if wait <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, wait)
}

func runBuckets(ctx context.Context, args []string, out, errOut io.Writer) error {
	return runGroup(ctx, "buckets", "The object-store buckets: raw, processed, labeling, models, features.",
		bucketsSubcommands(), args, out, errOut)
}

func bucketsSubcommands() []subcommand {
	return []subcommand{{"init", "create the buckets; with --s3, MinIO's bucket notification to NATS", runBucketsInit}}
}

func runBucketsInit(ctx context.Context, args []string, out, errOut io.Writer) error {
	var n natsFlags
	var s storeFlags
	var arn string
	var replicas int
	var replace bool
	var lf logFlags
	var wait time.Duration
	fs := newFlagSet("buckets init", "", "Creates the raw, processed, labeling, models and features buckets and records the store in the\n"+
		"cluster (KV "+bus.KVDeployment+") as the one the deployment's stages use: commands that manage models,\n"+
		"splits or uploads, and every stage, refuse another. With --s3 it also sets the raw bucket's notification\n"+
		"(ObjectCreated -> MinIO's NATS target) so MinIO publishes eye.uploads.", out, errOut)
	n.register(fs, defaultNATS(), natsClientUsage)
	s.register(fs)
	fs.stringVar(&arn, "notify-arn", "arn:minio:sqs::EYEFLOW:nats", "queue ARN of MinIO's NATS target (MINIO_NOTIFY_NATS_ENABLE_EYEFLOW=on); empty: no notification")
	fs.intVar(&replicas, "replicas", 1, "object-store bucket replicas (JetStream object store)")
	fs.boolVar(&replace, "replace-store", false, "make this store the deployment's even though another one is recorded (after a migration)")
	lf.register(fs)
	fs.durationVar(&wait, "wait", 2*time.Minute, "how long to wait for NATS, JetStream and S3 to answer (0: do not wait)")
	if err := fs.parse(args, n.validate, s.validate); err != nil {
		return err
	}
	log, err := lf.logger(errOut)
	if err != nil {
		return err
	}
	wctx, cancel := waitContext(ctx, wait)
	defer cancel()
	nc, js, err := waitNATS(wctx, log, newReadiness(), &n, n.url, "eyeflow-buckets")
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := s.open(js, replicas)
	if err != nil {
		return err
	}
	if err := waitStore(wctx, log, newReadiness(), store, s.endpoint); err != nil {
		return err
	}
	var kv jetstream.KeyValue
	if err := retryJetStream(wctx, log, "open KV "+bus.KVDeployment, func(ctx context.Context) (err error) {
		kv, err = bus.OpenKeyValue(ctx, js, pipeline.KeyValueConfig(bus.KVDeployment, replicas))
		return err
	}); err != nil {
		return err
	}
	// The pseudonym key before the store record: a store recorded already
	// is how EnsurePseudonym tells a deployment made before keys.
	_, pdid, err := deployment.EnsurePseudonym(ctx, js, kv, "eyeflow buckets init")
	if err != nil {
		return fmt.Errorf("buckets init: %w", err)
	}
	did, err := deployment.Record(ctx, kv, deployment.Target{Store: store, Endpoint: s.endpoint}, "eyeflow buckets init", replace)
	if err != nil {
		return fmt.Errorf("buckets init: %w", err)
	}
	for _, b := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			return err
		}
		fmt.Fprintf(out, "bucket %s ready\n", b)
	}
	fmt.Fprintln(out, pdid)
	fmt.Fprintln(out, did)
	if s3, ok := store.(*objstore.S3Store); ok && arn != "" {
		if err := s3.EnableNATSNotifications(ctx, objstore.BucketRaw, arn); err != nil {
			return notifyHint(err, arn)
		}
		fmt.Fprintf(out, "bucket %s notifies %s on every created object\n", objstore.BucketRaw, arn)
	}
	return nil
}

// notifyHint explains MinIO's refusal of a notification to a target it
// does not have: which variables make the target, or how to do without.
func notifyHint(err error, arn string) error {
	if !strings.Contains(err.Error(), "ARN does not exist") {
		return err
	}
	id := "EYEFLOW"
	if parts := strings.Split(arn, ":"); len(parts) >= 6 && parts[4] != "" {
		id = parts[4]
	}
	return fmt.Errorf("%w\n"+
		"MinIO has no NATS notification target %s: start MinIO with MINIO_NOTIFY_NATS_ENABLE_%s=on, MINIO_NOTIFY_NATS_ADDRESS_%s=<nats host:4222>,\n"+
		"MINIO_NOTIFY_NATS_SUBJECT_%s=eye.uploads and MINIO_NOTIFY_NATS_JETSTREAM_%s=on (see README, One process per processor),\n"+
		"or run `eyeflow buckets init --notify-arn \"\"` and let `eyeflow ingest` publish the upload events", err, arn, id, id, id, id)
}

func runReconcile(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var interval, grace, ledgerWait time.Duration
	fs := newFlagSet("reconcile", "", "Lists the raw bucket and publishes eye.uploads for objects that have no event yet (lost\n"+
		"notifications, S3 stores that cannot notify NATS). Once, or every --reconcile-interval, logging one summary line\n"+
		"per pass and serving /metrics, /healthz and /readyz on --http. Objects with an event are known from the upload\n"+
		"ledger, which `eyeflow ingest` (or `eyeflow up`) must be running to keep.", out, errOut)
	s.registerHTTP(fs, "")
	fs.durationVar(&interval, "reconcile-interval", 0, "run every interval until stopped (0: once and exit)")
	fs.deprecate("interval", "reconcile-interval")
	fs.durationVar(&grace, "grace", time.Minute, "leave objects younger than this to their notification")
	fs.durationVar(&ledgerWait, "ledger-wait", defaultLedgerWait, "before each pass, wait up to this long for the ledger to record every event in the stream; a pass still behind fails (0: do not wait)")
	if err := fs.parse(args, s.validate, func() error {
		if interval < 0 || grace < 0 || ledgerWait < 0 {
			return fmt.Errorf("--reconcile-interval, --grace and --ledger-wait must not be negative")
		}
		if interval == 0 && s.http != "" {
			return fmt.Errorf("--http serves only a running reconciler: give --reconcile-interval too")
		}
		return nil
	}); err != nil {
		return err
	}
	if interval > 0 {
		// Long-running: waits for NATS and the store like every process,
		// serves --http, logs every pass.
		return s.run(ctx, "reconcile", errOut, stageNeeds(schemas.StageIngest, nil), func(e standaloneEnv) ([]task, error) {
			rec, err := newReconciler(ctx, e, grace, ledgerWait)
			if err != nil {
				return nil, err
			}
			return []task{{name: "reconciler", run: func(ctx context.Context) error {
				rec.Run(ctx, interval)
				return nil
			}}}, nil
		})
	}
	log, err := s.log.logger(errOut)
	if err != nil {
		return err
	}
	nc, js, err := s.nats.dial(s.nats.url, "eyeflow-reconcile", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := s.store.open(js, s.replicas)
	if err != nil {
		return err
	}
	if err := checkStore(ctx, js, &s.store, store, func(err error) { log.Warn().Err(err).Msg("object store not checked") }); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	rec, err := newReconciler(ctx, standaloneEnv{p: newProc(log), nc: nc, js: js, store: store}, grace, ledgerWait)
	if err != nil {
		return err
	}
	res, err := rec.Once(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "listed %d %s, published %d missing %s, left %d recent %s to their notification\n",
		res.Listed, plural2(res.Listed, "object", "objects"), res.Published, plural2(res.Published, "event", "events"),
		res.Recent, plural2(res.Recent, "one", "ones"))
	return nil
}

// newReconciler is the reconciler of the raw bucket, with its metrics on
// the process's registry.
func newReconciler(ctx context.Context, e standaloneEnv, grace, ledgerWait time.Duration) (*ingest.Reconciler, error) {
	ledger, err := openLedger(ctx, e.js)
	if err != nil {
		return nil, err
	}
	return &ingest.Reconciler{Store: e.store, Bucket: objstore.BucketRaw, Pub: ingest.NewPublisher(stage.PublisherOf(e.js), ledger),
		Grace: grace, LedgerWait: ledgerWait, Log: e.p.log.With().Str("component", "reconciler").Logger(),
		Metrics: ingest.NewReconcileMetrics(e.p.reg)}, nil
}

// plural2 picks the word for n.
func plural2(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
