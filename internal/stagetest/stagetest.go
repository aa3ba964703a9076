// Package stagetest runs processors for tests in other packages: a stage
// started on a JetStream context and stopped, with its error checked, when
// the test ends. It also holds in-memory stage.KeyValue and stage.Publisher
// fakes, for tests of a processor's own logic (a compare-and-set, the order
// of a publish and its record) that need no server; the stage package
// checks the fake KeyValue against the JetStream one. It is separate from
// testenv because the stage package's own tests use testenv.
package stagetest

import (
	"context"
	"testing"
	"time"

	"eyeflow/stage"

	"github.com/nats-io/nats.go/jetstream"
)

// Run runs p until the test ends.
func Run[In any](t testing.TB, js jetstream.JetStream, p stage.Processor[In]) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stage.Run(ctx, js, p) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stage %s: %v", p.Stage, err)
		}
	})
}

// Bucket is the topology's KV bucket as the runtime's caller hands it to a
// processor; the test fails when the bucket is missing.
func Bucket(t testing.TB, js jetstream.JetStream, bucket string) stage.KeyValue {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("kv %s: %v", bucket, err)
	}
	return stage.KeyValueOf(kv)
}
