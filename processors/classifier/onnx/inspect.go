package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrMalformed marks bytes that are not a well-formed ONNX ModelProto.
var ErrMalformed = errors.New("onnx: malformed model")

// MaxModelBytes is the largest model Inspect reads: protobuf (and so ONNX
// Runtime) cannot parse a message over 2 GiB.
const MaxModelBytes = 2<<30 - 1

// Maximum values Inspect accepts, so a hostile file cannot make it build
// huge slices: real image classifiers have a handful of inputs and outputs
// of rank 4 or less.
const (
	maxIO   = 1024
	maxRank = 64
	maxName = 4096
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

// Inspect walks the protobuf wire format of an ONNX model without any
// dependency, before the bytes reach ONNX Runtime's C++ parser: it refuses
// truncated or garbage input (wrapping ErrMalformed) and returns the graph's
// declared inputs and outputs. Unknown fields are skipped, so models from
// newer exporters pass; only structure is checked here, the contract with
// the model card is checked by the caller.
func Inspect(data []byte) (Info, error) {
	if len(data) == 0 {
		return Info{}, fmt.Errorf("%w: empty file", ErrMalformed)
	}
	if len(data) > MaxModelBytes {
		return Info{}, fmt.Errorf("%w: %d bytes exceeds protobuf's 2 GiB limit", ErrMalformed, len(data))
	}
	var info Info
	graphs := 0
	err := walk(data, func(field int, wire int, v uint64, b []byte) error {
		switch {
		case field == 1 && wire == wireVarint:
			info.IRVersion = int64(v)
		case field == 7 && wire == wireBytes:
			graphs++
			return walk(b, func(field, wire int, _ uint64, b []byte) error {
				if wire != wireBytes || (field != 11 && field != 12) {
					return nil
				}
				if len(info.Inputs)+len(info.Outputs) >= maxIO {
					return fmt.Errorf("%w: more than %d graph inputs and outputs", ErrMalformed, maxIO)
				}
				io, err := valueInfo(b)
				if err != nil {
					return err
				}
				if field == 11 {
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
		return Info{}, fmt.Errorf("%w: no graph (ModelProto field 7)", ErrMalformed)
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

// valueInfo reads a ValueInfoProto: name (1) and type (2) -> tensor_type
// (1) -> elem_type (1), shape (2) -> dim (1) -> dim_value (1) | dim_param (2).
func valueInfo(b []byte) (IOInfo, error) {
	var io IOInfo
	err := walk(b, func(field, wire int, _ uint64, b []byte) error {
		switch {
		case field == 1 && wire == wireBytes:
			if len(b) > maxName || !utf8.Valid(b) {
				return fmt.Errorf("%w: value name is not a short UTF-8 string", ErrMalformed)
			}
			io.Name = string(b)
		case field == 2 && wire == wireBytes:
			return walk(b, func(field, wire int, _ uint64, b []byte) error {
				if field != 1 || wire != wireBytes { // sequence, map, ... types
					return nil
				}
				return walk(b, func(field, wire int, v uint64, b []byte) error {
					switch {
					case field == 1 && wire == wireVarint:
						io.ElemType = int64(v)
					case field == 2 && wire == wireBytes:
						io.Shape = io.Shape[:0]
						return walk(b, func(field, wire int, _ uint64, b []byte) error {
							if field != 1 || wire != wireBytes {
								return nil
							}
							if len(io.Shape) >= maxRank {
								return fmt.Errorf("%w: rank over %d", ErrMalformed, maxRank)
							}
							d := int64(-1)
							err := walk(b, func(field, wire int, v uint64, _ []byte) error {
								if field == 1 && wire == wireVarint && int64(v) >= 0 {
									d = int64(v)
								}
								return nil
							})
							io.Shape = append(io.Shape, d)
							return err
						})
					}
					return nil
				})
			})
		}
		return nil
	})
	if err != nil {
		return IOInfo{}, err
	}
	if io.Name == "" {
		return IOInfo{}, fmt.Errorf("%w: graph input or output without a name", ErrMalformed)
	}
	return io, nil
}

// walk calls fn for each field of one protobuf message: v for varints,
// b for length-delimited fields (a subslice of data, never a copy). Fixed
// width fields are skipped; groups (wire types 3 and 4, unused by ONNX) and
// invalid wire types are refused.
func walk(data []byte, fn func(field, wire int, v uint64, b []byte) error) error {
	for len(data) > 0 {
		tag, n := binary.Uvarint(data)
		if n <= 0 {
			return fmt.Errorf("%w: bad field tag", ErrMalformed)
		}
		data = data[n:]
		field, wire := tag>>3, int(tag&7)
		if field == 0 || field > 1<<29-1 {
			return fmt.Errorf("%w: field number %d", ErrMalformed, field)
		}
		var (
			v uint64
			b []byte
		)
		switch wire {
		case wireVarint:
			v, n = binary.Uvarint(data)
			if n <= 0 {
				return fmt.Errorf("%w: bad varint in field %d", ErrMalformed, field)
			}
			data = data[n:]
		case 1: // fixed64
			if len(data) < 8 {
				return fmt.Errorf("%w: truncated field %d", ErrMalformed, field)
			}
			data = data[8:]
		case wireI32:
			if len(data) < 4 {
				return fmt.Errorf("%w: truncated field %d", ErrMalformed, field)
			}
			data = data[4:]
		case wireBytes:
			l, n := binary.Uvarint(data)
			// Compare in uint64: a declared length is never trusted to
			// fit in an int or in the remaining bytes.
			if n <= 0 || l > uint64(len(data)-n) {
				return fmt.Errorf("%w: field %d declares more bytes than remain", ErrMalformed, field)
			}
			b = data[n : n+int(l)]
			data = data[n+int(l):]
		default:
			return fmt.Errorf("%w: wire type %d in field %d", ErrMalformed, wire, field)
		}
		if err := fn(int(field), wire, v, b); err != nil {
			return err
		}
	}
	return nil
}
