package pipeline

import (
	"fmt"
	"slices"

	"eyeflow/bus"
)

// Topology is the JetStream topology of the catalogue under the options:
// the event streams, every stage's durable consumers (optional ones aside)
// and every KV bucket, all at o.Replicas.
func Topology(o bus.Options) bus.Topology {
	t := bus.Topology{Streams: bus.Streams(o)}
	for _, s := range Stages() {
		for _, in := range s.Inputs {
			if in.Optional {
				continue
			}
			t.Consumers = append(t.Consumers, Consumers(o, in)...)
		}
	}
	for _, kv := range KeyValues() {
		t.KV = append(t.KV, kv.Config(o))
	}
	return t
}

// Consumers are the durable consumer specs of one input under the options.
func Consumers(o bus.Options, in Input) []bus.ConsumerSpec {
	var out []bus.ConsumerSpec
	for _, name := range in.Consumers() {
		spec := o.Consumer(in.Stream, name, in.Filter)
		if in.MaxAckPending > 0 {
			spec.Config.MaxAckPending = in.MaxAckPending
		}
		out = append(out, spec)
	}
	return out
}

// ConsumerSpec is the spec of a durable consumer declared in the
// catalogue, optional ones included.
func ConsumerSpec(o bus.Options, consumer string) (bus.ConsumerSpec, bool) {
	for _, s := range Stages() {
		for _, in := range s.Inputs {
			if slices.Contains(in.Consumers(), consumer) {
				for _, spec := range Consumers(o, in) {
					if spec.Config.Durable == consumer {
						return spec, true
					}
				}
			}
		}
	}
	return bus.ConsumerSpec{}, false
}

// KeyValues are every KV bucket of the deployment: the shared ones, then
// each stage's own, in pipeline order.
func KeyValues() []bus.KVSpec {
	out := Shared()
	for _, s := range Stages() {
		out = append(out, s.Owns...)
	}
	return out
}

// KeyValue is the spec of the named bucket. It panics for a bucket the
// catalogue does not declare: a programming error, caught by any test
// that opens it.
func KeyValue(bucket string) bus.KVSpec {
	for _, kv := range KeyValues() {
		if kv.Bucket == bucket {
			return kv
		}
	}
	panic(fmt.Sprintf("pipeline: no KV bucket %q in the catalogue", bucket))
}

// KeyValueConfig is the configuration of the named bucket at replicas, for a
// process that must create its bucket because the topology was not applied
// (bus.OpenKeyValue binds to an existing one as it is).
func KeyValueConfig(bucket string, replicas int) bus.KeyValueConfig {
	o := bus.DefaultOptions()
	o.Replicas = max(replicas, 1)
	return KeyValue(bucket).Config(o)
}
