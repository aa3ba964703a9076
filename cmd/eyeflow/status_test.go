package main

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/dashboard"
	"eyeflow/internal/testenv"
	"eyeflow/processors/driftwatch"
	"eyeflow/schemas"
)

// TestStatus runs `eyeflow status` against an embedded server holding a
// dead letter, a promoted model, driftwatch state and a drift alert.
func TestStatus(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	pub := func(subject string, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.Publish(ctx, subject, data); err != nil {
			t.Fatal(err)
		}
	}
	pub(schemas.DLQSubject(schemas.StageSplitter), schemas.DeadLetter{Schema: schemas.SchemaDeadLetter, Stage: schemas.StageSplitter,
		Reason: "bad_input", Error: "no label", Permanent: true, Time: time.Now()})
	// resize: four reasons, more than the latest three, one of them five
	// times and the oldest: status counts every one.
	for _, r := range []string{"corrupt_image", "corrupt_image", "corrupt_image", "corrupt_image", "corrupt_image",
		"unsupported_image", "bad_key", "unsupported_image", "too_large"} {
		pub(schemas.DLQSubject(schemas.StageResize), schemas.DeadLetter{Schema: schemas.SchemaDeadLetter, Stage: schemas.StageResize,
			Reason: r, Error: "x", Permanent: true, Time: time.Now()})
	}
	pub(schemas.SplitSubject(schemas.SplitTrain), map[string]string{"schema": schemas.SchemaSplit}) // lag for the classifiers
	pub(schemas.DriftSubject(schemas.EnvCanary), schemas.DriftAlert{Schema: schemas.SchemaDrift, AlertID: "a1", Env: schemas.EnvCanary,
		ModelVersion: "v2", Signal: "entropy_ks", State: "firing", Time: time.Now()})
	models, err := env.JS.KeyValue(ctx, bus.KVModels)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := models.Put(ctx, schemas.EnvCanary, []byte(`{"name":"densenet121","version":"v2"}`)); err != nil {
		t.Fatal(err)
	}
	dw, err := env.JS.KeyValue(ctx, bus.KVDriftwatch)
	if err != nil {
		t.Fatal(err)
	}
	st := driftwatch.State{Env: schemas.EnvCanary, ModelVersion: "v2"}
	st.KS.Firing, st.KS.Tested, st.KS.LastP = true, 3, 0.001
	data, _ := json.Marshal(st)
	if _, err := dw.Put(ctx, driftwatch.StateKey(schemas.EnvCanary, "v2"), data); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"text", nil, func(t *testing.T, out string) {
			// Rows compared by their fields: the column widths are tabwriter's.
			var rows []string
			for _, l := range strings.Split(out, "\n") {
				rows = append(rows, strings.Join(strings.Fields(l), " ")+" ")
			}
			for _, want := range []string{
				"EYE_DLQ 10 ", // messages; bytes vary with the timestamp
				"classifier-prod EYE_SPLITS classifier 1 0 0",
				"splitter 1 bad_input 1",
				"resize 9 corrupt_image 5, unsupported_image 2, bad_key 1, too_large 1",
				"canary densenet121 v2 FIRING ok run=0 FIRING p=0.001 ok untested",
				"prod - no data - - -",
			} {
				if !slices.ContainsFunc(rows, func(r string) bool {
					return strings.HasPrefix(r, want+" ") || strings.HasPrefix(r, want) && strings.HasSuffix(want, " ")
				}) {
					t.Errorf("no row %q in\n%s", want, out)
				}
			}
		}},
		{"json", []string{"--json"}, func(t *testing.T, out string) {
			var s dashboard.Snapshot
			if err := json.Unmarshal([]byte(out), &s); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			dlq := map[string]uint64{}
			var resizeReasons []dashboard.ReasonCount
			for _, d := range s.DLQ {
				dlq[d.Stage] = d.Count
				if d.Stage == schemas.StageResize {
					resizeReasons = d.ReasonCounts
				}
			}
			pending := map[string]uint64{}
			for _, c := range s.Consumers {
				pending[c.Name] = c.Pending
			}
			var canary dashboard.EnvStatus
			for _, e := range s.Envs {
				if e.Env == schemas.EnvCanary {
					canary = e
				}
			}
			switch {
			case len(s.Streams) != 8 || len(s.Problems) != 0:
				t.Errorf("%d streams, problems %v", len(s.Streams), s.Problems)
			case dlq[schemas.StageSplitter] != 1 || dlq[schemas.StageResize] != 9:
				t.Errorf("dead letters %v", dlq)
			case !slices.Equal(resizeReasons, []dashboard.ReasonCount{{Reason: "corrupt_image", Count: 5}, {Reason: "unsupported_image", Count: 2}, {Reason: "bad_key", Count: 1}, {Reason: "too_large", Count: 1}}):
				t.Errorf("resize's reasons %+v", resizeReasons)
			case pending[bus.ClassifierConsumer(schemas.EnvProd)] != 1:
				t.Errorf("pending %v", pending)
			case canary.Version != "v2" || !canary.Firing() || len(s.Alerts) != 1:
				t.Errorf("canary %+v, alerts %v", canary, s.Alerts)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(ctx, append([]string{"status", "--nats", env.URL}, tt.args...), &out, io.Discard); err != nil {
				t.Fatal(err)
			}
			tt.check(t, out.String())
		})
	}
}
