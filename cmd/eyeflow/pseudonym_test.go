package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"eyeflow/internal/deployment"
	"eyeflow/internal/testenv"
	"eyeflow/processors/splitter"
)

// TestBucketsInitRecordsPseudonymKeyOnce: `eyeflow buckets init` gives a new
// deployment its pseudonym key, and a second run keeps it; `split explain`
// keys a patient by its pseudonym under that key, and without a record it
// refuses rather than hash with a default.
func TestBucketsInitRecordsPseudonymKeyOnce(t *testing.T) {
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, 2*time.Minute)
	file := filepath.Join(t.TempDir(), "eye.jpg")
	if err := os.WriteFile(file, []byte("not even an image: explain hashes bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	explain := func() (splitter.Explanation, error) {
		var out, errOut bytes.Buffer
		err := run(ctx, []string{"split", "explain", "--nats", env.URL, "--patient-id", "PAT-4711", "--class", "amd", "--json", file}, &out, &errOut)
		if err != nil {
			return splitter.Explanation{}, err
		}
		var es []splitter.Explanation
		if err := json.Unmarshal(out.Bytes(), &es); err != nil || len(es) != 1 {
			t.Fatalf("explain printed %q: %v", out.String(), err)
		}
		return es[0], nil
	}
	if _, err := explain(); err == nil || !strings.Contains(err.Error(), "eyeflow buckets init") {
		t.Fatalf("explain of a patient without a pseudonym record: %v", err)
	}

	init := func() deployment.PseudonymRecord {
		t.Helper()
		var out bytes.Buffer
		if err := run(ctx, []string{"buckets", "init", "--nats", env.URL, "--notify-arn", "", "--log-level", "error"}, &out, &out); err != nil {
			t.Fatalf("buckets init: %v\n%s", err, out.String())
		}
		rec, ok, err := deployment.ReadPseudonym(ctx, env.JS)
		if err != nil || !ok {
			t.Fatalf("no pseudonym record after buckets init (%v)", err)
		}
		if strings.Contains(out.String(), rec.Key) {
			t.Fatalf("buckets init printed the key:\n%s", out.String())
		}
		return rec
	}
	first := init()
	if first.Scheme != "hmac-sha256" || first.Key == "" {
		t.Fatalf("a new deployment got %v", first)
	}
	if again := init(); again.Key != first.Key {
		t.Fatal("a second buckets init changed the key")
	}
	e, err := explain()
	if err != nil {
		t.Fatal(err)
	}
	rule, _, err := deployment.PseudonymRule(context.Background(), env.JS, splitter.DefaultConfig().Salt)
	if err != nil {
		t.Fatal(err)
	}
	if e.KeyKind != splitter.KeyPatient || e.Key != rule.Of("PAT-4711") {
		t.Fatalf("explain keyed %s %s, want the patient's pseudonym %s", e.KeyKind, e.Key, rule.Of("PAT-4711"))
	}
}
