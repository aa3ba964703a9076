package onnx

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestInspect checks Inspect against the models this package writes: the
// names and shapes it reads are the ones encoded.
func TestInspect(t *testing.T) {
	info, err := Inspect(Tiny(5, false))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Inputs) != 1 || info.Inputs[0].Name != InputName || info.Inputs[0].ElemType != 1 ||
		!slices.Equal(info.Inputs[0].Shape, []int64{-1, 3, ImageSize, ImageSize}) {
		t.Fatalf("inputs %+v", info.Inputs)
	}
	if len(info.Outputs) != 1 || info.Outputs[0].Name != OutputName {
		t.Fatalf("outputs %+v", info.Outputs)
	}
	tiny := Tiny(5, false)
	// withInput is Tiny's graph with one more input declared.
	withInput := func(in ValueInfo) []byte {
		var g Graph
		g.Inputs, g.Outputs = ioInfo(5)
		g.Inputs = append(g.Inputs, in)
		return g.Encode()
	}
	if _, err := Inspect(withInput(ValueInfo{Name: "extra", Shape: make([]Dim, maxRank)})); err != nil {
		t.Fatalf("rank %d: %v", maxRank, err)
	}
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("not a model"),
		"truncated": tiny[:40],
		"huge len":  {0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f}, // field 7, 4 GiB declared
		"no graph":  {0x08, 0x08},
		// Protobuf merges two concatenated messages: two graphs.
		"two models": append(slices.Clone(tiny), tiny...),
		"rank":       withInput(ValueInfo{Name: "extra", Shape: make([]Dim, maxRank+1)}),
		"long name":  withInput(ValueInfo{Name: strings.Repeat("x", maxName+1)}),
		"not UTF-8":  withInput(ValueInfo{Name: "\xff"}),
		"huge input": withInput(ValueInfo{Name: "extra", Shape: []Dim{{Param: strings.Repeat("N", maxValueInfo)}}}),
	} {
		if _, err := Inspect(data); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzInspect: arbitrary bytes never panic, every error wraps
// ErrMalformed, and a success names at least one input and output (the
// declared sizes of a hostile file are never trusted for allocation).
func FuzzInspect(f *testing.F) {
	f.Add(Tiny(3, false))
	f.Add(Tiny(15, true))
	f.Add([]byte{0x08, 0x08, 0x3a, 0x00})
	f.Add([]byte{0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Inspect(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(info.Inputs) == 0 || len(info.Outputs) == 0 || len(info.Inputs)+len(info.Outputs) > maxIO {
			t.Fatalf("accepted with %d inputs, %d outputs", len(info.Inputs), len(info.Outputs))
		}
		for _, io := range append(info.Inputs, info.Outputs...) {
			if io.Name == "" || len(io.Shape) > maxRank {
				t.Fatalf("bad value info %+v", io)
			}
		}
	})
}
