package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/pipeline"
	"eyeflow/schemas"

	"github.com/nats-io/nats.go/jetstream"
)

func TestApplyIsIdempotentAndConverges(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)

	// A second Apply of the same topology is a no-op, not an error.
	if err := bus.Apply(ctx, env.JS, env.Topology); err != nil {
		t.Fatalf("second apply: %v", err)
	}

	// An older topology: shorter duplicate window, smaller MaxAckPending.
	older := testenv.TopologyOptions()
	older.Duplicates = time.Minute
	older.MaxAckPending = 7
	if err := bus.Apply(ctx, env.JS, pipeline.Topology(older)); err != nil {
		t.Fatalf("apply older: %v", err)
	}
	if err := bus.Apply(ctx, env.JS, env.Topology); err != nil {
		t.Fatalf("apply newer over older: %v", err)
	}
	want := testenv.TopologyOptions()
	if c, _ := env.Topology.Consumer(bus.ConsumerResize); c.Config.MaxAckPending != want.MaxAckPending {
		t.Fatalf("resize MaxAckPending %d, want the option's %d", c.Config.MaxAckPending, want.MaxAckPending)
	}
	for _, sc := range env.Topology.Streams {
		s, err := env.JS.Stream(ctx, sc.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", sc.Name, err)
		}
		cfg := s.CachedInfo().Config
		if cfg.Retention != jetstream.LimitsPolicy {
			t.Errorf("stream %s retention %v, want limits", sc.Name, cfg.Retention)
		}
		if cfg.Duplicates != want.Duplicates {
			t.Errorf("stream %s duplicate window %s, want %s", sc.Name, cfg.Duplicates, want.Duplicates)
		}
		// Retention bounds the disk by bytes as well as by age.
		if cfg.MaxBytes != want.MaxBytes || cfg.MaxBytes <= 0 || cfg.MaxAge <= 0 {
			t.Errorf("stream %s max bytes %d, max age %s: want %d and a positive age", sc.Name, cfg.MaxBytes, cfg.MaxAge, want.MaxBytes)
		}
	}
	for _, cs := range env.Topology.Consumers {
		c, err := env.JS.Consumer(ctx, cs.Stream, cs.Config.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", cs.Config.Durable, err)
		}
		if got := c.CachedInfo().Config.MaxAckPending; got != cs.Config.MaxAckPending {
			t.Errorf("consumer %s MaxAckPending %d, want %d", cs.Config.Durable, got, cs.Config.MaxAckPending)
		}
	}
}

func TestApplyAddsMissingSubjectToExistingStream(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	// Someone created the uploads stream by hand with an unrelated subject set.
	if err := env.JS.DeleteStream(ctx, bus.StreamUploads); err != nil {
		t.Fatal(err)
	}
	if _, err := env.JS.CreateStream(ctx, jetstream.StreamConfig{Name: bus.StreamUploads, Subjects: []string{"legacy.uploads"}}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Apply(ctx, env.JS, env.Topology); err != nil {
		t.Fatalf("apply: %v", err)
	}
	name, err := env.JS.StreamNameBySubject(ctx, schemas.SubjectUploads)
	if err != nil || name != bus.StreamUploads {
		t.Fatalf("eye.uploads is captured by %q (%v), want %s", name, err, bus.StreamUploads)
	}
}

func TestTopologyCoversEverySubject(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	subjects := []string{schemas.SubjectUploads, schemas.SubjectResized, schemas.SubjectRetrain}
	for _, s := range schemas.Splits() {
		subjects = append(subjects, schemas.SplitSubject(s))
	}
	for _, e := range schemas.Envs() {
		subjects = append(subjects, schemas.PredictionSubject(e), schemas.DriftSubject(e))
	}
	for _, st := range pipeline.Stages() {
		subjects = append(subjects, st.DLQ())
		subjects = append(subjects, st.Publishes...)
	}
	for _, subj := range subjects {
		if _, err := env.JS.Publish(ctx, subj, []byte("{}")); err != nil {
			t.Errorf("publish %s: no stream stores it: %v", subj, err)
		}
	}
	// Every environment has its own classifier consumer over every split.
	for _, e := range schemas.Envs() {
		c, ok := env.Topology.Consumer(bus.ClassifierConsumer(e))
		if !ok || c.Config.FilterSubject != schemas.SubjectSplitAll {
			t.Errorf("classifier consumer for %s: %+v", e, c)
		}
	}
}

// The default bounds every stream by bytes; on a small disk the bound
// shrinks so that all streams at their bounds take at most half of what
// nats-server may store there (75% of the free space).
func TestStreamBytesFitTheDisk(t *testing.T) {
	o := bus.DefaultOptions()
	if o.MaxBytes != bus.DefaultStreamMaxBytes || o.MaxBytes <= 0 {
		t.Fatalf("default max bytes %d", o.MaxBytes)
	}
	streams := int64(len(bus.Streams(o)))
	for _, tc := range []struct {
		free, want int64
	}{
		{0, bus.DefaultStreamMaxBytes},       // unknown: as configured
		{1 << 40, bus.DefaultStreamMaxBytes}, // plenty
		{16 << 30, (16 << 30) * 3 / 4 / 2 / streams},
		{1 << 20, 64 << 20}, // the floor
	} {
		got := o.FitDisk(tc.free).MaxBytes
		if got != tc.want {
			t.Errorf("free %d MiB: max bytes %d MiB, want %d MiB", tc.free>>20, got>>20, tc.want>>20)
		}
		if tc.free >= 4<<30 && got*streams > tc.free*3/4/2 {
			t.Errorf("free %d MiB: %d streams of %d MiB exceed half the server's store", tc.free>>20, streams, got>>20)
		}
	}
	o.MaxBytes = -1
	if got := o.FitDisk(1 << 30).MaxBytes; got != -1 {
		t.Errorf("unbounded streams were bounded: %d", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*bus.Options)
		wantErr string
	}{
		{"defaults", func(*bus.Options) {}, ""},
		{"replicas zero", func(o *bus.Options) { o.Replicas = 0 }, "replicas"},
		{"ack wait too short", func(o *bus.Options) { o.AckWait = time.Millisecond }, "ack wait"},
		{"dup window beyond max age", func(o *bus.Options) { o.Duplicates = 30 * 24 * time.Hour }, "duplicate window"},
		{"max deliver one", func(o *bus.Options) { o.MaxDeliver = 1 }, "max deliver"},
		{"no ack pending", func(o *bus.Options) { o.MaxAckPending = 0 }, "max ack pending"},
		{"unbounded bytes", func(o *bus.Options) { o.MaxBytes = -1 }, ""},
		{"zero bytes", func(o *bus.Options) { o.MaxBytes = 0 }, "stream max bytes"},
		{"a few bytes", func(o *bus.Options) { o.MaxBytes = 100 }, "stream max bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := bus.DefaultOptions()
			tt.mutate(&o)
			err := o.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestEmbeddedServerKeepsDataAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() (*bus.Server, jetstream.JetStream) {
		srv, err := bus.StartServer(bus.ServerOptions{Name: "restart", Listen: "127.0.0.1:0", StoreDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		_, js := testenv.Connect(t, srv.ClientURL())
		return srv, js
	}
	ctx := testenv.Context(t, time.Minute)
	srv, js := start()
	if err := bus.Apply(ctx, js, pipeline.Topology(testenv.TopologyOptions())); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, schemas.SubjectUploads, []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv, js = start()
	defer srv.Stop()
	s, err := js.Stream(context.Background(), bus.StreamUploads)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Fatalf("after restart the uploads stream holds %d messages, want 1", n)
	}
}
