// Package tinytest holds what the tests of ONNX Runtime's host and of the
// classifier both know about the tiny synthetic model: its files, solid
// colour images, and the answer it must give for each (a known function of
// the mean colour), so either package's tests can check outputs exactly.
package tinytest

import (
	"math"
	"testing"

	"eyeflow/models"
	"eyeflow/onnx"
)

// Model is the tiny synthetic model under version.
func Model(t testing.TB, version string) models.ModelFiles {
	t.Helper()
	f, err := models.Synthesize(models.SynthOptions{Arch: models.ArchTiny, Version: version})
	if err != nil {
		t.Fatalf("synthesize tiny: %v", err)
	}
	return f
}

// Solid is a 224x224 RGB image of one colour.
func Solid(r, g, b byte) []byte {
	img := make([]byte, 3*onnx.ImageSize*onnx.ImageSize)
	for i := 0; i < len(img); i += 3 {
		img[i], img[i+1], img[i+2] = r, g, b
	}
	return img
}

// Expect computes in Go what the tiny model must answer for a solid
// colour: the normalised channel means times onnx.TinyWeights, softmaxed.
func Expect(rgb [3]byte) []float64 {
	w, bias := onnx.TinyWeights(15)
	logits := make([]float64, 15)
	for k := range 15 {
		v := bias[k]
		for c := range 3 {
			// Same float32 rounding of the normalised value as the LUT.
			x := float64(float32((float64(rgb[c])/255 - models.ImageNetMean[c]) / models.ImageNetStd[c]))
			v += x * w[c][k]
		}
		logits[k] = float64(float32(v))
	}
	return softmax(logits)
}

func softmax(logits []float64) []float64 {
	m := math.Inf(-1)
	for _, v := range logits {
		m = math.Max(m, v)
	}
	out := make([]float64, len(logits))
	var sum float64
	for i, v := range logits {
		out[i] = math.Exp(v - m)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}

// Argmax is the index of the largest value.
func Argmax(p []float64) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}

// Colours are solid colours whose tiny-model answers cover several
// classes, confident and unsure.
func Colours() [][3]byte {
	return [][3]byte{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 0}, {0, 255, 255}, {255, 0, 255}, {124, 116, 104}, {128, 128, 128}, {10, 10, 10}, {200, 150, 100}}
}
