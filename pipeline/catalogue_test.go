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
		for _, v := range reasonsIn(f, values) {
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// reasonsIn are the reasons a file names: schemas.Reason* constants, and
// those of imaging.Reason (the one rule from decode errors to reasons)
// where the file calls it.
func reasonsIn(f ast.Node, values map[string]string) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		x, ok := sel.X.(*ast.Ident)
		switch {
		case ok && x.Name == "schemas" && strings.HasPrefix(sel.Sel.Name, "Reason"):
			if v, ok := values[sel.Sel.Name]; ok {
				out = append(out, v)
			}
		case ok && x.Name == "imaging" && sel.Sel.Name == "Reason":
			out = append(out, imagingReasons(values)...)
		}
		return true
	})
	return out
}

// imagingReasons are the reasons imaging.Reason returns.
func imagingReasons(values map[string]string) []string {
	f, err := parser.ParseFile(token.NewFileSet(), "../imaging/errors.go", nil, 0)
	if err != nil {
		panic(err)
	}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == "Reason" && fn.Recv == nil {
			return reasonsIn(fn.Body, values)
		}
	}
	panic("imaging/errors.go has no func Reason")
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

// TestBind: a processor names its stage, input and env; the catalogue
// answers with the stream and consumer, and refuses what it does not declare.
func TestBind(t *testing.T) {
	tests := []struct {
		stage, input, env string
		want              pipeline.Binding
		err               string
	}{
		{stage: schemas.StageResize, want: pipeline.Binding{Stream: bus.StreamUploads, Consumer: bus.ConsumerResize}},
		{stage: schemas.StageIngest, want: pipeline.Binding{Stream: bus.StreamUploads, Consumer: bus.ConsumerIngestLedger}},
		{stage: schemas.StageClassifier, env: schemas.EnvCanary, want: pipeline.Binding{Stream: bus.StreamSplits, Consumer: bus.ClassifierConsumer(schemas.EnvCanary)}},
		{stage: schemas.StageLabelsink, want: pipeline.Binding{Stream: bus.StreamRetrain, Consumer: bus.ConsumerLabelsink}},
		{stage: schemas.StageLabelsink, input: pipeline.InputPredictions,
			want: pipeline.Binding{Stream: bus.StreamPredictions, Consumer: bus.ConsumerLabelsinkPredictions, Optional: true}},
		{stage: "resizer", err: `no stage "resizer"`},
		{stage: schemas.StageResize, input: "resized", err: `declares no input "resized"`},
		{stage: schemas.StageClassifier, err: "the input is per env"},
		{stage: schemas.StageClassifier, env: "qa", err: `no consumer for env "qa"`},
		{stage: schemas.StageSplitter, env: schemas.EnvProd, err: "the input is per env: false"},
	}
	for _, tt := range tests {
		t.Run(tt.stage+"/"+tt.input+"/"+tt.env, func(t *testing.T) {
			got, err := pipeline.Bind(tt.stage, tt.input, tt.env)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Bind = %+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Bind = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestInputNamesAreUnique: a stage's inputs are told apart by name.
func TestInputNamesAreUnique(t *testing.T) {
	for _, st := range pipeline.Stages() {
		seen := map[string]bool{}
		for _, in := range st.Inputs {
			if seen[in.Name] {
				t.Errorf("stage %s has two inputs named %q", st.Name, in.Name)
			}
			seen[in.Name] = true
		}
	}
}

// TestProcessorsNameNoConsumer: a stage's code names its stage and input,
// and the runtime binds the stream and consumer from the catalogue; a
// stage.Processor literal that sets Stream or Consumer, or any use of a
// durable consumer's name, restates the catalogue and fails here.
func TestProcessorsNameNoConsumer(t *testing.T) {
	for _, st := range pipeline.Stages() {
		for file := range stageImports(t, stageDir(st.Name)) {
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CompositeLit:
					if !isStageProcessor(n.Type) {
						return true
					}
					for _, el := range n.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok {
							if k, ok := kv.Key.(*ast.Ident); ok && (k.Name == "Stream" || k.Name == "Consumer") {
								t.Errorf("%s: a stage.Processor sets %s: name the input (Input, Env) and let the catalogue bind it", file, k.Name)
							}
						}
					}
				case *ast.SelectorExpr:
					if x, ok := n.X.(*ast.Ident); ok && x.Name == "bus" &&
						(strings.HasPrefix(n.Sel.Name, "Consumer") || n.Sel.Name == "ClassifierConsumer") {
						t.Errorf("%s: names the consumer bus.%s: take it from the catalogue (pipeline.Bind)", file, n.Sel.Name)
					}
				}
				return true
			})
		}
	}
}

// isStageProcessor tells whether a literal's type is stage.Processor[...].
func isStageProcessor(e ast.Expr) bool {
	if ix, ok := e.(*ast.IndexExpr); ok {
		e = ix.X
	}
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	x, ok := sel.X.(*ast.Ident)
	return ok && x.Name == "stage" && sel.Sel.Name == "Processor"
}
