package pipeline_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"eyeflow/bus"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/schemas"
)

// stageDir is the package that holds each stage's processor.
func stageDir(name string) string {
	if name == schemas.StageIngest {
		return "../ingest"
	}
	return filepath.Join("../processors", name)
}

// reasonValues maps each schemas.Reason* constant to its value, read from
// schemas/reasons.go (constants cannot be reflected).
func reasonValues(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../schemas/reasons.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Values) == len(vs.Names) {
			for i, id := range vs.Names {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(id.Name, "Reason") {
					out[id.Name], _ = strconv.Unquote(lit.Value)
				}
			}
		}
		return true
	})
	if len(out) < 10 {
		t.Fatalf("found only %d reasons in schemas/reasons.go", len(out))
	}
	return out
}

// reasonsUsed are the values of the schemas.Reason* constants a package's
// non-test files refer to.
func reasonsUsed(t *testing.T, dir string, values map[string]string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	var out []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == "schemas" && strings.HasPrefix(sel.Sel.Name, "Reason") {
					if v, ok := values[sel.Sel.Name]; ok && !slices.Contains(out, v) {
						out = append(out, v)
					}
				}
			}
			return true
		})
	}
	return out
}

// TestReasonsAreTheStagesOwn: the dead-letter reasons the catalogue
// declares for a stage are exactly those its package gives, so the
// dashboard and `eyeflow status` list what a stage can really say.
func TestReasonsAreTheStagesOwn(t *testing.T) {
	values := reasonValues(t)
	all := schemas.Reasons()
	for _, st := range pipeline.Stages() {
		t.Run(st.Name, func(t *testing.T) {
			used := reasonsUsed(t, stageDir(st.Name), values)
			for _, r := range used {
				if !slices.Contains(st.Reasons, r) && !slices.Contains(pipeline.RuntimeReasons(), r) {
					t.Errorf("%s gives reason %q, which the catalogue does not declare", stageDir(st.Name), r)
				}
			}
			for _, r := range st.Reasons {
				if !slices.Contains(used, r) {
					t.Errorf("catalogue declares reason %q, which %s never gives", r, stageDir(st.Name))
				}
				if !slices.Contains(all, r) {
					t.Errorf("reason %q is not in schemas.Reasons()", r)
				}
			}
		})
	}
	for name, v := range values {
		if !slices.Contains(all, v) {
			t.Errorf("schemas.%s (%q) is missing from schemas.Reasons()", name, v)
		}
	}
}

// subjectCovers reports whether a stream subject (with wildcards) covers s.
func subjectCovers(pattern, s string) bool {
	p, t := strings.Split(pattern, "."), strings.Split(s, ".")
	for i, tok := range p {
		switch {
		case tok == ">":
			return len(t) > i
		case i >= len(t):
			return false
		case tok != "*" && tok != t[i]:
			return false
		}
	}
	return len(p) == len(t)
}

func stored(subject string) bool {
	for _, sc := range bus.Streams(bus.DefaultOptions()) {
		for _, p := range sc.Subjects {
			if subjectCovers(p, subject) {
				return true
			}
		}
	}
	return false
}

// TestCatalogueIsConsistent: names are unique, every input reads a stream
// of the topology with a filter that stream stores, every published subject
// and dead-letter subject is stored, and every bucket a stage uses exists.
func TestCatalogueIsConsistent(t *testing.T) {
	streams := map[string]bool{}
	for _, sc := range bus.Streams(bus.DefaultOptions()) {
		streams[sc.Name] = true
	}
	kv := map[string]bool{}
	for _, spec := range pipeline.KeyValues() {
		if kv[spec.Bucket] {
			t.Errorf("KV bucket %s declared twice", spec.Bucket)
		}
		kv[spec.Bucket] = true
	}
	names, consumers := map[string]bool{}, map[string]bool{}
	for _, st := range pipeline.Stages() {
		if names[st.Name] {
			t.Errorf("stage %s declared twice", st.Name)
		}
		names[st.Name] = true
		if st.Summary == "" {
			t.Errorf("%s: no summary", st.Name)
		}
		if len(st.Inputs) == 0 {
			t.Errorf("%s reads nothing", st.Name)
		}
		for _, in := range st.Inputs {
			if !streams[in.Stream] {
				t.Errorf("%s reads stream %s, which the topology lacks", st.Name, in.Stream)
			}
			if !stored(in.Filter) {
				t.Errorf("%s filters %s, which no stream stores", st.Name, in.Filter)
			}
			for _, c := range in.Consumers() {
				if consumers[c] {
					t.Errorf("consumer %s declared twice", c)
				}
				consumers[c] = true
				if got := pipeline.OfConsumer(c); got != st.Name {
					t.Errorf("OfConsumer(%s) = %q, want %s", c, got, st.Name)
				}
			}
		}
		for _, s := range append(slices.Clone(st.Publishes), st.DLQ()) {
			if !stored(strings.ReplaceAll(s, "*", "x")) {
				t.Errorf("%s publishes %s, which no stream stores", st.Name, s)
			}
		}
		for _, u := range st.KV {
			if !kv[u.Bucket] {
				t.Errorf("%s uses KV bucket %s, which nobody declares", st.Name, u.Bucket)
			}
		}
		for _, u := range st.Objects {
			if !slices.Contains(objstore.Buckets(), u.Bucket) {
				t.Errorf("%s uses object bucket %s, which is not in objstore.Buckets()", st.Name, u.Bucket)
			}
		}
		for _, s := range st.Scans {
			if !streams[s] {
				t.Errorf("%s scans stream %s, which the topology lacks", st.Name, s)
			}
		}
	}
	for _, s := range schemas.Stages() {
		if !names[s] {
			t.Errorf("schemas stage %s is not in the catalogue", s)
		}
	}
}

// TestTopologyFromTheCatalogue: the applied topology has every declared
// consumer but the optional ones, with the declared settings, and every
// KV bucket, all at the options' replicas.
func TestTopologyFromTheCatalogue(t *testing.T) {
	o := bus.DefaultOptions()
	o.Replicas = 3
	topo := pipeline.Topology(o)
	for _, st := range pipeline.Stages() {
		for _, in := range st.Inputs {
			for _, c := range in.Consumers() {
				spec, ok := topo.Consumer(c)
				if ok == in.Optional {
					t.Errorf("consumer %s: in topology %v, optional %v", c, ok, in.Optional)
				}
				if !ok {
					continue
				}
				if spec.Stream != in.Stream || spec.Config.FilterSubject != in.Filter || spec.Config.Replicas != 3 {
					t.Errorf("consumer %s: %+v", c, spec)
				}
				want := o.MaxAckPending
				if in.MaxAckPending > 0 {
					want = in.MaxAckPending
				}
				if spec.Config.MaxAckPending != want {
					t.Errorf("consumer %s: MaxAckPending %d, want %d", c, spec.Config.MaxAckPending, want)
				}
			}
		}
	}
	if len(topo.KV) != len(pipeline.KeyValues()) {
		t.Errorf("%d KV buckets in the topology, %d declared", len(topo.KV), len(pipeline.KeyValues()))
	}
	for _, kv := range topo.KV {
		if kv.Replicas != 3 {
			t.Errorf("KV %s at %d replicas", kv.Bucket, kv.Replicas)
		}
	}
	if _, ok := pipeline.ConsumerSpec(o, bus.ConsumerLabelsinkPredictions); !ok {
		t.Errorf("the optional labelsink consumer has no spec")
	}
}

// stageImports lists the imports of every non-test Go file in a stage's
// folder and all its subfolders, by file.
func stageImports(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			out[name] = append(out[name], path)
		}
		return nil
	})
	if err != nil || len(out) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	return out
}

// TestStagesStandAlone: a stage's package and its subpackages are plain Go:
// the runtime (package stage) hands them KV buckets, publishers and stream
// readers, and only stage and bus speak NATS. What two stages share lives
// on a floor below both (schemas, models, inference, security/...), so no
// stage imports another.
func TestStagesStandAlone(t *testing.T) {
	stagePkg := map[string]string{}
	for _, st := range pipeline.Stages() {
		stagePkg[st.Name] = "eyeflow/" + strings.TrimPrefix(stageDir(st.Name), "../")
	}
	for _, st := range pipeline.Stages() {
		for file, imports := range stageImports(t, stageDir(st.Name)) {
			for _, path := range imports {
				if strings.HasPrefix(path, "github.com/nats-io/") {
					t.Errorf("%s imports %s: only the runtime speaks NATS", file, path)
				}
				for other, pkg := range stagePkg {
					if other != st.Name && (path == pkg || strings.HasPrefix(path, pkg+"/")) {
						t.Errorf("%s (stage %s) imports stage %s's %s: move what they share below both", file, st.Name, other, path)
					}
				}
			}
		}
	}
}
