package onnx

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"eyeflow/onnx/onnxpb"
)

// ErrMalformed marks bytes that are not a well-formed ONNX ModelProto.
var ErrMalformed = errors.New("onnx: malformed model")

// MaxModelBytes is the largest model Inspect reads: protobuf (and so ONNX
// Runtime) cannot parse a message over 2 GiB.
const MaxModelBytes = 2<<30 - 1

// Maximum values Inspect accepts, so a hostile file cannot make it build
// huge slices: real image classifiers have a handful of inputs and outputs
// of rank 4 or less, each declared in a few dozen bytes.
const (
	maxIO        = 1024
	maxRank      = 64
	maxName      = 4096
	maxValueInfo = 1 << 20
)

// Info is what Inspect reads from a ModelProto: the IR version and the
// graph's declared inputs and outputs (initializers listed as inputs, as
// IR version 3 allowed, are included).
type Info struct {
	IRVersion int64
	Inputs    []IOInfo
	Outputs   []IOInfo
}

// IOInfo is one declared graph input or output. ElemType is the ONNX
// TensorProto.DataType (1 is float32); 0 means not a tensor or not given.
// Shape holds each dimension's value, -1 for a symbolic or unknown one.
type IOInfo struct {
	Name     string
	ElemType int64
	Shape    []int64
}

// Field numbers Inspect looks for, from the generated schema.
var (
	irVersionField = fieldNumber(&onnxpb.ModelProto{}, "ir_version")
	graphField     = fieldNumber(&onnxpb.ModelProto{}, "graph")
	inputField     = fieldNumber(&onnxpb.GraphProto{}, "input")
	outputField    = fieldNumber(&onnxpb.GraphProto{}, "output")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil {
		panic(fmt.Sprintf("onnx: no field %s in %s", name, m.ProtoReflect().Descriptor().FullName()))
	}
	return f.Number()
}

// Inspect checks an ONNX model's bytes before they reach ONNX Runtime's C++
// parser: it refuses truncated or garbage input (wrapping ErrMalformed) and
// returns the graph's declared inputs and outputs. Unknown fields are
// skipped, so models from newer exporters pass; only structure is checked
// here, the contract with the model card is checked by the caller.
//
// The model is not unmarshaled whole: that would copy every weight and
// allocate a message per node. ModelProto and GraphProto are scanned with
// protowire, which checks every field's framing and skips the ones not read
// without copying them, and only the graph's input and output
// ValueInfoProtos are unmarshaled into the generated types.
func Inspect(data []byte) (Info, error) {
	if len(data) == 0 {
		return Info{}, fmt.Errorf("%w: empty file", ErrMalformed)
	}
	if len(data) > MaxModelBytes {
		return Info{}, fmt.Errorf("%w: %d bytes exceeds protobuf's 2 GiB limit", ErrMalformed, len(data))
	}
	var info Info
	graphs := 0
	err := fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == irVersionField && typ == protowire.VarintType:
			info.IRVersion = int64(v)
		case num == graphField && typ == protowire.BytesType:
			graphs++
			return fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, b []byte) error {
				if typ != protowire.BytesType || (num != inputField && num != outputField) {
					return nil
				}
				if len(info.Inputs)+len(info.Outputs) >= maxIO {
					return fmt.Errorf("%w: more than %d graph inputs and outputs", ErrMalformed, maxIO)
				}
				io, err := valueInfo(b)
				if err != nil {
					return err
				}
				if num == inputField {
					info.Inputs = append(info.Inputs, io)
				} else {
					info.Outputs = append(info.Outputs, io)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	switch {
	case graphs == 0:
		return Info{}, fmt.Errorf("%w: no graph (ModelProto field %d)", ErrMalformed, graphField)
	case graphs > 1:
		// Protobuf would merge repeated message fields; no exporter writes
		// two, so it is a crafted file.
		return Info{}, fmt.Errorf("%w: %d graphs", ErrMalformed, graphs)
	case info.IRVersion < 1:
		return Info{}, fmt.Errorf("%w: ir_version %d", ErrMalformed, info.IRVersion)
	case len(info.Inputs) == 0 || len(info.Outputs) == 0:
		return Info{}, fmt.Errorf("%w: graph declares %d inputs and %d outputs", ErrMalformed, len(info.Inputs), len(info.Outputs))
	}
	return info, nil
}

// unmarshalValueInfo drops unknown fields: nothing reads them.
var unmarshalValueInfo = proto.UnmarshalOptions{DiscardUnknown: true}

// valueInfo reads a ValueInfoProto: its name, and for a tensor type its
// element type and shape.
func valueInfo(b []byte) (IOInfo, error) {
	if len(b) > maxValueInfo {
		return IOInfo{}, fmt.Errorf("%w: a graph input or output declared in %d bytes", ErrMalformed, len(b))
	}
	var vi onnxpb.ValueInfoProto
	if err := unmarshalValueInfo.Unmarshal(b, &vi); err != nil {
		return IOInfo{}, fmt.Errorf("%w: graph input or output: %v", ErrMalformed, err)
	}
	io := IOInfo{Name: vi.GetName()}
	if len(io.Name) > maxName || !utf8.ValidString(io.Name) {
		return IOInfo{}, fmt.Errorf("%w: value name is not a short UTF-8 string", ErrMalformed)
	}
	if io.Name == "" {
		return IOInfo{}, fmt.Errorf("%w: graph input or output without a name", ErrMalformed)
	}
	tt := vi.GetType().GetTensorType() // nil for sequence, map, ... types
	io.ElemType = int64(tt.GetElemType())
	dims := tt.GetShape().GetDim()
	if len(dims) > maxRank {
		return IOInfo{}, fmt.Errorf("%w: rank over %d", ErrMalformed, maxRank)
	}
	for _, d := range dims {
		v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue)
		if ok && v.DimValue >= 0 {
			io.Shape = append(io.Shape, v.DimValue)
		} else {
			io.Shape = append(io.Shape, -1)
		}
	}
	return io, nil
}

// fields calls fn for each field of one protobuf message: v for varints, b
// for length-delimited fields (a subslice of data, never a copy). Other
// fields (fixed width, groups) are checked and skipped. Bad framing, a field
// number out of range or a length past the end wraps ErrMalformed.
func fields(data []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return fmt.Errorf("%w: field tag: %v", ErrMalformed, protowire.ParseError(n))
		}
		if !num.IsValid() {
			return fmt.Errorf("%w: field number %d", ErrMalformed, num)
		}
		data = data[n:]
		var (
			v uint64
			b []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(data)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", ErrMalformed, num, protowire.ParseError(n))
		}
		data = data[n:]
		if err := fn(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}
