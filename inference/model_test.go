package inference

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"eyeflow/internal/nice"
	"eyeflow/internal/testenv"
	"eyeflow/internal/tinytest"
	"eyeflow/models"
	"eyeflow/onnx"
)

// initORT initialises ONNX Runtime once for the test binary.
func initORT(t testing.TB) {
	t.Helper()
	if err := InitRuntime(testenv.ORTLibrary(t)); err != nil {
		t.Fatalf("init onnxruntime: %v", err)
	}
}

var (
	denseOnce  sync.Once
	denseFiles models.ModelFiles
)

// denseNet synthesises DenseNet121 once per test binary (about 30 MB).
func denseNet(t testing.TB) models.ModelFiles {
	denseOnce.Do(func() {
		var err error
		denseFiles, err = models.Synthesize(models.SynthOptions{Arch: models.ArchDenseNet121})
		if err != nil {
			t.Fatalf("synthesize: %v", err)
		}
	})
	return denseFiles
}

func TestDenseNet121LoadsWithExpectedShapes(t *testing.T) {
	initORT(t)
	f := denseNet(t)
	m, err := LoadModel(f, SessionOptions{IntraOpThreads: 2})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer m.Close()
	if m.Provider != ProviderCPU {
		t.Errorf("provider %q, want %q", m.Provider, ProviderCPU)
	}
	ins, outs, err := ioInfo(f.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) != 1 || ins[0].Name != "input" || ins[0].Dimensions[0] != -1 || ins[0].Dimensions[1] != 3 || ins[0].Dimensions[2] != 224 || ins[0].Dimensions[3] != 224 {
		t.Errorf("inputs %v, want one [-1,3,224,224] \"input\"", ins)
	}
	if len(outs) != 1 || outs[0].Name != "output" || len(outs[0].Dimensions) != 2 || outs[0].Dimensions[0] != -1 || outs[0].Dimensions[1] != 15 {
		t.Errorf("outputs %v, want one [-1,15] \"output\"", outs)
	}
	// Softmax makes any row sum to 1; what the batch must get right is
	// which row belongs to which image. Each image alone and the three in
	// one batch give the same answers, and different images differ.
	imgs := [][]byte{tinytest.Solid(0, 100, 200), asymmetricImage(), tinytest.Solid(80, 100, 200)}
	batch, err := m.Run(imgs)
	if err != nil {
		t.Fatalf("run a batch of %d: %v", len(imgs), err)
	}
	if len(batch) != len(imgs) {
		t.Fatalf("batch of %d gave %d rows", len(imgs), len(batch))
	}
	for i, img := range imgs {
		alone, err := m.Run([][]byte{img})
		if err != nil {
			t.Fatal(err)
		}
		if len(alone[0]) != 15 {
			t.Fatalf("image %d: %d probabilities, want 15", i, len(alone[0]))
		}
		for k, p := range alone[0] {
			if math.IsNaN(p) || math.Abs(p-batch[i][k]) > 1e-5 {
				t.Fatalf("image %d class %d: %v alone, %v in the batch", i, k, p, batch[i][k])
			}
		}
		if i > 0 && maxAbsDiff(batch[i], batch[i-1]) < 1e-4 {
			t.Fatalf("images %d and %d got the same answer %v", i-1, i, batch[i])
		}
	}
}

func maxAbsDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

func TestTinyModelExact(t *testing.T) {
	initORT(t)
	for _, probs := range []bool{false, true} {
		f, err := models.Synthesize(models.SynthOptions{Arch: models.ArchTiny, Probabilities: probs})
		if err != nil {
			t.Fatal(err)
		}
		m, err := LoadModel(f, SessionOptions{IntraOpThreads: 1})
		if err != nil {
			t.Fatalf("load (probabilities=%v): %v", probs, err)
		}
		colours := tinytest.Colours()
		imgs := make([][]byte, len(colours))
		for i, c := range colours {
			imgs[i] = tinytest.Solid(c[0], c[1], c[2])
		}
		got, err := m.Run(imgs)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		var low, high bool
		for i, c := range colours {
			want := tinytest.Expect(c)
			if tinytest.Argmax(got[i]) != tinytest.Argmax(want) {
				t.Errorf("colour %v: class %d, want %d", c, tinytest.Argmax(got[i]), tinytest.Argmax(want))
			}
			for k := range want {
				if math.Abs(got[i][k]-want[k]) > 2e-4 { // float32 accumulation in ORT
					t.Errorf("colour %v class %d: p=%v, want %v", c, k, got[i][k], want[k])
					break
				}
			}
			conf := want[tinytest.Argmax(want)]
			low = low || conf < 0.5
			high = high || conf > 0.8
		}
		if !low || !high {
			t.Errorf("test colours should span confidences below 0.5 and above 0.8 (low=%v high=%v)", low, high)
		}
	}
}

func TestLoadRefusesMismatches(t *testing.T) {
	initORT(t)
	good := tinytest.Model(t, "v1")
	var labels []string
	if err := json.Unmarshal(good.Labels, &labels); err != nil {
		t.Fatal(err)
	}
	mutateCard := func(fn func(*models.Card)) []byte {
		var c models.Card
		if err := json.Unmarshal(good.Card, &c); err != nil {
			t.Fatal(err)
		}
		fn(&c)
		b, _ := json.Marshal(c)
		return b
	}
	labelsJSON := func(l []string) []byte { b, _ := json.Marshal(l); return b }
	swapped := append([]string(nil), labels...)
	swapped[0], swapped[1] = swapped[1], swapped[0]

	cases := []struct {
		name string
		f    models.ModelFiles
		want string
	}{
		{"fewer labels", models.ModelFiles{ONNX: good.ONNX, Labels: labelsJSON(labels[:14]), Card: mutateCard(func(c *models.Card) { c.Labels = 14 })}, "has 15 classes, labels.json has 14"},
		{"card label count", models.ModelFiles{ONNX: good.ONNX, Labels: good.Labels, Card: mutateCard(func(c *models.Card) { c.Labels = 16 })}, "model.json says 16 labels"},
		{"unsorted labels", models.ModelFiles{ONNX: good.ONNX, Labels: labelsJSON(swapped), Card: good.Card}, "ImageFolder order"},
		{"wrong input name", models.ModelFiles{ONNX: good.ONNX, Labels: good.Labels, Card: mutateCard(func(c *models.Card) { c.Input.Name = "pixels" })}, `graph input is "input", model.json says "pixels"`},
		{"card input shape", models.ModelFiles{ONNX: good.ONNX, Labels: good.Labels, Card: mutateCard(func(c *models.Card) { c.Input.Shape = []int64{-1, 3, 299, 299} })}, "input.shape"},
		{"output kind", models.ModelFiles{ONNX: good.ONNX, Labels: good.Labels, Card: mutateCard(func(c *models.Card) { c.Output.Kind = "scores" })}, "output.kind"},
		// Refused by the pure-Go protobuf walk, before ONNX Runtime parses it.
		{"not onnx", models.ModelFiles{ONNX: []byte("not a model"), Labels: good.Labels, Card: good.Card}, "onnx: malformed model"},
		{"graph input 299", models.ModelFiles{ONNX: wrongInputGraph(), Labels: good.Labels, Card: good.Card}, "want [N, 3, 224, 224]"},
		// The card's output kind, checked on the probe images.
		{"logits declared probabilities", models.ModelFiles{ONNX: onnx.Tiny(15, false), Labels: good.Labels, Card: mutateCard(func(c *models.Card) { c.Output.Kind = models.OutputProbabilities })},
			`declares output "output" as probabilities, but on probe image 0 it has a negative value`},
		{"sigmoid declared probabilities", models.ModelFiles{ONNX: sigmoidGraph(15), Labels: good.Labels, Card: mutateCard(func(c *models.Card) { c.Output.Kind = models.OutputProbabilities })},
			"not 1 within 0.001"},
		{"softmax declared logits", models.ModelFiles{ONNX: onnx.Tiny(15, true), Labels: good.Labels, Card: mutateCard(func(c *models.Card) { c.Output.Kind = models.OutputLogits })},
			`declares output "output" as logits, but on every probe image it is non-negative and sums to 1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := LoadModel(tc.f, SessionOptions{IntraOpThreads: 1})
			if err == nil {
				m.Close()
				t.Fatal("loaded, want refusal")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// wrongInputGraph is the tiny model with a 299x299 input.
func wrongInputGraph() []byte {
	g := onnx.Graph{
		Name:    "wrong",
		Inputs:  []onnx.ValueInfo{{Name: "input", Shape: []onnx.Dim{{Param: "N"}, {Value: 3}, {Value: 299}, {Value: 299}}}},
		Outputs: []onnx.ValueInfo{{Name: "output", Shape: []onnx.Dim{{Param: "N"}, {Value: 3}}}},
		Nodes:   []onnx.Node{{Op: "ReduceMean", Inputs: []string{"input"}, Outputs: []string{"output"}, Attrs: []onnx.Attr{onnx.AInts("axes", 2, 3), onnx.AInt("keepdims", 0)}}},
	}
	return g.Encode()
}

// sigmoidGraph outputs sigmoid(mean colour x W): non-negative scores that
// do not sum to 1, which a card must not call probabilities.
func sigmoidGraph(classes int) []byte {
	w := make([]float32, 3*classes)
	for i := range w {
		w[i] = float32(i%7-3) / 4
	}
	g := onnx.Graph{
		Name:         "sigmoid",
		Inputs:       []onnx.ValueInfo{{Name: "input", Shape: []onnx.Dim{{Param: "N"}, {Value: 3}, {Value: 224}, {Value: 224}}}},
		Outputs:      []onnx.ValueInfo{{Name: "output", Shape: []onnx.Dim{{Param: "N"}, {Value: int64(classes)}}}},
		Initializers: []onnx.Tensor{{Name: "W", Dims: []int64{3, int64(classes)}, Floats: w}},
		Nodes: []onnx.Node{
			{Op: "ReduceMean", Inputs: []string{"input"}, Outputs: []string{"mean"}, Attrs: []onnx.Attr{onnx.AInts("axes", 2, 3), onnx.AInt("keepdims", 0)}},
			{Op: "MatMul", Inputs: []string{"mean", "W"}, Outputs: []string{"scores"}},
			{Op: "Sigmoid", Inputs: []string{"scores"}, Outputs: []string{"output"}},
		},
	}
	return g.Encode()
}

// TestProbeImagesDiffer: the probes are distinct full-size images (honest
// cards still load: TestTinyModelExact loads the tiny model as either kind,
// TestDenseNet121LoadsWithExpectedShapes DenseNet121's logits).
func TestProbeImagesDiffer(t *testing.T) {
	p := ProbeImages()
	if len(p) < 2 {
		t.Fatalf("%d probe images, want several", len(p))
	}
	for i := range p {
		if len(p[i]) != ImageBytes {
			t.Fatalf("probe %d has %d bytes", i, len(p[i]))
		}
		for j := range i {
			if string(p[i]) == string(p[j]) {
				t.Errorf("probe images %d and %d are equal", i, j)
			}
		}
	}
}

// With Nice, CPU runs execute on threads of lower priority, and so do the
// intra-op threads ONNX Runtime starts for the session; the answers are the
// same, and the next model reuses the run threads.
func TestCPURunsOnLoweredThreads(t *testing.T) {
	initORT(t)
	before, err := nice.Threads()
	if err != nil {
		t.Fatal(err)
	}
	// The process's own level is where most threads are; the increment is
	// one that leads to a level no thread is at yet (threads of earlier
	// pools are kept).
	base := 0
	for n, c := range before {
		if c > before[base] {
			base = n
		}
	}
	increment := 0
	for inc := 1; base+inc <= nice.Max; inc++ {
		if before[base+inc] == 0 {
			increment = inc
			break
		}
	}
	if increment == 0 {
		t.Fatalf("no free nice level above %d: %v", base, before)
	}
	level := base + increment
	m, err := LoadModel(tinytest.Model(t, "1"), SessionOptions{Device: Device{Kind: "cpu"}, IntraOpThreads: 2, ParallelRuns: 2, Nice: increment})
	if err != nil {
		t.Fatal(err)
	}
	// Two run threads, and ONNX Runtime's second intra-op thread.
	after, err := nice.Threads()
	if err != nil {
		t.Fatal(err)
	}
	if after[level] < 3 {
		t.Errorf("%d threads at nice %d with the model loaded (%v), want at least 3: two runs and ONNX Runtime's intra-op thread", after[level], level, after)
	}
	for _, c := range tinytest.Colours()[:4] {
		got, err := m.Run([][]byte{tinytest.Solid(c[0], c[1], c[2])})
		if err != nil {
			t.Fatal(err)
		}
		want := tinytest.Expect(c)
		for k := range want {
			if math.Abs(got[0][k]-want[k]) > 2e-4 { // float32 accumulation in ORT
				t.Fatalf("colour %v class %d: %g, want %g", c, k, got[0][k], want[k])
			}
		}
	}
	m.Close()
	// The run threads are kept for the next model (a promotion swaps
	// sessions); ONNX Runtime's intra-op thread goes with its session.
	again, err := LoadModel(tinytest.Model(t, "2"), SessionOptions{Device: Device{Kind: "cpu"}, IntraOpThreads: 2, ParallelRuns: 2, Nice: increment})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.Run([][]byte{tinytest.Solid(1, 2, 3)}); err != nil {
		t.Fatal(err)
	}
	if counts, err := nice.Threads(); err != nil || counts[level] != after[level] {
		t.Errorf("threads at nice %d with the second model: %v (%v), want %d as with the first", level, counts, err, after[level])
	}
}

// A priority the threads cannot take is noted, not fatal: the model runs at
// the process's own.
func TestCPURunsWithoutLoweredThreads(t *testing.T) {
	initORT(t)
	m, err := LoadModel(tinytest.Model(t, "1"), SessionOptions{Device: Device{Kind: "cpu"}, IntraOpThreads: 1, ParallelRuns: 1, Nice: nice.Max + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !slices.ContainsFunc(m.Notes, func(n string) bool { return strings.Contains(n, "keep the process's priority") }) {
		t.Errorf("notes %q, want one saying the runs keep the process's priority", m.Notes)
	}
	if _, err := m.Run([][]byte{tinytest.Solid(1, 2, 3)}); err != nil {
		t.Fatal(err)
	}
}
