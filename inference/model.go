package inference

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"eyeflow/models"
	"eyeflow/onnx"

	ort "github.com/yalue/onnxruntime_go"
)

const imageSize = onnx.ImageSize

// Model is a loaded, validated model ready to run batches. Run is not safe
// for concurrent use; the Batcher serialises it.
type Model struct {
	Card   models.Card
	Labels []string
	// Provider is the execution provider the session actually runs on.
	Provider string
	// LoadTime is how long loading (validation, session, warm-up) took.
	LoadTime time.Duration
	// Threads is the intra-op threads of one run (0: ONNX Runtime's
	// default) and ParallelRuns how many runs the Batcher starts at once:
	// SessionOptions.Plan for the provider in use.
	Threads, ParallelRuns int
	// Adapter is the GPU a WebGPU session runs on (zero otherwise).
	Adapter Adapter
	// Notes say what the session could not do as asked (auto's skipped
	// providers, WebGPU nodes left to the CPU), for the load log.
	Notes []string

	sess *session
	lut  [3][256]float32
	// inputs recycles input tensors (4.8 MB for a batch of 8): allocating
	// and zeroing one per run costs the cores ONNX Runtime needs.
	inputs sync.Pool
}

// LoadModel validates the files against each other and creates the session.
// It refuses, with an error naming the mismatch, a card that is not the
// classifier's input contract, labels out of ImageFolder order, a graph
// whose input is not [N,3,224,224] float32 under the card's name, and a
// graph whose output width differs from labels.json. The width is checked
// on a real one-image run, since exported graphs often leave it symbolic.
// Last, the card's output kind is checked on ProbeImages (checkOutputKind):
// a "probabilities" output that is negative or does not sum to 1, or a
// "logits" output that does, is refused with a reason saying so.
func LoadModel(files models.ModelFiles, opts SessionOptions) (*Model, error) {
	start := time.Now()
	card, err := models.ParseCard(files.Card)
	if err != nil {
		return nil, err
	}
	labels, err := models.ParseLabels(files.Labels)
	if err != nil {
		return nil, err
	}
	ref := card.Name + " " + card.Version
	if card.Labels != 0 && card.Labels != len(labels) {
		return nil, fmt.Errorf("model %s: model.json says %d labels, labels.json has %d", ref, card.Labels, len(labels))
	}
	// A pure-Go walk of the protobuf first: garbage or truncated bytes are
	// refused here rather than handed to ONNX Runtime's C++ parser.
	if _, err := onnx.Inspect(files.ONNX); err != nil {
		return nil, fmt.Errorf("model %s refused: %w", ref, err)
	}
	if err := checkIO(files.ONNX, card, len(labels)); err != nil {
		return nil, fmt.Errorf("model %s refused: %w", ref, err)
	}
	sess, err := newSession(files.ONNX, card.Input.Name, card.Output.Name, opts)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", ref, err)
	}
	m := &Model{Card: card, Labels: labels, Provider: sess.provider, Threads: sess.threads, ParallelRuns: sess.runs, Adapter: sess.adapter, Notes: append(sess.skipped, sess.notes...), sess: sess}
	m.setLUT()
	// Warm up (first runs allocate and tune) and check the real width.
	_, width, err := sess.run(make([]float32, 3*imageSize*imageSize), 1)
	if err != nil {
		sess.close()
		return nil, fmt.Errorf("model %s: warm-up run: %w", ref, err)
	}
	if width != len(labels) {
		sess.close()
		return nil, fmt.Errorf("model %s refused: output %q has %d classes, labels.json has %d", ref, card.Output.Name, width, len(labels))
	}
	if err := m.checkOutputKind(); err != nil {
		sess.close()
		return nil, fmt.Errorf("model %s refused: %w", ref, err)
	}
	m.LoadTime = time.Since(start)
	return m, nil
}

// ProbeTolerance is how far from 1 a probabilities row may sum on the probe
// input (float32 softmax rounding is ~1e-7; a logits row is off by far more).
const ProbeTolerance = 1e-3

// ProbeImages are the images LoadModel runs to check the card's output kind:
// the ImageNet mean grey (a zero input tensor), a horizontal colour ramp and
// a deterministic pseudo-random image, in packed 224x224 RGB.
func ProbeImages() [][]byte {
	grey := make([]byte, ImageBytes)
	ramp := make([]byte, ImageBytes)
	noise := make([]byte, ImageBytes)
	var x uint32 = 2463534242
	for i := 0; i < ImageBytes; i += 3 {
		for c := range 3 {
			grey[i+c] = byte(math.Round(models.ImageNetMean[c] * 255))
			col := i / 3 % imageSize
			ramp[i+c] = [3]byte{byte(col * 255 / (imageSize - 1)), byte(255 - col*255/(imageSize-1)), 128}[c]
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			noise[i+c] = byte(x >> 24)
		}
	}
	return [][]byte{grey, ramp, noise}
}

// checkOutputKind runs the probe images and compares the rows with the
// card's output kind: a "probabilities" model must give finite, non-negative
// rows that sum to 1 within ProbeTolerance on every probe; a "logits" model
// whose every row looks like that is a softmax graph mislabelled as logits
// (softmax applied twice flattens every prediction towards uniform), and a
// non-finite value is refused for either kind. The card is what the
// classifier trusts to turn outputs into probabilities, so a card that lies
// would publish negative probabilities or confidences above 1.
func (m *Model) checkOutputKind() error {
	probes := ProbeImages()
	const per = 3 * imageSize * imageSize
	input := make([]float32, len(probes)*per)
	for i, img := range probes {
		m.fill(input[i*per:(i+1)*per], img)
	}
	out, width, err := m.sess.run(input, len(probes))
	if err != nil {
		return fmt.Errorf("probe run: %w", err)
	}
	out = out[:len(probes)*width]
	name, kind := m.Card.Output.Name, m.Card.Output.Kind
	looksLikeProbs := true
	for i := range probes {
		row := out[i*width : (i+1)*width]
		sum, minV := 0.0, math.Inf(1)
		for k, v := range row {
			f := float64(v)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("output %q is %v for class %d on probe image %d: not finite", name, f, k, i)
			}
			sum += f
			minV = min(minV, f)
		}
		ok := minV >= 0 && math.Abs(sum-1) <= ProbeTolerance
		if kind == models.OutputProbabilities && !ok {
			if minV < 0 {
				return fmt.Errorf("model.json declares output %q as %s, but on probe image %d it has a negative value (%.4g; row sums to %.4g): it looks like logits, declare output.kind %q", name, kind, i, minV, sum, models.OutputLogits)
			}
			return fmt.Errorf("model.json declares output %q as %s, but on probe image %d its row sums to %.6g, not 1 within %g: declare output.kind %q, or end the graph in a softmax", name, kind, i, sum, ProbeTolerance, models.OutputLogits)
		}
		looksLikeProbs = looksLikeProbs && ok
	}
	if kind == models.OutputLogits && looksLikeProbs {
		return fmt.Errorf("model.json declares output %q as %s, but on every probe image it is non-negative and sums to 1 within %g: it already holds probabilities (a second softmax would flatten them), declare output.kind %q", name, kind, ProbeTolerance, models.OutputProbabilities)
	}
	return nil
}

// checkIO compares the graph's declared input and output with the card.
func checkIO(model []byte, card models.Card, classes int) error {
	ins, outs, err := ioInfo(model)
	if err != nil {
		return err
	}
	if len(ins) != 1 {
		return fmt.Errorf("graph has %d inputs, want 1 (%q)", len(ins), card.Input.Name)
	}
	in := ins[0]
	if in.Name != card.Input.Name {
		return fmt.Errorf("graph input is %q, model.json says %q", in.Name, card.Input.Name)
	}
	if in.OrtValueType != ort.ONNXTypeTensor || in.DataType != ort.TensorElementDataTypeFloat {
		return fmt.Errorf("graph input %q is %s, want a float32 tensor", in.Name, in.String())
	}
	dims := []int64(in.Dimensions)
	if len(dims) != 4 || dims[1] != 3 || dims[2] != imageSize || dims[3] != imageSize || dims[0] > 0 && dims[0] != 1 {
		return fmt.Errorf("graph input %q has shape %v, want [N, 3, %d, %d]", in.Name, dims, imageSize, imageSize)
	}
	if dims[0] == 1 {
		return fmt.Errorf("graph input %q has a fixed batch of 1: export it with a dynamic batch axis", in.Name)
	}
	var out *struct{ dims []int64 }
	for _, o := range outs {
		if o.Name == card.Output.Name {
			out = &struct{ dims []int64 }{[]int64(o.Dimensions)}
		}
	}
	if out == nil {
		return fmt.Errorf("graph has no output %q (model.json output.name)", card.Output.Name)
	}
	if len(out.dims) != 2 {
		return fmt.Errorf("graph output %q has shape %v, want [N, %d]", card.Output.Name, out.dims, classes)
	}
	if w := out.dims[1]; w > 0 && w != int64(classes) {
		return fmt.Errorf("graph output %q has %d classes, labels.json has %d", card.Output.Name, w, classes)
	}
	return nil
}

// LoadModelDir loads a model folder.
func LoadModelDir(dir string, opts SessionOptions) (*Model, error) {
	f, err := models.ReadModelDir(dir)
	if err != nil {
		return nil, err
	}
	return LoadModel(f, opts)
}

// setLUT precomputes the card's per-channel normalisation of every byte value.
func (m *Model) setLUT() {
	for c := range 3 {
		for v := range 256 {
			m.lut[c][v] = float32((float64(v)/255 - m.Card.Mean[c]) / m.Card.Std[c])
		}
	}
}

// Close frees the session.
func (m *Model) Close() {
	if m != nil {
		m.sess.close()
	}
}

// Ref is "name version".
func (m *Model) Ref() string { return m.Card.Name + " " + m.Card.Version }

// fill normalises one image (packed RGB, 224x224, row-major) into dst, its
// CHW slot of the input tensor, with the card's mean and std.
func (m *Model) fill(dst []float32, rgb []byte) {
	const plane = imageSize * imageSize
	r, g, b := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	for i := range plane {
		p := rgb[3*i : 3*i+3 : 3*i+3]
		r[i] = m.lut[0][p[0]]
		g[i] = m.lut[1][p[1]]
		b[i] = m.lut[2][p[2]]
	}
}

// ImageBytes is the size of one preprocessed image: 224x224 packed RGB.
const ImageBytes = 3 * imageSize * imageSize

// Run classifies images (each ImageBytes of packed RGB) in one session run
// and returns one probability vector per image, in label order.
func (m *Model) Run(images [][]byte) ([][]float64, error) {
	out, width, err := m.run(images)
	if err != nil {
		return nil, err
	}
	if width != len(m.Labels) {
		return nil, fmt.Errorf("model %s: output has %d classes, labels %d", m.Ref(), width, len(m.Labels))
	}
	n := len(images)
	probs := make([][]float64, n)
	for i := range n {
		row := out[i*width : (i+1)*width]
		if m.Card.Output.Kind == models.OutputLogits {
			probs[i] = Softmax(row)
		} else {
			probs[i] = make([]float64, width)
			for k, v := range row {
				probs[i][k] = float64(v)
			}
		}
	}
	return probs, nil
}

// RunRaw runs images like Run and returns the graph's output rows as they
// are: logits, or the features of a LoadFeatureExtractor model.
func (m *Model) RunRaw(images [][]byte) ([][]float32, error) {
	out, width, err := m.run(images)
	if err != nil {
		return nil, err
	}
	rows := make([][]float32, len(images))
	for i := range rows {
		rows[i] = slices.Clone(out[i*width : (i+1)*width])
	}
	return rows, nil
}

// run normalises images into a (recycled) input tensor and runs the session.
func (m *Model) run(images [][]byte) ([]float32, int, error) {
	n := len(images)
	const per = 3 * imageSize * imageSize
	buf, _ := m.inputs.Get().(*[]float32)
	if buf == nil || cap(*buf) < n*per {
		buf = new(make([]float32, n*per))
	}
	defer m.inputs.Put(buf)
	// Every element is written below, so a recycled buffer needs no clearing.
	input := (*buf)[:n*per]
	for i, img := range images {
		if len(img) != ImageBytes {
			return nil, 0, fmt.Errorf("image %d has %d bytes, want %d (224x224 RGB)", i, len(img), ImageBytes)
		}
		m.fill(input[i*per:(i+1)*per], img)
	}
	return m.sess.run(input, n)
}

// LoadFeatureExtractor loads a graph whose output is a [N, width] feature
// matrix (the trainer's frozen backbone) on the same session path as
// LoadModel: device, run plan and the ImageNet normalisation of NewCard.
func LoadFeatureExtractor(model []byte, output string, width int, opts SessionOptions) (*Model, error) {
	start := time.Now()
	if _, err := onnx.Inspect(model); err != nil {
		return nil, fmt.Errorf("feature extractor refused: %w", err)
	}
	card := models.NewCard("features", "0", "", models.OutputLogits, 0)
	card.Output.Name = output
	sess, err := newSession(model, card.Input.Name, output, opts)
	if err != nil {
		return nil, fmt.Errorf("feature extractor: %w", err)
	}
	m := &Model{Card: card, Provider: sess.provider, Threads: sess.threads, ParallelRuns: sess.runs, Adapter: sess.adapter, Notes: append(sess.skipped, sess.notes...), sess: sess}
	m.setLUT()
	if _, w, err := sess.run(make([]float32, 3*imageSize*imageSize), 1); err != nil || w != width {
		sess.close()
		if err == nil {
			err = fmt.Errorf("output %q has width %d, want %d", output, w, width)
		}
		return nil, fmt.Errorf("feature extractor: warm-up run: %w", err)
	}
	m.LoadTime = time.Since(start)
	return m, nil
}

// Softmax is the numerically stable softmax, in float64.
func Softmax(logits []float32) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = max(mx, float64(v))
	}
	out := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		out[i] = math.Exp(float64(v) - mx)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
