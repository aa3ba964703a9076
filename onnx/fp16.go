package onnx

import (
	"maps"
	"math"
)

// Float16 returns a copy of g that computes in half precision: every float
// initializer is stored as FLOAT16, each graph input is cast to float16 where
// it enters and each output back to float32 where it leaves. The model's
// interface is unchanged (float32 [N,3,224,224] in, float32 out), so the
// classifier, its card and its checks take it as they take the float32 model;
// only the arithmetic inside is fp16, which a GPU runs at up to twice the
// rate and with half the memory traffic. Float attributes (BatchNorm's
// epsilon) stay as they are: ONNX keeps attributes in float32.
func (g *Graph) Float16() *Graph {
	h := *g
	h.Nodes = make([]Node, 0, len(g.Nodes)+len(g.Inputs)+len(g.Outputs))
	h.Initializers = make([]Tensor, len(g.Initializers))
	h.Metadata = maps.Clone(g.Metadata)
	if h.Metadata == nil {
		h.Metadata = map[string]string{}
	}
	h.Metadata["eyeflow.precision"] = "fp16"

	renamed := map[string]string{}
	for _, in := range g.Inputs {
		half := in.Name + "_fp16"
		renamed[in.Name] = half
		h.Nodes = append(h.Nodes, Node{Op: "Cast", Name: in.Name + "_to_fp16", Inputs: []string{in.Name}, Outputs: []string{half},
			Attrs: []Attr{AInt("to", dtFloat16)}})
	}
	isOutput := map[string]bool{}
	for _, out := range g.Outputs {
		isOutput[out.Name] = true
	}
	var casts []Node
	for _, n := range g.Nodes {
		m := n
		m.Inputs = make([]string, len(n.Inputs))
		for i, in := range n.Inputs {
			if r, ok := renamed[in]; ok {
				in = r
			}
			m.Inputs[i] = in
		}
		m.Outputs = make([]string, len(n.Outputs))
		for i, out := range n.Outputs {
			if isOutput[out] {
				half := out + "_fp16"
				casts = append(casts, Node{Op: "Cast", Name: out + "_to_fp32", Inputs: []string{half}, Outputs: []string{out},
					Attrs: []Attr{AInt("to", dtFloat)}})
				out = half
			}
			m.Outputs[i] = out
		}
		h.Nodes = append(h.Nodes, m)
	}
	h.Nodes = append(h.Nodes, casts...)
	for i, t := range g.Initializers {
		if t.Int64s == nil && !t.isInt64 {
			t.Half = true
		}
		h.Initializers[i] = t
	}
	return &h
}

// Float16Bits is the IEEE 754 half-precision encoding of f, rounded to the
// nearest value (ties to even), as numpy's astype(float16) rounds: values
// beyond the half range become infinities, tiny ones subnormals or zero.
func Float16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	switch {
	case exp == 0xff: // infinity, NaN (kept quiet)
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp-127 > 15: // too large: infinity
		return sign | 0x7c00
	case exp-127 >= -14: // normal half
		e := uint32(exp-127+15) << 10
		m := mant >> 13
		rest := mant & 0x1fff
		v := e | m
		if rest > 0x1000 || (rest == 0x1000 && m&1 == 1) {
			v++ // may carry into the exponent, up to infinity: correct
		}
		return sign | uint16(v)
	case exp-127 >= -25: // subnormal half
		full := mant | 0x800000 // the implicit 1
		shift := uint32(-14-(exp-127)) + 13
		m := full >> shift
		rest := full & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || (rest == half && m&1 == 1) {
			m++
		}
		return sign | uint16(m)
	}
	return sign // underflow to zero
}

// Float16Value decodes an IEEE 754 half.
func Float16Value(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * float32(math.Ldexp(mant, -24))
	case 0x1f:
		if mant != 0 {
			return float32(math.NaN())
		}
		return sign * float32(math.Inf(1))
	}
	return sign * float32(math.Ldexp(1+mant/1024, exp-15))
}
