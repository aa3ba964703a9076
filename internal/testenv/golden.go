package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

// GoldenDir finds shared/golden (PIL's reference outputs, kept read-only
// outside the repository) by walking up from the working directory, or
// $EYEFLOW_GOLDEN. It fails the test rather than skipping: parity is what
// the golden files are for.
func GoldenDir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("EYEFLOW_GOLDEN"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		c := filepath.Join(dir, "shared", "golden")
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatalf("golden files not found: no shared/golden above %s (expected beside the repository; set EYEFLOW_GOLDEN)", dir)
		}
		dir = parent
	}
}

// GoldenNames are the golden pairs: NAME.jpg and its PIL output NAME.224.png.
func GoldenNames() []string {
	return []string{"amd_0000", "cataract_0000", "diabetic_retinopathy_0000", "glaucoma_0000", "normal_0000"}
}
