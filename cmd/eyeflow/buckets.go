package main

import (
	"context"
	"fmt"

	"eyeflow/bus"
	"eyeflow/ingest"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

// Processors are handed their buckets: these open them.

// openKeyValue binds a processor's KV bucket as the topology created it,
// creating it with replicas only when it is missing (never reconfiguring
// one: see jetstream.OpenKeyValue).
func openKeyValue(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (stage.KeyValue, error) {
	kv, err := bus.OpenKeyValue(ctx, js, pipeline.KeyValueConfig(bucket, replicas))
	if err != nil {
		return nil, err
	}
	return stage.KeyValueOf(kv), nil
}

// openRegistry opens the model registry: the models object bucket, and the
// env -> version KV bucket (created with replicas only when missing).
func openRegistry(ctx context.Context, js jetstream.JetStream, store objstore.Store, replicas int) (*models.Registry, error) {
	kv, err := openKeyValue(ctx, js, bus.KVModels, replicas)
	if err != nil {
		return nil, fmt.Errorf("model registry: %w", err)
	}
	return models.OpenRegistry(ctx, store, kv)
}

// openLedger binds the upload ledger's bucket, which only the topology
// creates (`eyeflow topology apply`, or `eyeflow up`).
func openLedger(ctx context.Context, js jetstream.JetStream) (*ingest.Ledger, error) {
	kv, err := js.KeyValue(ctx, bus.KVUploads)
	if err != nil {
		return nil, fmt.Errorf("open upload ledger %s: %w", bus.KVUploads, err)
	}
	return ingest.NewLedger(stage.KeyValueOf(kv), stage.StreamReaderOf(js)), nil
}
