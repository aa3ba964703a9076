package deployment_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/deployment"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
)

// TestRecordAndCheck: the first record makes a store the deployment's;
// another kind of store, or another S3 server (no marker, or another
// marker), is refused with ErrWrongStore; the same S3 store by another URL
// passes; --replace-store records another one; a second cluster recording
// the same store agrees on its id. S3 stores are stood in for by object
// stores of their own (the check reads only the marker).
func TestRecordAndCheck(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	other := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	kv, err := env.JS.KeyValue(ctx, bus.KVDeployment)
	if err != nil {
		t.Fatal(err)
	}
	minio := deployment.Target{Store: objstore.NewJetStream(other.JS), Endpoint: "http://minio:9000"}
	sameByAnotherURL := deployment.Target{Store: minio.Store, Endpoint: "http://localhost:9000"}
	third := testenv.NATS(t, testenv.TopologyOptions())
	anotherS3 := deployment.Target{Store: objstore.NewJetStream(third.JS), Endpoint: "http://minio-2:9000"}
	jetstream := deployment.Target{Store: objstore.NewJetStream(env.JS)}

	if _, recorded, err := deployment.Check(ctx, env.JS, jetstream); err != nil || recorded {
		t.Fatalf("nothing recorded: recorded %v, %v", recorded, err)
	}
	if did, err := deployment.Record(ctx, kv, minio, "test", false); err != nil || !strings.Contains(did, "recorded the S3 store at http://minio:9000") {
		t.Fatalf("first record: %q, %v", did, err)
	}
	for name, tt := range map[string]struct {
		target deployment.Target
		want   string // "" passes
	}{
		"the same store":             {minio, ""},
		"the same store, other URL":  {sameByAnotherURL, ""},
		"the JetStream object store": {jetstream, "pass --s3"},
		"another S3 server":          {anotherS3, "has no eyeflow deployment marker"},
	} {
		_, _, err := deployment.Check(ctx, env.JS, tt.target)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case tt.want != "" && (!errors.Is(err, deployment.ErrWrongStore) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v, want ErrWrongStore saying %q", name, err, tt.want)
		}
	}
	if _, err := deployment.Record(ctx, kv, anotherS3, "test", false); !errors.Is(err, deployment.ErrWrongStore) || !strings.Contains(err.Error(), "--replace-store") {
		t.Fatalf("recording another store without replace: %v", err)
	}
	rec, _, _ := deployment.ReadStore(ctx, env.JS)

	// A second cluster recording the same store gets the same id (the
	// marker names the store, and is not rewritten).
	okv, err := other.JS.KeyValue(ctx, bus.KVDeployment)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deployment.Record(ctx, okv, sameByAnotherURL, "test", false); err != nil {
		t.Fatal(err)
	}
	orec, _, _ := deployment.ReadStore(ctx, other.JS)
	if orec.ID != rec.ID || rec.ID == "" {
		t.Fatalf("two clusters on one store recorded ids %q and %q", rec.ID, orec.ID)
	}
	if _, _, err := deployment.Check(ctx, env.JS, minio); err != nil {
		t.Fatalf("the first cluster's check after the second recorded the store: %v", err)
	}

	// After a migration.
	if did, err := deployment.Record(ctx, kv, jetstream, "test", true); err != nil || !strings.Contains(did, "replacing the S3 store") {
		t.Fatalf("replace: %q, %v", did, err)
	}
	if _, _, err := deployment.Check(ctx, env.JS, minio); !errors.Is(err, deployment.ErrWrongStore) {
		t.Fatalf("the old store after the replacement: %v", err)
	}
}
