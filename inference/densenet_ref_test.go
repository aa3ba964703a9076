package inference

import (
	"math"
	"testing"

	"eyeflow/onnx"
)

// refTensor is a CHW activation of one image.
type refTensor struct {
	c, h, w int
	v       []float32
}

func newRef(c, h, w int) refTensor { return refTensor{c, h, w, make([]float32, c*h*w)} }

func (t refTensor) plane(c int) []float32 { return t.v[c*t.h*t.w : (c+1)*t.h*t.w] }

// refEval evaluates a graph of the ops the synthetic DenseNet121 uses
// (Conv, BatchNormalization, Relu, MaxPool, AveragePool, Concat,
// GlobalAveragePool, Flatten, Gemm) on one CHW image, in plain Go loops
// straight from the ONNX operator definitions: an independent reference
// for what ONNX Runtime computes from the encoded model.
func refEval(t *testing.T, g *onnx.Graph, input refTensor) []float32 {
	t.Helper()
	inits := map[string]onnx.Tensor{}
	for _, in := range g.Initializers {
		inits[in.Name] = in
	}
	vals := map[string]refTensor{onnx.InputName: input}
	var flat []float32
	attr := func(n onnx.Node, name string) onnx.Attr {
		for _, a := range n.Attrs {
			if a.Name == name {
				return a
			}
		}
		return onnx.Attr{}
	}
	for _, n := range g.Nodes {
		var out refTensor
		switch n.Op {
		case "Conv":
			x, w := vals[n.Inputs[0]], inits[n.Inputs[1]]
			k, s, p := int(w.Dims[2]), int(attr(n, "strides").Ints[0]), int(attr(n, "pads").Ints[0])
			out = refConv(x, w.Floats, int(w.Dims[0]), k, s, p)
		case "BatchNormalization":
			x := vals[n.Inputs[0]]
			scale, bias, mean, variance := inits[n.Inputs[1]].Floats, inits[n.Inputs[2]].Floats, inits[n.Inputs[3]].Floats, inits[n.Inputs[4]].Floats
			eps := float64(*attr(n, "epsilon").Float)
			out = newRef(x.c, x.h, x.w)
			for c := range x.c {
				a := float64(scale[c]) / math.Sqrt(float64(variance[c])+eps)
				for i, v := range x.plane(c) {
					out.plane(c)[i] = float32(a*(float64(v)-float64(mean[c])) + float64(bias[c]))
				}
			}
		case "Relu":
			x := vals[n.Inputs[0]]
			out = newRef(x.c, x.h, x.w)
			for i, v := range x.v {
				out.v[i] = max(v, 0)
			}
		case "MaxPool", "AveragePool":
			x := vals[n.Inputs[0]]
			k, s := int(attr(n, "kernel_shape").Ints[0]), int(attr(n, "strides").Ints[0])
			p := 0
			if pads := attr(n, "pads").Ints; len(pads) > 0 {
				p = int(pads[0])
			}
			out = refPool(x, k, s, p, n.Op == "MaxPool")
		case "Concat":
			first := vals[n.Inputs[0]]
			var c int
			for _, in := range n.Inputs {
				c += vals[in].c
			}
			out = newRef(c, first.h, first.w)
			off := 0
			for _, in := range n.Inputs {
				off += copy(out.v[off:], vals[in].v)
			}
		case "GlobalAveragePool":
			x := vals[n.Inputs[0]]
			out = newRef(x.c, 1, 1)
			for c := range x.c {
				var sum float64
				for _, v := range x.plane(c) {
					sum += float64(v)
				}
				out.v[c] = float32(sum / float64(x.h*x.w))
			}
		case "Flatten":
			x := vals[n.Inputs[0]]
			out = refTensor{len(x.v), 1, 1, x.v}
		case "Gemm":
			x, w, b := vals[n.Inputs[0]], inits[n.Inputs[1]], inits[n.Inputs[2]]
			if attr(n, "transB").Int == nil || *attr(n, "transB").Int != 1 {
				t.Fatalf("Gemm %s: only transB=1 is implemented", n.Name)
			}
			classes, in := int(w.Dims[0]), int(w.Dims[1])
			flat = make([]float32, classes)
			for k := range classes {
				sum := float64(b.Floats[k])
				for i := range in {
					sum += float64(x.v[i]) * float64(w.Floats[k*in+i])
				}
				flat[k] = float32(sum)
			}
			continue
		default:
			t.Fatalf("reference: op %s (node %s) not implemented", n.Op, n.Name)
		}
		vals[n.Outputs[0]] = out
	}
	if flat == nil {
		t.Fatal("reference: the graph has no Gemm output")
	}
	return flat
}

// refConv is a bias-free 2-D convolution (square kernel k, stride s,
// symmetric zero padding p, no groups) of x with weights [cout][cin][k][k].
func refConv(x refTensor, w []float32, cout, k, s, p int) refTensor {
	oh, ow := (x.h+2*p-k)/s+1, (x.w+2*p-k)/s+1
	out := newRef(cout, oh, ow)
	for co := range cout {
		dst := out.plane(co)
		for ci := range x.c {
			src := x.plane(ci)
			for ky := range k {
				for kx := range k {
					wv := w[((co*x.c+ci)*k+ky)*k+kx]
					// Output columns whose input column ox*s-p+kx is inside.
					lo := max(0, (p-kx+s-1)/s)
					hi := min(ow-1, (x.w-1+p-kx)/s)
					for oy := range oh {
						iy := oy*s - p + ky
						if iy < 0 || iy >= x.h {
							continue
						}
						row, in := dst[oy*ow:(oy+1)*ow], src[iy*x.w:(iy+1)*x.w]
						for ox := lo; ox <= hi; ox++ {
							row[ox] += wv * in[ox*s-p+kx]
						}
					}
				}
			}
		}
	}
	return out
}

// refPool is max pooling (padding never wins) or average pooling (no
// padding in this graph) with a square window k and stride s.
func refPool(x refTensor, k, s, p int, isMax bool) refTensor {
	oh, ow := (x.h+2*p-k)/s+1, (x.w+2*p-k)/s+1
	out := newRef(x.c, oh, ow)
	for c := range x.c {
		src, dst := x.plane(c), out.plane(c)
		for oy := range oh {
			for ox := range ow {
				best, sum, n := float32(math.Inf(-1)), 0.0, 0
				for ky := range k {
					for kx := range k {
						iy, ix := oy*s-p+ky, ox*s-p+kx
						if iy < 0 || iy >= x.h || ix < 0 || ix >= x.w {
							continue
						}
						v := src[iy*x.w+ix]
						best = max(best, v)
						sum += float64(v)
						n++
					}
				}
				if isMax {
					dst[oy*ow+ox] = best
				} else {
					dst[oy*ow+ox] = float32(sum / float64(k*k))
				}
			}
		}
	}
	return out
}

// asymmetricImage is a 224x224 RGB image whose channels vary differently
// along x and y, so a transposed, mirrored or channel-swapped input tensor
// changes the answer.
func asymmetricImage() []byte {
	img := make([]byte, ImageBytes)
	for y := range imageSize {
		for x := range imageSize {
			p := img[3*(y*imageSize+x):]
			p[0] = byte(x * 255 / (imageSize - 1))
			p[1] = byte(255 - y*200/(imageSize-1))
			p[2] = byte((x*x + 3*y) % 256)
		}
	}
	return img
}
