package splitter_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"iter"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"eyeflow/objstore"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
)

// listStore serves List from a fixed set of keys; nothing else is used.
type listStore struct {
	objstore.Store
	keys []string
}

func (s listStore) List(ctx context.Context, bucket, prefix string) iter.Seq2[objstore.Info, error] {
	return func(yield func(objstore.Info, error) bool) {
		for _, k := range s.keys {
			if strings.HasPrefix(k, prefix) && !yield(objstore.Info{Bucket: bucket, Key: k}, nil) {
				return
			}
		}
	}
}

func TestReportCountsAndProblems(t *testing.T) {
	p := "transformed_eye_dataset/"
	tests := []struct {
		name     string
		keys     []string
		counts   map[string]map[string]int
		images   int
		other    int
		problems []string
	}{
		{
			name: "consistent",
			keys: []string{
				p + "train/amd/a1.png", p + "train/amd/a2.png", p + "test/amd/a3.png", p + "holdout_2/amd/a3.png",
				p + "train/normal/n1.png", p + "test/normal/n2.png", p + "holdout_3/normal/n2.png",
				"resized/a1.png", // outside the prefix: not listed
			},
			counts: map[string]map[string]int{
				"amd":    {"train": 2, "test": 1, "holdout_1": 0, "holdout_2": 1, "holdout_3": 0},
				"normal": {"train": 1, "test": 1, "holdout_1": 0, "holdout_2": 0, "holdout_3": 1},
			},
			images:   5,
			problems: []string{},
		},
		{
			name: "broken",
			keys: []string{
				p + "test/amd/x.png",                                                       // in no holdout
				p + "test/amd/y.png", p + "holdout_1/amd/y.png", p + "holdout_2/amd/y.png", // in two
				p + "holdout_3/amd/z.png",                                                    // not in test
				p + "train/amd/w.png", p + "test/normal/w.png", p + "holdout_1/normal/w.png", // leakage across classes
				p + "train/amd/notes.txt", p + "README.md", p + "unlabeled/amd/q.png",
			},
			counts: map[string]map[string]int{
				"amd":    {"train": 1, "test": 2, "holdout_1": 1, "holdout_2": 1, "holdout_3": 1},
				"normal": {"train": 0, "test": 1, "holdout_1": 1, "holdout_2": 0, "holdout_3": 0},
			},
			images: 4,
			other:  3,
			problems: []string{
				"amd/x: test image in 0 holdouts [], want exactly one",
				"amd/y: test image in 2 holdouts [holdout_1 holdout_2], want exactly one",
				"amd/z: in [holdout_3] but not in test",
				"image w is in train and in test (amd/train, normal/test, normal/holdout_1): leakage",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := splitter.Report(context.Background(), listStore{keys: tt.keys}, "processed", "/transformed_eye_dataset/")
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]map[string]int{}
			for _, c := range r.Classes {
				got[c.Class] = c.Counts
			}
			if !reflect.DeepEqual(got, tt.counts) || r.Images != tt.images || r.Other != tt.other || !reflect.DeepEqual(r.Problems, tt.problems) {
				t.Fatalf("report %+v\nwant counts %v, %d images, %d other, problems %q", r, tt.counts, tt.images, tt.other, tt.problems)
			}
			// JSON carries the same numbers, with every folder present.
			var buf bytes.Buffer
			if err := r.WriteJSON(&buf); err != nil {
				t.Fatal(err)
			}
			var back splitter.DatasetReport
			if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, r) || len(back.Total) != len(splitter.DatasetDirs()) {
				t.Fatalf("JSON round trip %+v, want %+v", back, r)
			}
			buf.Reset()
			if err := r.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			text := buf.String()
			for _, want := range append([]string{"class", "holdout_3", "total"}, tt.problems...) {
				if !strings.Contains(text, want) {
					t.Errorf("text report lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

func TestExplain(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i, content := range []string{"first fundus", "second fundus", "first fundus"} {
		f := filepath.Join(dir, "eye"+string(rune('a'+i))+".jpg")
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	a := mustAssigner(t, defaultConfig())
	idOf := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	tests := []struct {
		name, class, patient string
	}{
		{"labelled", "amd", ""},
		{"unlabeled", "", ""},
		{"patient", "glaucoma", "p-7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := splitter.Explain(a, splitter.DefaultPrefix, files, tt.class, tt.patient)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range es {
				content := []string{"first fundus", "second fundus", "first fundus"}[i]
				if e.ImageID != idOf(content) {
					t.Fatalf("%s: image id %s, want sha256 of the bytes", e.File, e.ImageID)
				}
				key := splitter.Key{Kind: splitter.KeyContent, Value: e.ImageID}
				if tt.patient != "" {
					key = splitter.Key{Kind: splitter.KeyPatient, Value: tt.patient}
				}
				want := a.Assign(key, tt.class)
				if e.Split != want.Split || e.Holdout != want.Holdout || e.Hash != want.Hash || e.Would != want.Would || e.KeyKind != key.Kind {
					t.Fatalf("%s: %+v, want %+v", e.File, e, want)
				}
				if tt.class == "" && (e.Split != schemas.SplitUnlabeled || len(e.Paths) != 0) {
					t.Fatalf("unlabeled file explained as %+v", e)
				}
				if tt.class != "" && len(e.Paths) != len(want.Dirs()) {
					t.Fatalf("%s: paths %v for dirs %v", e.File, e.Paths, want.Dirs())
				}
			}
			// Identical bytes under two names: the same answer.
			if es[0].Split != es[2].Split || es[0].Hash != es[2].Hash {
				t.Fatalf("duplicate files explained differently: %+v vs %+v", es[0], es[2])
			}
			var buf bytes.Buffer
			if err := splitter.WriteExplanations(&buf, es); err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if !strings.Contains(buf.String(), e.Hash) || !strings.Contains(buf.String(), e.File) {
					t.Fatalf("output lacks %s or its hash:\n%s", e.File, buf.String())
				}
			}
		})
	}
	if _, err := splitter.Explain(a, splitter.DefaultPrefix, []string{filepath.Join(dir, "missing.jpg")}, "", ""); err == nil {
		t.Fatal("a missing file was explained")
	}
	if _, err := splitter.Explain(a, splitter.DefaultPrefix, files, "a/b", ""); err == nil {
		t.Fatal("a class with a slash was accepted")
	}
}
