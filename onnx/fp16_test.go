package onnx

import (
	"math"
	"testing"
)

func TestFloat16Bits(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    float32
		want uint16
	}{
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"a third", 1.0 / 3, 0x3555},
		{"0.1", 0.1, 0x2e66},
		{"largest half", 65504, 0x7bff},
		{"rounds up to infinity", 65520, 0x7c00},
		{"beyond the range", 1e6, 0x7c00},
		{"smallest normal", 6.1035156e-05, 0x0400},
		{"largest subnormal", 6.0975552e-05, 0x03ff},
		{"smallest subnormal", 5.9604645e-08, 0x0001},
		{"half the smallest subnormal: tie to even zero", 2.9802322e-08, 0x0000},
		{"just above that tie", 2.9802326e-08, 0x0001},
		{"underflow", 1e-9, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"tie to even, down", 1 + 1.0/2048, 0x3c00},
		{"tie to even, up", 1 + 3.0/2048, 0x3c02},
		{"infinity", float32(math.Inf(-1)), 0xfc00},
		{"NaN stays NaN", float32(math.NaN()), 0x7e00},
	} {
		if got := Float16Bits(tc.f); got != tc.want {
			t.Errorf("%s: Float16Bits(%g) = %#04x, want %#04x", tc.name, tc.f, got, tc.want)
		}
	}
	// Every half that is a number survives float32 and back.
	for h := range uint32(1 << 16) {
		v := Float16Value(uint16(h))
		if math.IsNaN(float64(v)) {
			continue
		}
		if got := Float16Bits(v); got != uint16(h) {
			t.Fatalf("%#04x -> %g -> %#04x", h, v, got)
		}
	}
}

func TestFloat16Graph(t *testing.T) {
	g := DenseNetGraph(DenseNetOptions{Classes: 15, Seed: 121})
	h := g.Float16()
	if len(h.Nodes) != len(g.Nodes)+2 || h.Nodes[0].Op != "Cast" || h.Nodes[len(h.Nodes)-1].Op != "Cast" {
		t.Fatalf("fp16 graph: %d nodes (want %d + 2 casts), first %s, last %s", len(h.Nodes), len(g.Nodes), h.Nodes[0].Op, h.Nodes[len(h.Nodes)-1].Op)
	}
	for i, tn := range h.Initializers {
		if !tn.Half || g.Initializers[i].Half {
			t.Fatalf("initializer %s: half %v in the copy, %v in the original", tn.Name, tn.Half, g.Initializers[i].Half)
		}
	}
	for _, n := range h.Nodes[1 : len(h.Nodes)-1] {
		for _, in := range n.Inputs {
			if in == InputName {
				t.Fatalf("node %s still reads the float32 input", n.Name)
			}
		}
	}
	if g.Nodes[0].Inputs[0] != InputName || g.Metadata["eyeflow.precision"] != "" {
		t.Fatal("Float16 changed the original graph")
	}
	info, err := Inspect(h.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Inputs) != 1 || info.Inputs[0].Name != InputName || info.Inputs[0].ElemType != 1 ||
		len(info.Outputs) != 1 || info.Outputs[0].Name != OutputName || info.Outputs[0].ElemType != 1 {
		t.Fatalf("fp16 graph interface %+v: want float32 %s in and %s out", info, InputName, OutputName)
	}
	if full, half := len(g.Encode()), len(h.Encode()); half > full*55/100 {
		t.Errorf("fp16 model is %d bytes, float32 %d: want about half", half, full)
	}
}
