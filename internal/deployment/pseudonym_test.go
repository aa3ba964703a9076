package deployment_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/deployment"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/security/pseudonym"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

const splitSalt = "eyeflow-split" // the split salt's default

// legacyPAT4711 is PAT-4711's patient hash under the default salt as
// eyeflow published it before pseudonym keys (splitter.PatientHash).
const legacyPAT4711 = "0d8807b3ec0a20c59477d48b82d839d76d3bbe1c97e43b721facf5b3908b9c75"

func deploymentKV(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(testenv.Context(t, time.Minute), bus.KVDeployment)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestPseudonymKeyOnce: the first start records a random key; later starts,
// racing ones and a restarted server keep it, so a patient's pseudonym
// never moves; the key is not printed with the record.
func TestPseudonymKeyOnce(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	kv := deploymentKV(t, env.JS)

	// Racing first starts (two `buckets init`, or one beside `up`): one key.
	recs := make([]deployment.PseudonymRecord, 4)
	var wg sync.WaitGroup
	for i := range recs {
		wg.Go(func() {
			rec, _, err := deployment.EnsurePseudonym(ctx, env.JS, kv, "test")
			if err != nil {
				t.Error(err)
			}
			recs[i] = rec
		})
	}
	wg.Wait()
	first := recs[0]
	if first.Scheme != pseudonym.SchemeKeyed || first.Key == "" {
		t.Fatalf("a new deployment recorded %v, want a keyed rule with a key", first)
	}
	for _, r := range recs[1:] {
		if r.Key != first.Key {
			t.Fatal("racing first starts recorded two keys")
		}
	}
	if strings.Contains(first.String(), first.Key) {
		t.Fatal("the record prints its key")
	}
	rec, did, err := deployment.EnsurePseudonym(ctx, env.JS, kv, "test again")
	if err != nil || rec.Key != first.Key || strings.HasPrefix(did, "recorded") {
		t.Fatalf("second start: %v, %q, %v", rec, did, err)
	}
	rule, _, err := deployment.PseudonymRule(ctx, env.JS, splitSalt)
	if err != nil {
		t.Fatal(err)
	}
	before := rule.Of("PAT-4711")
	if before == legacyPAT4711 {
		t.Fatal("a new deployment uses the legacy hash")
	}

	// Restart the server on its store: the key is still there.
	env.Server.Stop()
	srv, err := bus.StartServer(bus.ServerOptions{Name: "test", Listen: "127.0.0.1:0", StoreDir: env.StoreDir, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	_, js := testenv.Connect(t, srv.ClientURL())
	rec, did, err = deployment.EnsurePseudonym(ctx, js, deploymentKV(t, js), "after restart")
	if err != nil || rec.Key != first.Key || rec.RecordedBy != "test" || strings.HasPrefix(did, "recorded") {
		t.Fatalf("after a restart: %v, %q, %v (want the first key, recorded by test)", rec, did, err)
	}
	rule, _, err = deployment.PseudonymRule(ctx, js, splitSalt)
	if err != nil || rule.Of("PAT-4711") != before {
		t.Fatalf("after a restart PAT-4711's pseudonym moved (%v)", err)
	}
}

// TestPseudonymOfEarlierDeployments: a deployment that published before it
// had a key (its store recorded, or events in its resized or split stream)
// records the legacy rule, so its patients keep today's hashes and splits;
// a new one gets a key.
func TestPseudonymOfEarlierDeployments(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before func(t *testing.T, env *testenv.NATSEnv, kv jetstream.KeyValue)
		legacy bool
	}{
		{"new", func(*testing.T, *testenv.NATSEnv, jetstream.KeyValue) {}, false},
		{"store recorded before", func(t *testing.T, env *testenv.NATSEnv, kv jetstream.KeyValue) {
			if _, err := deployment.Record(testenv.Context(t, time.Minute), kv, deployment.Target{Store: objstore.NewJetStream(env.JS)}, "eyeflow up", false); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"resized events before", func(t *testing.T, env *testenv.NATSEnv, _ jetstream.KeyValue) {
			if _, err := env.JS.Publish(testenv.Context(t, time.Minute), schemas.SubjectResized, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"split events before", func(t *testing.T, env *testenv.NATSEnv, _ jetstream.KeyValue) {
			if _, err := env.JS.Publish(testenv.Context(t, time.Minute), schemas.SplitSubject(schemas.SplitTrain), []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := testenv.NATS(t, testenv.TopologyOptions())
			ctx := testenv.Context(t, time.Minute)
			kv := deploymentKV(t, env.JS)
			tt.before(t, env, kv)
			rec, did, err := deployment.EnsurePseudonym(ctx, env.JS, kv, "eyeflow buckets init")
			if err != nil {
				t.Fatal(err)
			}
			rule, _, err := deployment.PseudonymRule(ctx, env.JS, splitSalt)
			if err != nil {
				t.Fatal(err)
			}
			got := rule.Of("PAT-4711")
			switch {
			case tt.legacy && (rec.Scheme != pseudonym.SchemeLegacy || rec.Key != "" || got != legacyPAT4711):
				t.Fatalf("%s: %v gives %s, want the legacy rule and %s", did, rec, got, legacyPAT4711)
			case !tt.legacy && (rec.Scheme != pseudonym.SchemeKeyed || got == legacyPAT4711):
				t.Fatalf("%s: %v, want a keyed rule", did, rec)
			}
			// Later events (the deployment now running) change nothing.
			if _, err := env.JS.Publish(ctx, schemas.SubjectResized, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			again, _, err := deployment.EnsurePseudonym(ctx, env.JS, kv, "eyeflow up")
			if err != nil || again.Scheme != rec.Scheme || again.Key != rec.Key {
				t.Fatalf("the next start recorded %v (%v), want %v", again, err, rec)
			}
		})
	}
}

// TestNoPseudonymRecord: a stage started on a deployment without a record
// fails, naming the commands that create it; nothing makes up a key.
func TestNoPseudonymRecord(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	_, _, err := deployment.PseudonymRule(testenv.Context(t, time.Minute), env.JS, splitSalt)
	if !errors.Is(err, deployment.ErrNoPseudonym) || !strings.Contains(err.Error(), "eyeflow buckets init") {
		t.Fatalf("no record: %v", err)
	}
	if _, ok, err := deployment.ReadPseudonym(testenv.Context(t, time.Minute), env.JS); ok || err != nil {
		t.Fatalf("reading created a record (%v)", err)
	}
}
