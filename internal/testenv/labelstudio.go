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
	lsOnce sync.Once
	lsDir  string
	lsErr  error
)

// LabelStudioBundle returns the directory holding Label Studio's editor
// bundle (main.js, main.css) the dashboard's Label page serves:
// $EYEFLOW_LABEL_STUDIO_DIR when set, else what
// scripts/install-label-studio.sh prints (it fetches the bundle once into a
// cache). A missing bundle fails the test: it is never skipped.
func LabelStudioBundle(t testing.TB) string {
	t.Helper()
	lsOnce.Do(func() {
		if p := os.Getenv("EYEFLOW_LABEL_STUDIO_DIR"); p != "" {
			lsDir, lsErr = p, checkBundle(p, "$EYEFLOW_LABEL_STUDIO_DIR")
			return
		}
		root, err := repoRoot()
		if err != nil {
			lsErr = err
			return
		}
		script := filepath.Join(root, "scripts", "install-label-studio.sh")
		var stdout, stderr bytes.Buffer
		cmd := exec.Command("bash", script)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			lsErr = fmt.Errorf("%s: %v\n%s", script, err, tail(stderr.Bytes(), 4096))
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		lsDir = strings.TrimSpace(lines[len(lines)-1])
		lsErr = checkBundle(lsDir, script)
	})
	if lsErr != nil {
		t.Fatalf("testenv: Label Studio bundle: %v", lsErr)
	}
	return lsDir
}

func checkBundle(dir, from string) error {
	for _, f := range []string{"main.js", "main.css"} {
		if err := checkFile(filepath.Join(dir, f), from); err != nil {
			return err
		}
	}
	return nil
}
