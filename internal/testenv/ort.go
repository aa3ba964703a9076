package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	ortOnce sync.Once
	ortPath string
	ortErr  error
)

// ORTLibrary returns the path of the ONNX Runtime shared library the
// classifier tests load: $EYEFLOW_ORT_LIB when set, else what
// scripts/install-ort.sh prints (it fetches the library once into a cache).
// A missing library fails the test: it is never skipped.
func ORTLibrary(t testing.TB) string {
	t.Helper()
	ortOnce.Do(func() {
		if p := os.Getenv("EYEFLOW_ORT_LIB"); p != "" {
			ortPath, ortErr = p, checkFile(p, "$EYEFLOW_ORT_LIB")
			return
		}
		root, err := repoRoot()
		if err != nil {
			ortErr = err
			return
		}
		script := filepath.Join(root, "scripts", "install-ort.sh")
		var stdout, stderr bytes.Buffer
		cmd := exec.Command("bash", script)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			ortErr = fmt.Errorf("%s: %v\n%s", script, err, tail(stderr.Bytes(), 4096))
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		ortPath = strings.TrimSpace(lines[len(lines)-1])
		ortErr = checkFile(ortPath, script)
	})
	if ortErr != nil {
		t.Fatalf("testenv: ONNX Runtime library: %v", ortErr)
	}
	return ortPath
}

func checkFile(path, from string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s gave %q: %w", from, path, err)
	}
	if st.IsDir() || st.Size() == 0 {
		return fmt.Errorf("%s gave %q, which is not a library file", from, path)
	}
	return nil
}
