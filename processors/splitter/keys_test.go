package splitter_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"eyeflow/processors/splitter"
	"eyeflow/security/objkey"
)

// TestExplainKeysStayUnderPrefix: `eyeflow split explain` names the dataset
// keys of local files. Classes that would climb out of the dataset folder
// (dot segments, separators, encoded dots, control characters, invalid
// UTF-8) are refused; for accepted ones every path stays under the prefix.
func TestExplainKeysStayUnderPrefix(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a b\x01.jpg") // the local name never becomes a key
	if err := os.WriteFile(file, []byte("image bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := splitter.NewAssigner(defaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "transformed_eye_dataset/"
	for _, tt := range []struct {
		class string
		ok    bool
	}{
		{"amd", true},
		{"", true},
		{"diabetic retinopathy", true},
		{"..", false},
		{"../../models", false},
		{`..\..\models`, false},
		{"a/b", false},
		{"%2e%2e", false},
		{"a\nb", false},
		{"\xff", false},
		{strings.Repeat("c", 300), false},
	} {
		es, err := splitter.Explain(a, prefix, []string{file}, tt.class, "")
		if !tt.ok {
			if err == nil {
				t.Errorf("class %q accepted: %+v", tt.class, es)
			}
			continue
		}
		if err != nil {
			t.Fatalf("class %q: %v", tt.class, err)
		}
		for _, p := range es[0].Paths {
			if err := objkey.Under(prefix, p); err != nil {
				t.Errorf("class %q: path %q: %v", tt.class, p, err)
			}
		}
	}
}
