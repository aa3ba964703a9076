package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"eyeflow/ingest"
	ejs "eyeflow/jetstream"
	"eyeflow/objstore"
)

func runTopology(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || args[0] != "apply" {
		fmt.Fprintln(errOut, "usage: eyeflow topology apply [flags]")
		return errUsage
	}
	var n natsFlags
	o := ejs.DefaultOptions()
	fs := newFlagSet("topology apply", "", "Creates or updates every stream, consumer and KV bucket; safe to run again.", errOut)
	n.register(fs, defaultNATS, "NATS server URL(s)")
	fs.intVar(&o.Replicas, "replicas", o.Replicas, "replicas per stream, consumer and KV bucket (3 on a three-node cluster)")
	fs.durationVar(&o.MaxAge, "max-age", o.MaxAge, "how long pipeline events are kept")
	fs.int64Var(&o.MaxBytes, "stream-max-bytes", o.MaxBytes, "bytes each stream keeps at most, oldest out first (-1: no bound)")
	fs.durationVar(&o.Duplicates, "duplicates", o.Duplicates, "duplicate window for Nats-Msg-Id")
	fs.durationVar(&o.AckWait, "ack-wait", o.AckWait, "time a processor may hold a message before redelivery")
	fs.intVar(&o.MaxDeliver, "max-deliver", o.MaxDeliver, "deliveries before a message is dead-lettered")
	fs.intVar(&o.MaxAckPending, "max-ack-pending", o.MaxAckPending, "unacknowledged messages per consumer (a slow stage's memory bound)")
	if err := fs.parse(args[1:]); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	nc, js, err := n.dial(n.url, "eyeflow-topology", nopLogger())
	if err != nil {
		return err
	}
	defer nc.Close()
	t := ejs.Build(o)
	if err := ejs.Apply(ctx, js, t); err != nil {
		return err
	}
	fmt.Fprintf(out, "topology applied: %d streams, %d consumers, %d KV buckets (replicas %d)\n", len(t.Streams), len(t.Consumers), len(t.KV), o.Replicas)
	return nil
}

func runBuckets(ctx context.Context, args []string, out, errOut io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		fmt.Fprintln(errOut, "usage: eyeflow buckets init [flags]")
		return errUsage
	}
	var n natsFlags
	var s storeFlags
	var arn string
	var replicas int
	fs := newFlagSet("buckets init", "", "Creates the raw, processed, labeling and models buckets. With --s3 it also sets the raw\n"+
		"bucket's notification (ObjectCreated -> MinIO's NATS target) so MinIO publishes eye.uploads.", errOut)
	n.register(fs, defaultNATS, "NATS server URL(s) (for the JetStream object store)")
	s.register(fs)
	fs.stringVar(&arn, "notify-arn", "arn:minio:sqs::EYEFLOW:nats", "queue ARN of MinIO's NATS target (MINIO_NOTIFY_NATS_ENABLE_EYEFLOW=on); empty: no notification")
	fs.intVar(&replicas, "replicas", 1, "object-store bucket replicas (JetStream object store)")
	if err := fs.parse(args[1:]); err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return err
	}
	var store objstore.Store
	if s.endpoint == "" {
		nc, js, err := n.dial(n.url, "eyeflow-buckets", nopLogger())
		if err != nil {
			return err
		}
		defer nc.Close()
		store = objstore.NewJetStream(js, objstore.WithReplicas(replicas))
	} else {
		st, err := s.open(nil, replicas)
		if err != nil {
			return err
		}
		store = st
	}
	for _, b := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			return err
		}
		fmt.Fprintf(out, "bucket %s ready\n", b)
	}
	if s3, ok := store.(*objstore.S3Store); ok && arn != "" {
		if err := s3.EnableNATSNotifications(ctx, objstore.BucketRaw, arn); err != nil {
			return err
		}
		fmt.Fprintf(out, "bucket %s notifies %s on every created object\n", objstore.BucketRaw, arn)
	}
	return nil
}

func runReconcile(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var interval, grace, ledgerWait time.Duration
	fs := newFlagSet("reconcile", "", "Lists the raw bucket and publishes eye.uploads for objects that have no event yet (lost\n"+
		"notifications, S3 stores that cannot notify NATS). Once, or every --interval. Objects with an event are known\n"+
		"from the upload ledger, which `eyeflow ingest` (or `eyeflow up`) must be running to keep.", errOut)
	s.register(fs)
	fs.durationVar(&interval, "interval", 0, "run every interval (0: once and exit)")
	fs.durationVar(&grace, "grace", time.Minute, "leave objects younger than this to their notification")
	fs.durationVar(&ledgerWait, "ledger-wait", defaultLedgerWait, "before each pass, wait up to this long for the ledger to record every event in the stream; a pass still behind fails (0: do not wait)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return err
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
	ledger, err := ingest.OpenLedger(ctx, js)
	if err != nil {
		return err
	}
	rec := &ingest.Reconciler{Store: store, Bucket: objstore.BucketRaw, Pub: ingest.NewPublisher(js, ledger), Grace: grace, LedgerWait: ledgerWait, Log: log}
	if interval > 0 {
		rec.Run(ctx, interval)
		return nil
	}
	res, err := rec.Once(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "listed %d objects, published %d missing events, left %d recent ones to their notification\n", res.Listed, res.Published, res.Recent)
	return nil
}
