// Package onnx writes ONNX models, and inspects them before ONNX Runtime
// parses them. Models are built on the Go types generated from ONNX's own
// onnx.proto (package onnxpb) and serialised with google.golang.org/protobuf.
// It exists so that eyeflow can ship a model that works offline (no weights
// are downloaded): DenseNet121 with deterministic random weights for
// realistic benchmarks, and a tiny model whose outputs are a known function
// of the input for exact end-to-end tests.
//
// Models are written as IR version 8, opset 17 (ONNX 1.12).
package onnx

import (
	"encoding/binary"
	"maps"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"eyeflow/onnx/onnxpb"
)

// ONNX enum values used here.
const (
	dtFloat   = int64(onnxpb.TensorProto_FLOAT)
	dtInt64   = int64(onnxpb.TensorProto_INT64)
	dtFloat16 = int64(onnxpb.TensorProto_FLOAT16)
)

// Attr is one node attribute.
type Attr struct {
	Name  string
	Int   *int64
	Float *float32
	Ints  []int64
	Str   *string
}

// AInt, AFloat and AInts build attributes.
func AInt(name string, v int64) Attr     { return Attr{Name: name, Int: &v} }
func AFloat(name string, v float32) Attr { return Attr{Name: name, Float: &v} }
func AInts(name string, v ...int64) Attr { return Attr{Name: name, Ints: v} }

func (a Attr) proto() *onnxpb.AttributeProto {
	p := &onnxpb.AttributeProto{Name: proto.String(a.Name)}
	switch {
	case a.Int != nil:
		p.I, p.Type = proto.Int64(*a.Int), onnxpb.AttributeProto_INT.Enum()
	case a.Float != nil:
		p.F, p.Type = proto.Float32(*a.Float), onnxpb.AttributeProto_FLOAT.Enum()
	case a.Str != nil:
		// Non-nil even when empty, so that the field is written.
		p.S, p.Type = append([]byte{}, *a.Str...), onnxpb.AttributeProto_STRING.Enum()
	default:
		p.Ints, p.Type = a.Ints, onnxpb.AttributeProto_INTS.Enum()
	}
	return p
}

// Node is one operator application.
type Node struct {
	Op      string
	Name    string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

func (n Node) proto() *onnxpb.NodeProto {
	p := &onnxpb.NodeProto{Input: n.Inputs, Output: n.Outputs, OpType: proto.String(n.Op)}
	if n.Name != "" {
		p.Name = proto.String(n.Name)
	}
	for _, a := range n.Attrs {
		p.Attribute = append(p.Attribute, a.proto())
	}
	return p
}

// Tensor is an initializer: float32 or int64 data with its dims. With
// Half set, Floats are stored as IEEE 754 half precision (FLOAT16).
type Tensor struct {
	Name    string
	Dims    []int64
	Floats  []float32
	Int64s  []int64
	Half    bool
	isInt64 bool
}

// proto stores the values as raw_data (little-endian bytes), as exporters
// do: the fastest to parse, and marshaled as one block copy (float_data
// would be encoded value by value).
func (t Tensor) proto() *onnxpb.TensorProto {
	var (
		dt  int64
		raw []byte
	)
	switch {
	case t.Int64s != nil || t.isInt64:
		dt, raw = dtInt64, make([]byte, 0, 8*len(t.Int64s))
		for _, v := range t.Int64s {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
		}
	case t.Half:
		dt, raw = dtFloat16, make([]byte, 0, 2*len(t.Floats))
		for _, v := range t.Floats {
			raw = binary.LittleEndian.AppendUint16(raw, Float16Bits(v))
		}
	default:
		dt, raw = dtFloat, make([]byte, 0, 4*len(t.Floats))
		for _, v := range t.Floats {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
	}
	// raw is never nil, so an empty tensor still has raw_data (empty).
	return &onnxpb.TensorProto{Dims: t.Dims, DataType: proto.Int32(int32(dt)), Name: proto.String(t.Name), RawData: raw}
}

// Dim is one dimension of a graph input or output: a fixed size, or a named
// symbolic one (Param) such as the dynamic batch axis.
type Dim struct {
	Value int64
	Param string
}

// ValueInfo declares a float32 graph input or output.
type ValueInfo struct {
	Name  string
	Shape []Dim
}

func (v ValueInfo) proto() *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range v.Shape {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d.Param != "" {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.Value}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(v.Name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(dtFloat)),
			Shape:    shape,
		}}},
	}
}

// Graph is a complete model graph.
type Graph struct {
	Name         string
	Nodes        []Node
	Initializers []Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
	// Metadata becomes ModelProto.metadata_props.
	Metadata map[string]string
	// Opset of the default domain; 0 means 17.
	Opset int64
}

// marshal is deterministic (metadata_props are sorted by key, and
// Deterministic would order map fields, though ONNX has none): the same
// graph always gives the same bytes, and a model's digest names its version.
var marshal = proto.MarshalOptions{Deterministic: true}

// proto returns g as an ONNX ModelProto.
func (g *Graph) proto() *onnxpb.ModelProto {
	gp := &onnxpb.GraphProto{Name: proto.String(g.Name)}
	gp.Node = make([]*onnxpb.NodeProto, 0, len(g.Nodes))
	for _, n := range g.Nodes {
		gp.Node = append(gp.Node, n.proto())
	}
	gp.Initializer = make([]*onnxpb.TensorProto, 0, len(g.Initializers))
	for _, t := range g.Initializers {
		gp.Initializer = append(gp.Initializer, t.proto())
	}
	for _, in := range g.Inputs {
		gp.Input = append(gp.Input, in.proto())
	}
	for _, out := range g.Outputs {
		gp.Output = append(gp.Output, out.proto())
	}

	opset := g.Opset
	if opset == 0 {
		opset = 17
	}
	m := &onnxpb.ModelProto{
		IrVersion:       proto.Int64(8), // ir_version 8 goes with opset 17
		ProducerName:    proto.String("eyeflow"),
		ProducerVersion: proto.String("1"),
		Graph:           gp,
		OpsetImport:     []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
	}
	for _, k := range slices.Sorted(maps.Keys(g.Metadata)) {
		m.MetadataProps = append(m.MetadataProps, &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(g.Metadata[k])})
	}
	return m
}

// Encode serialises g as an ONNX ModelProto.
func (g *Graph) Encode() []byte {
	b, err := marshal.Marshal(g.proto())
	if err != nil {
		// Only an invalid message fails (a required field unset, a
		// proto3 string that is not UTF-8): onnx.proto is proto2
		// without required fields.
		panic("onnx: marshal: " + err.Error())
	}
	return b
}
