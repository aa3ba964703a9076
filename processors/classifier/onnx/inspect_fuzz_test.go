package onnx

import (
	"errors"
	"slices"
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
	for name, data := range map[string][]byte{
		"empty":     nil,
		"text":      []byte("not a model"),
		"truncated": Tiny(5, false)[:40],
		"huge len":  {0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f}, // field 7, 4 GiB declared
		"no graph":  {0x08, 0x08},
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
