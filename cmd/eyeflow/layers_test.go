package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoEnvironmentReadsBelowCmd: settings reach library code as flags and
// config the commands validate at start; only the commands (and the
// benchmarks' and tests' own mains) read the environment. os.Environ stays
// allowed: it hands a child process its parent's environment, reading
// nothing for itself.
func TestNoEnvironmentReadsBelowCmd(t *testing.T) {
	reads := map[string]bool{"Getenv": true, "LookupEnv": true, "ExpandEnv": true, "UserHomeDir": true}
	allowed := []string{"cmd/", "bench/", "e2e/", "internal/testenv/", "deploy/helm/check/"}
	root := "../.."
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		for _, a := range allowed {
			if strings.HasPrefix(rel, a) {
				return nil
			}
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "os" && reads[sel.Sel.Name] {
					t.Errorf("%s reads the environment (os.%s): take the setting as a flag in cmd/ and pass it in", rel, sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("only %d files checked: is the walk rooted at the repository?", checked)
	}
}
