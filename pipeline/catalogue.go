package pipeline

import (
	"fmt"
	"slices"

	"eyeflow/bus"
	"eyeflow/objstore"
	"eyeflow/schemas"
)

// InputPredictions names labelsink's optional input of low-confidence
// predictions (its main input is the retrain requests).
const InputPredictions = "predictions"

// Access is what a stage does with a bucket.
type Access uint8

// Accesses.
const (
	Read Access = iota + 1
	Write
)

// Input is a durable pull consumer a stage reads.
type Input struct {
	// Name tells a stage's inputs apart: a processor names the input it
	// reads ("" is the stage's main input), never its stream or consumer.
	Name   string
	Stream string
	// Consumer is the durable name; with PerEnv, Consumer(env) names one
	// consumer per environment.
	Consumer string
	// PerEnv: one consumer per environment (schemas.Envs), named by
	// bus.ClassifierConsumer; the stage reads those of the envs it serves.
	PerEnv bool
	Filter string
	// MaxAckPending overrides the topology's when positive.
	MaxAckPending int
	// Optional consumers are not part of the applied topology: the stage
	// creates its own when a flag turns the input on (a consumer nobody
	// reads would lag forever).
	Optional bool
}

// Consumers are the durable names of the input (one per env with PerEnv).
func (in Input) Consumers() []string {
	if !in.PerEnv {
		return []string{in.Consumer}
	}
	var out []string
	for _, env := range schemas.Envs() {
		out = append(out, bus.ClassifierConsumer(env))
	}
	return out
}

// ConsumerOf is the durable name the input has for env: its Consumer, or
// with PerEnv the env's own ("" for an env the input does not know).
func (in Input) ConsumerOf(env string) string {
	if !in.PerEnv {
		return in.Consumer
	}
	if !slices.Contains(schemas.Envs(), env) {
		return ""
	}
	return bus.ClassifierConsumer(env)
}

// KVUse is a KV bucket a stage reads or writes. Keys, when set, is the only
// key pattern it writes (a NATS wildcard under the bucket).
type KVUse struct {
	Bucket string
	Access Access
	Keys   string
}

// ObjectUse is an object-store bucket a stage reads or writes.
type ObjectUse struct {
	Bucket string
	Access Access
}

// Stage is one stage, declared once.
type Stage struct {
	// Name is the stage in DLQ subjects, NATS users, metrics labels and
	// its command (`eyeflow <name>`).
	Name string
	// Summary is the command's one line of help.
	Summary string
	Inputs  []Input
	// Publishes are the subjects (or wildcards) it publishes; its
	// eye.dlq.<name> is implied.
	Publishes []string
	// Owns are the KV buckets whose configuration the stage owns: it may
	// create them when the topology has not (never change them).
	Owns []bus.KVSpec
	KV   []KVUse
	// Objects are the object-store buckets it reads or writes.
	Objects []ObjectUse
	// Scans are streams it reads with ephemeral ordered consumers.
	Scans []string
	// Reasons are the dead-letter reasons of its own, beside the
	// runtime's (RuntimeReasons).
	Reasons []string
}

// DLQ is the stage's dead-letter subject.
func (s Stage) DLQ() string { return schemas.DLQSubject(s.Name) }

// RuntimeReasons are the reasons the runtime (package stage) gives for any stage.
func RuntimeReasons() []string {
	return []string{schemas.ReasonBadInput, schemas.ReasonBadEvent, schemas.ReasonPanic, schemas.ReasonMaxDeliveries}
}

// Shared are the KV buckets of the deployment rather than of a stage: every
// process reads the deployment record (the object store it must use).
func Shared() []bus.KVSpec {
	return []bus.KVSpec{{
		Bucket:      bus.KVDeployment,
		Description: "the deployment's object store; what each env's classifier serves or refused, and why",
		History:     5,
	}}
}

// ServingKeyPrefix starts the keys of the deployment bucket's serving
// records, "serving.<env>": what each env's classifier serves or refused.
// The catalogue grants the classifier those keys alone; internal/deployment
// reads and writes them.
const ServingKeyPrefix = "serving."

// IsShared tells whether bucket is one of the deployment's shared buckets.
func IsShared(bucket string) bool {
	for _, kv := range Shared() {
		if kv.Bucket == bucket {
			return true
		}
	}
	return false
}

// Stages lists every stage in pipeline order: ingest first (the upload
// ledger, which records every upload event), then the stages of
// schemas.Stages.
func Stages() []Stage {
	return []Stage{
		{
			Name:    schemas.StageIngest,
			Summary: "run the upload ledger and the reconciler (beside an S3 store that notifies NATS)",
			Inputs:  []Input{{Stream: bus.StreamUploads, Consumer: bus.ConsumerIngestLedger, Filter: schemas.SubjectUploads}},
			// The reconciler and the embedded watcher publish uploads.
			Publishes: []string{schemas.SubjectUploads},
			Owns: []bus.KVSpec{{
				Bucket:           bus.KVUploads,
				Description:      "upload identities that have an eye.uploads event",
				ExpireWithEvents: true,
			}},
			KV:      []KVUse{{Bucket: bus.KVUploads, Access: Write}},
			Objects: []ObjectUse{{Bucket: objstore.BucketRaw, Access: Write}},
		},
		{
			Name:      schemas.StageResize,
			Summary:   "run the resize processor alone",
			Inputs:    []Input{{Stream: bus.StreamUploads, Consumer: bus.ConsumerResize, Filter: schemas.SubjectUploads}},
			Publishes: []string{schemas.SubjectResized},
			Objects: []ObjectUse{
				{Bucket: objstore.BucketRaw, Access: Read},
				{Bucket: objstore.BucketProcessed, Access: Write},
			},
			Reasons: []string{schemas.ReasonBadKey, schemas.ReasonObjectMissing, schemas.ReasonObjectChanged, schemas.ReasonEmpty,
				schemas.ReasonTooLarge, schemas.ReasonNotAnImage, schemas.ReasonCorruptImage, schemas.ReasonUnsupportedImage},
		},
		{
			Name:      schemas.StageSplitter,
			Summary:   "run the splitter processor alone",
			Inputs:    []Input{{Stream: bus.StreamResized, Consumer: bus.ConsumerSplitter, Filter: schemas.SubjectResized}},
			Publishes: []string{schemas.SubjectSplitAll},
			// Reads resized/, links the dataset folders.
			Objects: []ObjectUse{{Bucket: objstore.BucketProcessed, Access: Write}},
			Reasons: []string{schemas.ReasonBadKey, schemas.ReasonBadResized},
		},
		{
			Name:      schemas.StageClassifier,
			Summary:   "run the classifier alone: eye.split.* -> eye.predictions.<env>, POST /predict",
			Inputs:    []Input{{Stream: bus.StreamSplits, PerEnv: true, Filter: schemas.SubjectSplitAll}},
			Publishes: []string{schemas.SubjectPredictionsAll},
			Owns: []bus.KVSpec{{
				Bucket:      bus.KVModels,
				Description: "env -> model name and version the classifier serves",
				History:     16, // promotion history, for rollbacks
			}},
			KV: []KVUse{
				{Bucket: bus.KVModels, Access: Read},
				// What each env serves, or refused and why (`eyeflow status`).
				{Bucket: bus.KVDeployment, Access: Write, Keys: ServingKeyPrefix + ">"},
			},
			Objects: []ObjectUse{
				{Bucket: objstore.BucketModels, Access: Read},
				{Bucket: objstore.BucketProcessed, Access: Read}, // events name the PNG
			},
			Reasons: []string{schemas.ReasonObjectMissing, schemas.ReasonCorruptImage, schemas.ReasonBadPixels, schemas.ReasonNoPixels},
		},
		{
			Name:    schemas.StageDriftwatch,
			Summary: "run the drift watcher alone",
			Inputs: []Input{{
				Stream: bus.StreamPredictions, Consumer: bus.ConsumerDriftwatch, Filter: schemas.SubjectPredictionsAll,
				// One prediction in flight: "consecutive" is stream order, and
				// a prediction retried after a transient failure must not be
				// overtaken by later ones (it would look like a redelivery
				// and be skipped).
				MaxAckPending: 1,
			}},
			Publishes: []string{schemas.SubjectDriftAll, schemas.SubjectRetrain},
			Owns: []bus.KVSpec{{
				Bucket:       bus.KVDriftwatch,
				Description:  "driftwatch state per env and model version: streak, windows, alerts, last counted sequence",
				MaxValueSize: 1 << 20, // states carry windows of a few hundred floats
			}},
			KV:      []KVUse{{Bucket: bus.KVDriftwatch, Access: Write}},
			Reasons: []string{schemas.ReasonBadPrediction},
		},
		{
			Name:    schemas.StageLabelsink,
			Summary: "run the label sink alone (Label Studio tasks, exports, retrain manifests)",
			Inputs: []Input{
				{Stream: bus.StreamRetrain, Consumer: bus.ConsumerLabelsink, Filter: schemas.SubjectRetrain},
				{Name: InputPredictions, Stream: bus.StreamPredictions, Consumer: bus.ConsumerLabelsinkPredictions, Filter: schemas.SubjectPredictionsAll, Optional: true},
			},
			Publishes: []string{schemas.SubjectRetrain},
			Owns: []bus.KVSpec{{
				Bucket:      bus.KVLabelsink,
				Description: "labelsink: tasks written, retrain events, labels received, export files processed",
			}},
			KV: []KVUse{{Bucket: bus.KVLabelsink, Access: Write}},
			Objects: []ObjectUse{
				{Bucket: objstore.BucketLabeling, Access: Write},
				{Bucket: objstore.BucketRaw, Access: Write}, // labelled copies into raw/<class>/
				{Bucket: objstore.BucketProcessed, Access: Read},
			},
			Reasons: []string{schemas.ReasonBadRetrain, schemas.ReasonBadPrediction, schemas.ReasonBadExport, schemas.ReasonBadKey,
				schemas.ReasonObjectMissing, schemas.ReasonUnknownClass, schemas.ReasonEmptyAnnotation,
				schemas.ReasonCancelledAnnotation, schemas.ReasonConflictingAnnotations, schemas.ReasonMissingSource},
		},
		{
			Name:      schemas.StageTrainer,
			Summary:   "run the trainer alone: train, evaluate, promote and roll back model versions",
			Inputs:    []Input{{Stream: bus.StreamRetrain, Consumer: bus.ConsumerTrainer, Filter: schemas.SubjectRetrain}},
			Publishes: []string{schemas.SubjectModels},
			Owns: []bus.KVSpec{{
				Bucket:       bus.KVTrainer,
				Description:  "trainer: rollout record per model version",
				MaxValueSize: 1 << 20, // records carry confusion matrices
			}},
			KV: []KVUse{
				{Bucket: bus.KVTrainer, Access: Write},
				{Bucket: bus.KVModels, Access: Write}, // promotions and rollbacks
			},
			Objects: []ObjectUse{
				{Bucket: objstore.BucketProcessed, Access: Read}, // the dataset layout
				{Bucket: objstore.BucketModels, Access: Write},   // new versions and their metrics
				{Bucket: objstore.BucketFeatures, Access: Write}, // the backbone's feature cache
				{Bucket: objstore.BucketLabeling, Access: Read},  // retrain manifests
			},
			// Rollout checks count live predictions and drift alerts.
			Scans:   []string{bus.StreamPredictions, bus.StreamDrift},
			Reasons: []string{schemas.ReasonBadManifest, schemas.ReasonObjectMissing, schemas.ReasonCorruptImage},
		},
	}
}

// Find returns the stage named name.
func Find(name string) (Stage, bool) {
	for _, s := range Stages() {
		if s.Name == name {
			return s, true
		}
	}
	return Stage{}, false
}

// Binding is where a processor of a stage reads: the stream and durable
// consumer the catalogue declares for it.
type Binding struct {
	Stream, Consumer string
	// Optional: the consumer is not in the applied topology (Input.Optional).
	Optional bool
}

// Bind finds the input a processor of stage reads: the one named input
// ("" for the main one), for env when it is declared per env. The runtime
// binds every processor with it, so a processor never names a stream or a
// consumer, and cannot read one its stage does not declare.
func Bind(stage, input, env string) (Binding, error) {
	st, ok := Find(stage)
	if !ok {
		return Binding{}, fmt.Errorf("no stage %q in the catalogue", stage)
	}
	for _, in := range st.Inputs {
		if in.Name != input {
			continue
		}
		if in.PerEnv != (env != "") {
			return Binding{}, fmt.Errorf("stage %s input %q: env %q given, but the input is per env: %v", stage, input, env, in.PerEnv)
		}
		c := in.ConsumerOf(env)
		if c == "" {
			return Binding{}, fmt.Errorf("stage %s input %q: no consumer for env %q (want one of %v)", stage, input, env, schemas.Envs())
		}
		return Binding{Stream: in.Stream, Consumer: c, Optional: in.Optional}, nil
	}
	return Binding{}, fmt.Errorf("stage %s declares no input %q", stage, input)
}

// Names lists the stages' names in pipeline order.
func Names() []string {
	var out []string
	for _, s := range Stages() {
		out = append(out, s.Name)
	}
	return out
}

// Order is a stage's position in pipeline order; unknown names sort last.
func Order(name string) int {
	for i, s := range Stages() {
		if s.Name == name {
			return i
		}
	}
	return len(Stages())
}

// OfConsumer names the stage that reads a durable consumer, "" for none.
func OfConsumer(consumer string) string {
	for _, s := range Stages() {
		for _, in := range s.Inputs {
			for _, c := range in.Consumers() {
				if c == consumer {
					return s.Name
				}
			}
		}
	}
	return ""
}
