package ingest_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"eyeflow/ingest"
	"eyeflow/security/objkey"
)

// TestPlanRefusesHostileKeys: `eyeflow put` turns local paths, a class and
// a prefix into object keys. File names are bytes on Linux, so a folder can
// hold names that are not UTF-8 or carry control characters; a class or
// prefix given on the command line can try to climb out of its folder.
// Each is refused with ErrBadKey and the offending path, before any upload;
// everything accepted stays under the prefix.
func TestPlanRefusesHostileKeys(t *testing.T) {
	write := func(t *testing.T, path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		files []string // relative to the root folder
		arg   string   // what is passed to Plan: "" for the root folder
		opts  ingest.PutOptions
		ok    bool
	}{
		{"good tree", []string{"amd/a.jpg", "normal/b c+d.jpg"}, "", ingest.PutOptions{Prefix: "in"}, true},
		{"control character in a file name", []string{"amd/a\x1b[2J.jpg"}, "", ingest.PutOptions{}, false},
		{"newline in a folder name", []string{"am\nd/a.jpg"}, "", ingest.PutOptions{}, false},
		{"invalid utf-8 file name", []string{"amd/\xff\xfe.jpg"}, "", ingest.PutOptions{}, false},
		{"long file name path", []string{strings.Repeat("d", 200) + "/" + strings.Repeat("e", 200) + "/" + strings.Repeat("f", 200) + "/" + strings.Repeat("g", 200) + "/" + strings.Repeat("h", 240) + ".jpg"}, "", ingest.PutOptions{}, false},
		{"class with traversal", []string{"a.jpg"}, "a.jpg", ingest.PutOptions{Class: "../models"}, false},
		{"class with backslash", []string{"a.jpg"}, "a.jpg", ingest.PutOptions{Class: `..\x`}, false},
		{"class with slash", []string{"a.jpg"}, "a.jpg", ingest.PutOptions{Class: "amd/x"}, false},
		{"prefix with traversal", []string{"amd/a.jpg"}, "", ingest.PutOptions{Prefix: "in/../../out"}, false},
		{"absolute-looking prefix is a folder", []string{"amd/a.jpg"}, "", ingest.PutOptions{Prefix: "/in/"}, true},
		{"good single file with class", []string{"a.jpg"}, "a.jpg", ingest.PutOptions{Class: "amd", Prefix: "p"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tt.files {
				write(t, filepath.Join(root, f))
			}
			arg := root
			if tt.arg != "" {
				arg = filepath.Join(root, tt.arg)
			}
			files, err := ingest.Plan([]string{arg}, tt.opts)
			if !tt.ok {
				if !errors.Is(err, objkey.ErrBadKey) {
					t.Fatalf("Plan = %v, %v; want an ErrBadKey error", files, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != len(tt.files) {
				t.Fatalf("planned %v", files)
			}
			for _, f := range files {
				if err := objkey.Under(tt.opts.Prefix, f.Key); err != nil {
					t.Errorf("key %q: %v", f.Key, err)
				}
			}
		})
	}
}
