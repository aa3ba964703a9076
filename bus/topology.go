package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"eyeflow/schemas"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	StreamUploads     = "EYE_UPLOADS"
	StreamResized     = "EYE_RESIZED"
	StreamSplits      = "EYE_SPLITS"
	StreamPredictions = "EYE_PREDICTIONS"
	StreamDrift       = "EYE_DRIFT"
	StreamRetrain     = "EYE_RETRAIN"
	StreamModels      = "EYE_MODELS"
	StreamDLQ         = "EYE_DLQ"
)

// Consumer names (durable, one per input of a stage; the classifier has one
// per env). Which stage reads which, with what settings, is declared in the
// catalogue (package pipeline).
const (
	ConsumerResize     = "resize"
	ConsumerSplitter   = "splitter"
	ConsumerDriftwatch = "driftwatch"
	ConsumerLabelsink  = "labelsink"
	// ConsumerLabelsinkPredictions is labelsink's optional consumer of
	// low-confidence predictions (--label-low-confidence).
	ConsumerLabelsinkPredictions = "labelsink-predictions"
	// ConsumerTrainer reads retrain requests (manifest_ready trains).
	ConsumerTrainer = "trainer"
	// ConsumerIngestLedger records every upload event in the ledger.
	ConsumerIngestLedger = "ingest-ledger"
)

// ClassifierConsumer names the classifier's consumer for one environment: each
// environment reads every split event independently, so each produces its own
// prediction per image.
func ClassifierConsumer(env string) string { return "classifier-" + env }

// KV buckets (their configuration and owner: package pipeline).
const (
	// KVUploads records the identity of every upload an event was published
	// for, so the reconciler publishes only for objects that have none.
	KVUploads = "eyeflow_uploads"
	// KVModels maps each environment to the model name and version it serves.
	KVModels = "eyeflow_models"
	// KVDriftwatch holds driftwatch's state per env and model version.
	KVDriftwatch = "eyeflow_driftwatch"
	// KVLabelsink records labelling tasks, retrain events and processed exports.
	KVLabelsink = "eyeflow_labelsink"
	// KVTrainer holds each model version's rollout record: stage, holdout
	// figures, when it was promoted where, and what it replaced.
	KVTrainer = "eyeflow_trainer"
	// KVDeployment is what the running stages share about the deployment:
	// the object store they use (key "objstore", written by `eyeflow
	// buckets init` and `eyeflow up`), and what each env's classifier
	// serves or refused (keys "serving.<env>").
	KVDeployment = "eyeflow_deployment"
)

// Options shape the topology. The zero value is not valid; start from DefaultOptions.
type Options struct {
	// Replicas for every stream, consumer and KV bucket: 1 on a single
	// server, 3 on a three-node cluster.
	Replicas int
	// MaxAge bounds how long pipeline events are kept (Limits retention).
	MaxAge time.Duration
	// DLQMaxAge bounds how long dead letters are kept: longer, people read them.
	DLQMaxAge time.Duration
	// MaxBytes bounds each stream's size on disk (per replica); the oldest
	// messages go first, as with MaxAge. -1 is unlimited.
	MaxBytes int64
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped.
	Duplicates time.Duration
	// AckWait is how long a processor may hold a message before it is
	// redelivered; processors extend it while working (InProgress).
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one message; the runtime dead-letters
	// it on the last one.
	MaxDeliver int
	// MaxAckPending bounds unacknowledged messages per consumer: the memory
	// bound of a slow stage.
	MaxAckPending int
}

// DefaultStreamMaxBytes is the default byte bound of every stream.
const DefaultStreamMaxBytes = 2 << 30

// DefaultOptions is the topology for one server.
func DefaultOptions() Options {
	return Options{
		Replicas:  1,
		MaxAge:    7 * 24 * time.Hour,
		DLQMaxAge: 30 * 24 * time.Hour,
		// Age and bytes both bound the disk: events name objects instead of
		// carrying pixels (about 1 KB each), so 2 GiB holds about two million
		// events, weeks of a site's traffic; a burst, or --inline-rgb (about
		// 200 KB each), cannot fill the disk (BENCHMARKS.md, "Disk").
		MaxBytes:   DefaultStreamMaxBytes,
		Duplicates: 2 * time.Hour,
		AckWait:    60 * time.Second,
		// Enough deliveries, with the runtime's backoff (1s doubling to 1m),
		// to ride out about a quarter of an hour of a store or model outage
		// before a message is dead-lettered.
		MaxDeliver:    20,
		MaxAckPending: 512,
	}
}

// FitDisk lowers MaxBytes so that every stream at its bound fits in half of
// what the server may store on a disk with free bytes available (nats-server
// takes 75% of the free space at start, and reserves each stream's MaxBytes
// from it: a stream whose bound does not fit is refused). The other half is
// left to the object stores (originals, processed PNGs, models), which have
// no bound: they are the data set. free 0 (unknown) or an unbounded MaxBytes
// leave the options as they are; the floor is 64 MiB per stream.
func (o Options) FitDisk(free int64) Options {
	if free <= 0 || o.MaxBytes <= 0 {
		return o
	}
	streams := int64(len(Streams(o)))
	budget := free * 3 / 4 / 2 / streams
	o.MaxBytes = max(min(o.MaxBytes, budget), 64<<20)
	return o
}

// Validate reports options that would make a broken topology.
func (o Options) Validate() error {
	var errs []error
	if o.Replicas < 1 || o.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: must be 1..5", o.Replicas))
	}
	if o.MaxAge <= 0 || o.DLQMaxAge <= 0 {
		errs = append(errs, errors.New("max age must be positive"))
	}
	if o.Duplicates <= 0 || o.Duplicates > o.MaxAge {
		errs = append(errs, fmt.Errorf("duplicate window %s: must be positive and at most the max age", o.Duplicates))
	}
	if o.MaxBytes == 0 || o.MaxBytes < -1 || (o.MaxBytes > 0 && o.MaxBytes < 1<<20) {
		errs = append(errs, fmt.Errorf("stream max bytes %d: must be at least 1 MiB, or -1 (unlimited)", o.MaxBytes))
	}
	if o.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ack wait %s: must be at least 1s", o.AckWait))
	}
	if o.MaxDeliver < 2 {
		errs = append(errs, fmt.Errorf("max deliver %d: must be at least 2", o.MaxDeliver))
	}
	if o.MaxAckPending < 1 {
		errs = append(errs, fmt.Errorf("max ack pending %d: must be at least 1", o.MaxAckPending))
	}
	return errors.Join(errs...)
}

// Topology is the full set of streams, consumers and KV buckets.
type Topology struct {
	Streams   []jetstream.StreamConfig
	Consumers []ConsumerSpec
	KV        []jetstream.KeyValueConfig
}

// ConsumerSpec is a durable consumer on a stream.
type ConsumerSpec struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// KVSpec declares a KV bucket; Config shapes it by the options. The
// catalogue (package pipeline) declares each bucket with the stage that owns it.
type KVSpec struct {
	Bucket      string
	Description string
	// History is the number of values kept per key (1 when zero).
	History uint8
	// MaxValueSize bounds a value (the server's default when zero).
	MaxValueSize int32
	// ExpireWithEvents gives the keys the events' MaxAge as TTL: the
	// bucket records facts about events that are kept no longer.
	ExpireWithEvents bool
}

// Config is the bucket's configuration under the options (replicas above all).
func (k KVSpec) Config(o Options) jetstream.KeyValueConfig {
	cfg := jetstream.KeyValueConfig{
		Bucket:       k.Bucket,
		Description:  k.Description,
		History:      max(k.History, 1),
		MaxValueSize: k.MaxValueSize,
		Storage:      jetstream.FileStorage,
		Replicas:     o.Replicas,
	}
	if k.ExpireWithEvents {
		cfg.TTL = o.MaxAge
	}
	return cfg
}

// Streams returns the event streams for the options: one per subject
// family of the contract (schemas/subjects.go), the dead letters kept longer.
func Streams(o Options) []jetstream.StreamConfig {
	stream := func(name, desc string, subjects ...string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    subjects,
			// Limits, not WorkQueue: a known server defect loses
			// dead-lettered messages with WorkQueue + R3, and several
			// consumers (one per env) must read the same events.
			Retention:  jetstream.LimitsPolicy,
			Discard:    jetstream.DiscardOld,
			Storage:    jetstream.FileStorage,
			Replicas:   o.Replicas,
			MaxAge:     o.MaxAge,
			MaxBytes:   o.MaxBytes,
			Duplicates: o.Duplicates,
		}
	}
	dlq := stream(StreamDLQ, "dead letters: messages a stage gave up on, with the reason", schemas.SubjectDLQAll)
	dlq.MaxAge = o.DLQMaxAge
	return []jetstream.StreamConfig{
		stream(StreamUploads, "S3 object-created notifications for the raw bucket", schemas.SubjectUploads),
		stream(StreamResized, "uploads decoded and resized to the model input", schemas.SubjectResized),
		stream(StreamSplits, "images assigned to train, holdout or unlabeled", schemas.SubjectSplitAll),
		stream(StreamPredictions, "model predictions per environment", schemas.SubjectPredictionsAll),
		stream(StreamDrift, "drift alerts per environment", schemas.SubjectDriftAll),
		stream(StreamRetrain, "retrain requests and manifests", schemas.SubjectRetrain),
		stream(StreamModels, "model lifecycle: trained, evaluated, promoted, refused, rolled back", schemas.SubjectModels),
		dlq,
	}
}

// Consumer is a durable pull consumer shaped like every consumer of the
// topology: explicit acks, AckWait, MaxDeliver with backoff, MaxAckPending
// and replicas from the options. Optional consumers outside the topology
// (labelsink's on predictions) are built with it too.
func (o Options) Consumer(stream, name, filter string) ConsumerSpec {
	return ConsumerSpec{Stream: stream, Config: jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "eyeflow " + name,
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		// The first step equals AckWait: the server uses BackOff for
		// ack timeouts too, and a shorter first step would redeliver
		// messages still being worked on.
		BackOff:       backoff(o.AckWait, o.MaxDeliver),
		MaxAckPending: o.MaxAckPending,
		Replicas:      o.Replicas,
	}}
}

// EnsureConsumer binds to the durable consumer spec names and creates it
// only when it does not exist; an existing one keeps its configuration
// (its replicas above all), as OpenKeyValue does for buckets.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, spec ConsumerSpec) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, spec.Stream, spec.Config.Durable)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("consumer %s on %s: %w", spec.Config.Durable, spec.Stream, err)
	}
	c, err = js.CreateConsumer(ctx, spec.Stream, spec.Config)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		c, err = js.Consumer(ctx, spec.Stream, spec.Config.Durable)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: create: %w", spec.Config.Durable, spec.Stream, err)
	}
	return c, nil
}

// backoff returns redelivery delays after ack timeouts: AckWait, then doubling.
func backoff(ackWait time.Duration, maxDeliver int) []time.Duration {
	n := min(maxDeliver-1, 4)
	out := make([]time.Duration, n)
	d := ackWait
	for i := range out {
		out[i] = d
		d *= 2
	}
	return out
}

// OpenKeyValue binds to the KV bucket cfg names, as the topology (`eyeflow
// topology apply --replicas N`) created it, and creates it with cfg only
// when it does not exist. An existing bucket's configuration is never
// changed: a process that updated it with its own idea of the replicas
// would shrink an R3 bucket to one copy.
func OpenKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("kv %s: %w", cfg.Bucket, err)
	}
	kv, err = js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Created in between (another instance starting): use that one.
		kv, err = js.KeyValue(ctx, cfg.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("kv %s: create: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// Consumer returns the spec of the named durable consumer.
func (t Topology) Consumer(name string) (ConsumerSpec, bool) {
	for _, c := range t.Consumers {
		if c.Config.Durable == name {
			return c, true
		}
	}
	return ConsumerSpec{}, false
}

// Apply creates or updates every stream, consumer and KV bucket so the server
// converges on the topology: running it twice, or on an older topology,
// updates rather than fails.
func Apply(ctx context.Context, js jetstream.JetStream, t Topology) error {
	for _, s := range t.Streams {
		if _, err := js.CreateOrUpdateStream(ctx, s); err != nil {
			return fmt.Errorf("apply stream %s: %w", s.Name, err)
		}
	}
	for _, c := range t.Consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			return fmt.Errorf("apply consumer %s on %s: %w", c.Config.Durable, c.Stream, err)
		}
	}
	for _, kv := range t.KV {
		if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
			return fmt.Errorf("apply kv %s: %w", kv.Bucket, err)
		}
	}
	return nil
}

// KeyValueConfig is a KV bucket's configuration (KVSpec.Config), named here
// so packages that must not import the NATS client can pass one along.
type KeyValueConfig = jetstream.KeyValueConfig
