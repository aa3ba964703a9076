package main

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"eyeflow/internal/testenv"
	ejs "eyeflow/jetstream"
	"eyeflow/pipeline"
	"eyeflow/processors/classifier"
	"eyeflow/schemas"
)

// TestStagesKeepTheTopologysReplicas: on a three-node cluster, `eyeflow
// topology apply --replicas 3` and `eyeflow buckets init --replicas 3`
// make every stream, KV bucket, object store and consumer R3; starting
// every stage as its own process (as compose.yaml runs them, with nothing
// but --nats and --http) must leave all of them at three replicas. A
// processor that "ensured" its bucket with its own configuration shrank it
// to one copy.
func TestStagesKeepTheTopologysReplicas(t *testing.T) {
	const replicas = 3
	c := testenv.Cluster(t, replicas)
	ctx := testenv.Context(t, 4*time.Minute)
	var out, cmdLogs bytes.Buffer
	for _, args := range [][]string{
		{"topology", "apply", "--nats", c.URL, "--replicas", "3"},
		{"buckets", "init", "--nats", c.URL, "--replicas", "3"},
	} {
		if err := run(ctx, args, &out, &cmdLogs); err != nil {
			t.Fatalf("eyeflow %s: %v\n%s", strings.Join(args, " "), err, cmdLogs.String())
		}
	}
	_, js := testenv.Connect(t, c.URL)
	want := map[string]bool{} // streams the topology and the buckets made
	for name := range js.StreamNames(ctx).Name() {
		want[name] = true
	}
	topo := pipeline.Topology(ejs.DefaultOptions())
	for _, s := range topo.Streams {
		if !want[s.Name] {
			t.Fatalf("topology apply made no stream %s", s.Name)
		}
	}
	for _, kv := range topo.KV {
		if !want["KV_"+kv.Bucket] {
			t.Fatalf("topology apply made no KV bucket %s", kv.Bucket)
		}
	}

	model := filepath.Join(t.TempDir(), "tiny")
	if err := run(ctx, []string{"model", "synth", "--arch", "tiny", "--out", model}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	// The standalone classifier never registers a model: the operator pushes it.
	if err := run(ctx, []string{"model", "push", model, "--nats", c.URL, "--name", classifier.TinyName, "--version", classifier.TinyVersion}, &out, &cmdLogs); err != nil {
		t.Fatalf("model push: %v\n%s", err, cmdLogs.String())
	}
	stages := [][]string{
		{"ingest"},
		{schemas.StageResize},
		{schemas.StageSplitter},
		{schemas.StageClassifier, "--ort-lib", testenv.ORTLibrary(t)},
		{schemas.StageDriftwatch},
		{schemas.StageLabelsink},
		{"dashboard"},
	}
	var logs []*syncBuffer
	for _, args := range stages {
		addr := freeAddr(t)
		l, _ := startProcess(t, addr, append(args, "--nats", c.URL, "--http", addr, "--log-format", "json")...)
		logs = append(logs, l)
	}
	// An operator promotes a model through the registry while they run.
	if err := run(ctx, []string{"model", "promote", "--nats", c.URL, "--env", schemas.EnvCanary, classifier.TinyName, classifier.TinyVersion}, &out, &cmdLogs); err != nil {
		t.Fatalf("model promote: %v\n%s", err, cmdLogs.String())
	}

	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		if !want[name] {
			t.Errorf("stream %s appeared after the topology and buckets were applied", name)
		}
		if info.Config.Replicas != replicas {
			t.Errorf("stream %s has %d replicas after every stage started, want %d", name, info.Config.Replicas, replicas)
		}
	}
	for _, cs := range topo.Consumers {
		cons, err := js.Consumer(ctx, cs.Stream, cs.Config.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", cs.Config.Durable, err)
		}
		if got := cons.CachedInfo().Config.Replicas; got != replicas {
			t.Errorf("consumer %s on %s has %d replicas, want %d", cs.Config.Durable, cs.Stream, got, replicas)
		}
	}
	for i, l := range logs {
		if strings.Contains(l.String(), `"level":"error"`) {
			t.Errorf("eyeflow %s logged errors:\n%s", stages[i][0], l.String())
		}
	}
}
