package main

import (
	"context"

	ejs "eyeflow/jetstream"
	"eyeflow/stage"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Processors are handed their buckets: these open them.

// openKeyValue binds a processor's KV bucket as the topology created it,
// creating it with replicas only when it is missing (never reconfiguring
// one: see jetstream.OpenKeyValue).
func openKeyValue(ctx context.Context, js natsjs.JetStream, bucket string, replicas int) (stage.KeyValue, error) {
	kv, err := ejs.OpenKeyValue(ctx, js, ejs.KeyValueConfig(bucket, max(replicas, 1)))
	if err != nil {
		return nil, err
	}
	return stage.KeyValueOf(kv), nil
}
