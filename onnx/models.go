package onnx

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Input and output names of the synthetic models, as torch.onnx.export
// writes them when told input_names=["input"], output_names=["output"].
const (
	InputName  = "input"
	OutputName = "output"
	// BatchParam names the dynamic batch axis.
	BatchParam = "batch"
)

// ImageSize is the side of the square model input.
const ImageSize = 224

func ioInfo(classes int) ([]ValueInfo, []ValueInfo) {
	in := []ValueInfo{{Name: InputName, Shape: []Dim{{Param: BatchParam}, {Value: 3}, {Value: ImageSize}, {Value: ImageSize}}}}
	out := []ValueInfo{{Name: OutputName, Shape: []Dim{{Param: BatchParam}, {Value: int64(classes)}}}}
	return in, out
}

// builder accumulates nodes and initializers with unique names.
type builder struct {
	g   Graph
	rng *rand.Rand
}

func (b *builder) node(op, name string, inputs []string, attrs ...Attr) string {
	out := name + "_out"
	b.g.Nodes = append(b.g.Nodes, Node{Op: op, Name: name, Inputs: inputs, Outputs: []string{out}, Attrs: attrs})
	return out
}

func (b *builder) init(name string, dims []int64, data []float32) string {
	b.g.Initializers = append(b.g.Initializers, Tensor{Name: name, Dims: dims, Floats: data})
	return name
}

// uniform returns n values in [-bound, bound).
func (b *builder) uniform(n int, bound float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((b.rng.Float64()*2 - 1) * bound)
	}
	return out
}

// conv adds a bias-free convolution (as in torchvision's DenseNet) with
// torchvision's initialisation, Kaiming-normal (fan-in, gain sqrt 2): it keeps
// activations at unit scale through 121 layers, and its pooled features carry
// more of an image's structure than He-uniform weights did (BENCHMARKS.md,
// "Trainer").
func (b *builder) conv(name, x string, cin, cout, k, stride, pad int64) string {
	fanIn := float64(cin * k * k)
	w := b.init(name+".weight", []int64{cout, cin, k, k}, b.normal(int(cout*cin*k*k), math.Sqrt(2/fanIn)))
	return b.node("Conv", name, []string{x, w},
		AInts("kernel_shape", k, k), AInts("strides", stride, stride), AInts("pads", pad, pad, pad, pad))
}

// normal returns n values drawn from N(0, std^2).
func (b *builder) normal(n int, std float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(b.rng.NormFloat64() * std)
	}
	return out
}

// bn adds a BatchNormalization in inference form as torchvision initialises
// it: scale 1, shift 0, running mean 0 and variance 1.
func (b *builder) bn(name, x string, c int64) string {
	n := int(c)
	scale := b.init(name+".weight", []int64{c}, filled(n, 1))
	bias := b.init(name+".bias", []int64{c}, filled(n, 0))
	mean := b.init(name+".running_mean", []int64{c}, filled(n, 0))
	variance := b.init(name+".running_var", []int64{c}, filled(n, 1))
	return b.node("BatchNormalization", name, []string{x, scale, bias, mean, variance}, AFloat("epsilon", 1e-5))
}

func (b *builder) relu(name, x string) string { return b.node("Relu", name, []string{x}) }

// DenseNetFeatures is the width of DenseNet121's pooled features: the
// input of its classifier.
const DenseNetFeatures = 1024

// FeaturesName is the output of a features-only graph.
const FeaturesName = "features"

// Head is a linear classifier on the pooled features: logits = W f + B, with
// W row-major [classes][DenseNetFeatures].
type Head struct {
	W, B []float32
}

// DenseNetOptions select a DenseNet121 graph. The backbone (every weight
// before the classifier) depends on Seed alone, so a features-only graph and
// graphs with different heads share it bit for bit.
type DenseNetOptions struct {
	Classes int
	Seed    uint64
	// Head replaces the random classifier (its rows set Classes).
	Head *Head
	// FeaturesOnly ends the graph at the pooled features: output
	// "features" [N, 1024] instead of "output".
	FeaturesOnly bool
}

// DenseNet121 returns torchvision's densenet121(num_classes=classes) graph
// (growth 32, bn_size 4, blocks of 6/12/24/16 layers, 64 initial features)
// with deterministic random weights drawn from seed (torchvision's
// initialisation), a dynamic batch axis, input "input" [N,3,224,224] float32
// and output "output" [N,classes] logits.
func DenseNet121(classes int, seed uint64) []byte {
	return DenseNet(DenseNetOptions{Classes: classes, Seed: seed})
}

// DenseNet121Graph is DenseNet121's graph before encoding (tests evaluate
// it independently of ONNX Runtime).
func DenseNet121Graph(classes int, seed uint64) *Graph {
	return DenseNetGraph(DenseNetOptions{Classes: classes, Seed: seed})
}

// DenseNet returns the DenseNet121 graph o describes, encoded as ONNX.
func DenseNet(o DenseNetOptions) []byte { return DenseNetGraph(o).Encode() }

// DenseNetGraph is the graph o describes, before encoding.
func DenseNetGraph(o DenseNetOptions) *Graph {
	const growth, bnSize = 32, 4
	classes := o.Classes
	if o.Head != nil {
		classes = len(o.Head.B)
	}
	b := &builder{rng: rand.New(rand.NewPCG(o.Seed, 0x656965666c6f77))} // "eyeflow"
	b.g.Name = "densenet121"
	b.g.Inputs, b.g.Outputs = ioInfo(classes)
	if o.FeaturesOnly {
		b.g.Outputs = []ValueInfo{{Name: FeaturesName, Shape: []Dim{{Param: BatchParam}, {Value: DenseNetFeatures}}}}
	}

	x := b.conv("features.conv0", InputName, 3, 64, 7, 2, 3)
	x = b.bn("features.norm0", x, 64)
	x = b.relu("features.relu0", x)
	x = b.node("MaxPool", "features.pool0", []string{x},
		AInts("kernel_shape", 3, 3), AInts("strides", 2, 2), AInts("pads", 1, 1, 1, 1))

	c := int64(64)
	for bi, layers := range []int{6, 12, 24, 16} {
		block := fmt.Sprintf("features.denseblock%d", bi+1)
		feats := []string{x}
		for li := range layers {
			name := fmt.Sprintf("%s.denselayer%d", block, li+1)
			in := feats[0]
			cin := c + int64(li)*growth
			if len(feats) > 1 {
				// torch.cat(prev_features, 1), as the exported graph does
				// for every layer.
				in = b.node("Concat", name+".cat", feats, AInt("axis", 1))
			}
			y := b.bn(name+".norm1", in, cin)
			y = b.relu(name+".relu1", y)
			y = b.conv(name+".conv1", y, cin, bnSize*growth, 1, 1, 0)
			y = b.bn(name+".norm2", y, bnSize*growth)
			y = b.relu(name+".relu2", y)
			y = b.conv(name+".conv2", y, bnSize*growth, growth, 3, 1, 1)
			feats = append(feats, y)
		}
		c += int64(layers) * growth
		x = b.node("Concat", block+".cat", feats, AInt("axis", 1))
		if bi < 3 {
			tr := fmt.Sprintf("features.transition%d", bi+1)
			x = b.bn(tr+".norm", x, c)
			x = b.relu(tr+".relu", x)
			x = b.conv(tr+".conv", x, c, c/2, 1, 1, 0)
			c /= 2
			x = b.node("AveragePool", tr+".pool", []string{x}, AInts("kernel_shape", 2, 2), AInts("strides", 2, 2))
		}
	}
	x = b.bn("features.norm5", x, c)
	x = b.relu("relu5", x)
	x = b.node("GlobalAveragePool", "avgpool", []string{x})
	b.g.Metadata = map[string]string{"eyeflow.arch": "densenet121", "eyeflow.seed": fmt.Sprint(o.Seed), "eyeflow.init": "torchvision"}
	if o.FeaturesOnly {
		b.g.Nodes = append(b.g.Nodes, Node{Op: "Flatten", Name: "flatten", Inputs: []string{x}, Outputs: []string{FeaturesName}, Attrs: []Attr{AInt("axis", 1)}})
		return &b.g
	}
	x = b.node("Flatten", "flatten", []string{x}, AInt("axis", 1))
	var wv, bv []float32
	if o.Head != nil {
		wv, bv = o.Head.W, o.Head.B
		b.g.Metadata["eyeflow.head"] = "trained"
	} else {
		// torchvision: nn.Linear's default weights, bias zero.
		wv, bv = b.uniform(classes*int(c), 1/math.Sqrt(float64(c))), filled(classes, 0)
	}
	w := b.init("classifier.weight", []int64{int64(classes), c}, wv)
	bias := b.init("classifier.bias", []int64{int64(classes)}, bv)
	b.g.Nodes = append(b.g.Nodes, Node{Op: "Gemm", Name: "classifier", Inputs: []string{x, w, bias},
		Outputs: []string{OutputName}, Attrs: []Attr{AInt("transB", 1)}})
	return &b.g
}

// Tiny is a model whose outputs are a known, exactly computable function of
// the input: the mean of each channel of the (normalised) input, times a
// fixed 3 x classes matrix, plus a bias:
//
//	logits[n][k] = sum_c mean_hw(input[n][c]) * W[c][k] + B[k]
//
// TinyWeights returns W and B, so tests compute the expected class and
// confidence of any image in Go. With probabilities set, a Softmax node
// makes the model output probabilities instead of logits.
func Tiny(classes int, probabilities bool) []byte {
	var b builder
	b.g.Name = "tiny_mean_colour"
	b.g.Inputs, b.g.Outputs = ioInfo(classes)
	w, bias := TinyWeights(classes)
	wf := make([]float32, 0, 3*classes)
	for c := range 3 {
		for k := range classes {
			wf = append(wf, float32(w[c][k]))
		}
	}
	bf := make([]float32, classes)
	for k := range bf {
		bf[k] = float32(bias[k])
	}
	m := b.node("ReduceMean", "mean", []string{InputName}, AInts("axes", 2, 3), AInt("keepdims", 0))
	mm := b.node("MatMul", "matmul", []string{m, b.init("W", []int64{3, int64(classes)}, wf)})
	out := OutputName
	if probabilities {
		out = "logits"
	}
	b.g.Nodes = append(b.g.Nodes, Node{Op: "Add", Name: "add", Inputs: []string{mm, b.init("B", []int64{int64(classes)}, bf)}, Outputs: []string{out}})
	if probabilities {
		b.g.Nodes = append(b.g.Nodes, Node{Op: "Softmax", Name: "softmax", Inputs: []string{out}, Outputs: []string{OutputName}, Attrs: []Attr{AInt("axis", 1)}})
	}
	b.g.Metadata = map[string]string{"eyeflow.arch": "tiny"}
	return b.g.Encode()
}

// TinyWeights returns the Tiny model's W [3][classes] and B [classes]. Class
// k's weight vector points in direction 2*pi*k/classes of a plane through
// the colour cube's grey axis, with a length of 8: saturated colours give
// confident predictions (well above 0.5), greys near the ImageNet mean give
// nearly uniform ones (well below 0.5). Values are multiples of 1/64, exact
// in float32, so Go and ONNX Runtime agree on the weights bit for bit.
func TinyWeights(classes int) (w [3][]float64, bias []float64) {
	for c := range 3 {
		w[c] = make([]float64, classes)
	}
	bias = make([]float64, classes)
	// Two unit vectors orthogonal to (1,1,1)/sqrt(3).
	u := [3]float64{1 / math.Sqrt2, -1 / math.Sqrt2, 0}
	v := [3]float64{1 / math.Sqrt(6), 1 / math.Sqrt(6), -2 / math.Sqrt(6)}
	q := func(x float64) float64 { return math.Round(x*64) / 64 }
	for k := range classes {
		a := 2 * math.Pi * float64(k) / float64(classes)
		for c := range 3 {
			w[c][k] = q(8 * (math.Cos(a)*u[c] + math.Sin(a)*v[c]))
		}
		bias[k] = q(0.25 * math.Sin(float64(3*k)))
	}
	return w, bias
}

func filled(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}
