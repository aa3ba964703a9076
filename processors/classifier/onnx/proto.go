// Package onnx writes ONNX models without any dependency: the protobuf wire
// format of the few ONNX messages a feed-forward graph needs (ModelProto,
// GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto) is
// encoded by hand. It exists so that eyeflow can ship a model that works
// offline (no weights are downloaded): DenseNet121 with deterministic random
// weights for realistic benchmarks, and a tiny model whose outputs are a
// known function of the input for exact end-to-end tests.
//
// Field numbers follow onnx/onnx.proto (IR version 8, opset 17).
package onnx

import (
	"encoding/binary"
	"maps"
	"math"
	"slices"
)

// Protobuf wire types.
const (
	wireVarint = 0
	wireI32    = 5
	wireBytes  = 2
)

// buf is an append-only protobuf encoder.
type buf []byte

func (b *buf) tag(field, wire int) { b.uvarint(uint64(field)<<3 | uint64(wire)) }

func (b *buf) uvarint(v uint64) { *b = binary.AppendUvarint(*b, v) }

// int is an int64/int32/enum field: negative values are sign-extended to ten
// bytes, as protobuf requires for int64 (ONNX dims are never negative).
func (b *buf) int(field int, v int64) {
	b.tag(field, wireVarint)
	b.uvarint(uint64(v))
}

func (b *buf) float(field int, v float32) {
	b.tag(field, wireI32)
	*b = binary.LittleEndian.AppendUint32(*b, math.Float32bits(v))
}

func (b *buf) bytes(field int, v []byte) {
	b.tag(field, wireBytes)
	b.uvarint(uint64(len(v)))
	*b = append(*b, v...)
}

func (b *buf) string(field int, v string) { b.bytes(field, []byte(v)) }

// msg embeds a sub-message.
func (b *buf) msg(field int, m buf) { b.bytes(field, m) }

// ONNX enum values used here.
const (
	dtFloat   = 1  // TensorProto.FLOAT
	dtInt64   = 7  // TensorProto.INT64
	dtFloat16 = 10 // TensorProto.FLOAT16

	attrFloat  = 1
	attrInt    = 2
	attrString = 3
	attrInts   = 7
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

func (a Attr) encode() buf {
	var b buf
	b.string(1, a.Name)
	switch {
	case a.Int != nil:
		b.int(3, *a.Int)
		b.int(20, attrInt)
	case a.Float != nil:
		b.float(2, *a.Float)
		b.int(20, attrFloat)
	case a.Str != nil:
		b.string(4, *a.Str)
		b.int(20, attrString)
	default:
		// Repeated ints in AttributeProto are not packed in onnx.proto
		// (proto2 semantics); parsers accept both, unpacked is canonical.
		for _, v := range a.Ints {
			b.int(8, v)
		}
		b.int(20, attrInts)
	}
	return b
}

// Node is one operator application.
type Node struct {
	Op      string
	Name    string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

func (n Node) encode() buf {
	var b buf
	for _, in := range n.Inputs {
		b.string(1, in)
	}
	for _, out := range n.Outputs {
		b.string(2, out)
	}
	if n.Name != "" {
		b.string(3, n.Name)
	}
	b.string(4, n.Op)
	for _, a := range n.Attrs {
		b.msg(5, a.encode())
	}
	return b
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

func (t Tensor) encode() buf {
	var b buf
	for _, d := range t.Dims {
		b.int(1, d)
	}
	raw := make([]byte, 0, 8*max(len(t.Floats), len(t.Int64s)))
	if t.Int64s != nil || t.isInt64 {
		b.int(2, dtInt64)
		for _, v := range t.Int64s {
			raw = binary.LittleEndian.AppendUint64(raw, uint64(v))
		}
	} else if t.Half {
		b.int(2, dtFloat16)
		for _, v := range t.Floats {
			raw = binary.LittleEndian.AppendUint16(raw, Float16Bits(v))
		}
	} else {
		b.int(2, dtFloat)
		for _, v := range t.Floats {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
	}
	b.string(8, t.Name)
	// raw_data (little-endian) is what exporters write and the fastest to parse.
	b.bytes(9, raw)
	return b
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

func (v ValueInfo) encode() buf {
	var shape buf
	for _, d := range v.Shape {
		var dim buf
		if d.Param != "" {
			dim.string(2, d.Param)
		} else {
			dim.int(1, d.Value)
		}
		shape.msg(1, dim)
	}
	var tensor buf
	tensor.int(1, dtFloat)
	tensor.msg(2, shape)
	var typ buf
	typ.msg(1, tensor)
	var b buf
	b.string(1, v.Name)
	b.msg(2, typ)
	return b
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

// Encode serialises g as an ONNX ModelProto.
func (g *Graph) Encode() []byte {
	var gb buf
	for _, n := range g.Nodes {
		gb.msg(1, n.encode())
	}
	gb.string(2, g.Name)
	for _, t := range g.Initializers {
		gb.msg(5, t.encode())
	}
	for _, in := range g.Inputs {
		gb.msg(11, in.encode())
	}
	for _, out := range g.Outputs {
		gb.msg(12, out.encode())
	}

	opset := g.Opset
	if opset == 0 {
		opset = 17
	}
	var m buf
	m.int(1, 8) // ir_version 8 goes with opset 17
	m.string(2, "eyeflow")
	m.string(3, "1")
	m.msg(7, gb)
	var os buf
	os.string(1, "")
	os.int(2, opset)
	m.msg(8, os)
	for _, k := range sortedKeys(g.Metadata) {
		var kv buf
		kv.string(1, k)
		kv.string(2, g.Metadata[k])
		m.msg(14, kv)
	}
	return m
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
