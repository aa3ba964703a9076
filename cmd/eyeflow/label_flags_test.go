package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAnnotatorsFromFileAndEnvironment: annotators come from a file of
// name:token lines and from $EYEFLOW_LABEL_ANNOTATORS; bad entries are
// refused with where they came from, and never echo a token.
func TestAnnotatorsFromFileAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "annotators")
	if err := os.WriteFile(file, []byte("# clinic staff\nalice: aaaaaaaaaaaaaaaa1\n\nbob:bbbbbbbbbbbbbbbb2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := dashboardFlags{window: 10, annotators: "carol:cccccccccccccccc3", annotatorsFile: file}
	if err := f.validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"alice": "aaaaaaaaaaaaaaaa1", "bob": "bbbbbbbbbbbbbbbb2", "carol": "cccccccccccccccc3"}
	if len(f.annotatorTokens) != len(want) {
		t.Fatalf("annotators %v", f.annotatorTokens)
	}
	for k, v := range want {
		if f.annotatorTokens[k] != v {
			t.Errorf("annotator %s: %q, want %q", k, f.annotatorTokens[k], v)
		}
	}
	for _, bad := range []string{"alice:short", "no-colon-here-at-all", "al ice:aaaaaaaaaaaaaaaa1", "alice:aaaaaaaaaaaaaaaa1,alice:aaaaaaaaaaaaaaaa2"} {
		f := dashboardFlags{window: 10, annotators: bad}
		err := f.validate()
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "aaaaaaaaaaaaaaaa") {
			t.Errorf("%q: error shows the token: %v", bad, err)
		}
	}
}
