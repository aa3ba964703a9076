package schemas

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const regenerate = "run `go generate ./schemas`"

// TestSchemaFilesUpToDate fails when the checked-in JSON Schema files differ
// from what the Go types generate: consumers read the files, producers use the
// types, and the two must not drift apart.
func TestSchemaFilesUpToDate(t *testing.T) {
	want, err := SchemaFiles()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(SchemaDir)
	if err != nil {
		t.Fatalf("%v; %s", err, regenerate)
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
		if _, ok := want[e.Name()]; !ok {
			t.Errorf("%s is not generated from any event in schemas.Events(); %s (it deletes stale *.json) or remove it",
				filepath.Join("schemas", SchemaDir, e.Name()), regenerate)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		gen := want[name]
		path := filepath.Join(SchemaDir, name)
		shown := filepath.Join("schemas", path)
		if !have[name] {
			t.Errorf("%s is missing; %s", shown, regenerate)
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s: %v", shown, err)
			continue
		}
		if !bytes.Equal(got, gen) {
			line, g, w := firstDiff(got, gen)
			t.Errorf("%s is out of date with the Go types; %s\nfirst difference at line %d:\n  file:      %s\n  generated: %s",
				shown, regenerate, line, g, w)
		}
	}
}

// firstDiff finds the first differing line of a and b, 1-based.
func firstDiff(a, b []byte) (line int, la, lb string) {
	as, bs := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(as), len(bs)) {
		la, lb = "<end of file>", "<end of file>"
		if i < len(as) {
			la = as[i]
		}
		if i < len(bs) {
			lb = bs[i]
		}
		if la != lb {
			return i + 1, la, lb
		}
	}
	return 0, "", ""
}

func TestEvents(t *testing.T) {
	// Subjects each event must be publishable on, built from the helpers that
	// publishers call, so Events() cannot drift from subjects.go.
	wantSubjects := map[string][]string{
		"upload":     {SubjectUploads},
		"resized":    {SubjectResized},
		"split":      mapStrings(Splits(), SplitSubject),
		"prediction": mapStrings(Envs(), PredictionSubject),
		"drift":      mapStrings(Envs(), DriftSubject),
		"retrain":    {SubjectRetrain},
		"model":      {SubjectModels},
		"deadletter": mapStrings(Stages(), DLQSubject),
	}
	seen := map[string]bool{}
	for _, e := range Events() {
		t.Run(e.Name, func(t *testing.T) {
			if seen[e.Name] || seen[e.SchemaID] {
				t.Fatalf("duplicate event %s / %s", e.Name, e.SchemaID)
			}
			seen[e.Name], seen[e.SchemaID] = true, true
			if want := "eyeflow." + e.Name + ".v1"; e.SchemaID != want {
				t.Errorf("SchemaID = %q, want %q", e.SchemaID, want)
			}
			if e.Title == "" || e.Publishers == "" || e.Consumers == "" || e.GoType() == "" {
				t.Errorf("incomplete entry: %+v", e)
			}
			if got := e.ConcreteSubjects(); !slices.Equal(got, wantSubjects[e.Name]) {
				t.Errorf("ConcreteSubjects() = %q, want %q", got, wantSubjects[e.Name])
			}
			// Every payload names its own schema in a top-level "schema" field.
			b, err := json.Marshal(e.Value)
			if err != nil {
				t.Fatal(err)
			}
			if e.Name != "upload" && !bytes.Contains(b, []byte(`"schema":""`)) {
				t.Errorf("%s has no top-level \"schema\" field: %s", e.GoType(), b)
			}
		})
	}
	if len(seen) != 2*len(wantSubjects) {
		t.Errorf("Events() lists %d events, want %d", len(seen)/2, len(wantSubjects))
	}
}

func mapStrings(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

// TestREADMEDocumentsContract keeps README.md, the human contract, in step
// with Events(): every schema id, file, Go type and subject must appear.
func TestREADMEDocumentsContract(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	var want []string
	for _, e := range Events() {
		want = append(want, e.SchemaID, SchemaDir+"/"+e.File(), e.GoType())
		want = append(want, e.Subjects...)
	}
	want = append(want, Splits()...)
	want = append(want, Envs()...)
	want = append(want, Stages()...)
	want = append(want, SubjectSplitAll, SubjectPredictionsAll, SubjectDriftAll, SubjectDLQAll, "Nats-Msg-Id", "go generate ./schemas")
	for _, w := range want {
		if !strings.Contains(readme, w) {
			t.Errorf("schemas/README.md does not mention %q", w)
		}
	}
}
