package onnx

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"eyeflow/onnx/onnxpb"
)

// every is a graph with each kind of attribute and initializer the writer
// knows, metadata and a non-default opset.
func every() *Graph {
	s := "same"
	return &Graph{
		Name:    "every",
		Opset:   13,
		Inputs:  []ValueInfo{{Name: "x", Shape: []Dim{{Param: "N"}, {Value: 0}, {Value: 7}}}},
		Outputs: []ValueInfo{{Name: "y"}},
		Nodes: []Node{
			{Op: "Custom", Name: "c", Inputs: []string{"x", "w"}, Outputs: []string{"y"},
				Attrs: []Attr{AInt("i", -3), AFloat("f", -1.5), AInts("is", 1, -2, 3), AInts("none"), {Name: "s", Str: &s}}},
			{Op: "Identity", Inputs: []string{"y"}, Outputs: []string{"z"}},
		},
		Initializers: []Tensor{
			{Name: "w", Dims: []int64{2}, Floats: []float32{1.5, -2}},
			{Name: "h", Dims: []int64{2}, Floats: []float32{1, 65504}, Half: true},
			{Name: "l", Dims: []int64{2}, Int64s: []int64{-1, 1 << 40}},
			{Name: "empty", Dims: []int64{0}},
		},
		Metadata: map[string]string{"b": "2", "a": "1"},
	}
}

// TestEncodeSchema reads an encoded model back with the generated types:
// every field the writer sets is where onnx.proto puts it.
func TestEncodeSchema(t *testing.T) {
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(every().Encode(), &m); err != nil {
		t.Fatal(err)
	}
	if m.GetIrVersion() != 8 || m.GetProducerName() != "eyeflow" || len(m.GetOpsetImport()) != 1 ||
		m.GetOpsetImport()[0].GetDomain() != "" || m.GetOpsetImport()[0].GetVersion() != 13 {
		t.Fatalf("model header: ir %d, producer %q, opsets %v", m.GetIrVersion(), m.GetProducerName(), m.GetOpsetImport())
	}
	if md := m.GetMetadataProps(); len(md) != 2 || md[0].GetKey() != "a" || md[1].GetKey() != "b" || md[1].GetValue() != "2" {
		t.Fatalf("metadata %v: want a=1, b=2 in key order", md)
	}
	g := m.GetGraph()
	if g.GetName() != "every" || len(g.GetNode()) != 2 || len(g.GetInitializer()) != 4 || len(g.GetInput()) != 1 || len(g.GetOutput()) != 1 {
		t.Fatalf("graph %q: %d nodes, %d initializers, %d inputs, %d outputs", g.GetName(), len(g.GetNode()), len(g.GetInitializer()), len(g.GetInput()), len(g.GetOutput()))
	}

	n := g.GetNode()[0]
	if n.GetOpType() != "Custom" || n.GetName() != "c" || !slices.Equal(n.GetInput(), []string{"x", "w"}) || !slices.Equal(n.GetOutput(), []string{"y"}) {
		t.Fatalf("node %v", n)
	}
	if g.GetNode()[1].Name != nil {
		t.Error("a node without a name was given one")
	}
	a := n.GetAttribute()
	if len(a) != 5 ||
		a[0].GetName() != "i" || a[0].GetType() != onnxpb.AttributeProto_INT || a[0].GetI() != -3 ||
		a[1].GetName() != "f" || a[1].GetType() != onnxpb.AttributeProto_FLOAT || a[1].GetF() != -1.5 ||
		a[2].GetName() != "is" || a[2].GetType() != onnxpb.AttributeProto_INTS || !slices.Equal(a[2].GetInts(), []int64{1, -2, 3}) ||
		a[3].GetName() != "none" || a[3].GetType() != onnxpb.AttributeProto_INTS || len(a[3].GetInts()) != 0 ||
		a[4].GetName() != "s" || a[4].GetType() != onnxpb.AttributeProto_STRING || string(a[4].GetS()) != "same" {
		t.Fatalf("attributes %v", a)
	}

	le32 := binary.LittleEndian.AppendUint32
	for i, want := range []struct {
		name string
		dt   onnxpb.TensorProto_DataType
		raw  []byte
	}{
		{"w", onnxpb.TensorProto_FLOAT, le32(le32(nil, math.Float32bits(1.5)), math.Float32bits(-2))},
		{"h", onnxpb.TensorProto_FLOAT16, []byte{0x00, 0x3c, 0xff, 0x7b}},
		{"l", onnxpb.TensorProto_INT64, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.MaxUint64), 1<<40)},
		{"empty", onnxpb.TensorProto_FLOAT, []byte{}},
	} {
		tp := g.GetInitializer()[i]
		if tp.GetName() != want.name || tp.GetDataType() != int32(want.dt) || string(tp.GetRawData()) != string(want.raw) ||
			tp.RawData == nil || len(tp.GetFloatData()) != 0 {
			t.Errorf("initializer %d: %v, want %s %v raw %x", i, tp, want.name, want.dt, want.raw)
		}
	}

	in := g.GetInput()[0]
	tt := in.GetType().GetTensorType()
	dims := tt.GetShape().GetDim()
	if in.GetName() != "x" || tt.GetElemType() != int32(onnxpb.TensorProto_FLOAT) || len(dims) != 3 ||
		dims[0].GetDimParam() != "N" || dims[1].GetDimValue() != 0 || dims[1].GetValue() == nil || dims[2].GetDimValue() != 7 {
		t.Fatalf("input %v", in)
	}
}

// TestEncodeBytes pins the encoding: a synthetic model's digest names it
// (the trainer's backbone digest keys its feature cache), so the same
// graph must always give the same bytes. The digests are those of the
// hand-written encoder the generated types replaced, whose bytes they
// reproduce exactly; a change here renames every synthetic model.
func TestEncodeBytes(t *testing.T) {
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"Tiny(15, false)":      {Tiny(15, false), "7938ba0e0e794523"},
		"Tiny(15, true)":       {Tiny(15, true), "9f5a12fe70d2d2c4"},
		"every":                {every().Encode(), "4a7c153796a4cf4e"},
		"DenseNet121(15, 121)": {DenseNet121(15, 121), "6685f34196893a01"},
	} {
		sum := sha256.Sum256(tc.data)
		if got := hex.EncodeToString(sum[:8]); got != tc.want {
			t.Errorf("%s: sha256 %s..., want %s...", name, got, tc.want)
		}
	}
	if a, b := every().Encode(), every().Encode(); string(a) != string(b) {
		t.Error("the same graph encoded twice gave different bytes")
	}
}
