//go:build !race

// The plain-Go DenseNet121 reference takes minutes under the race detector
// and computes nothing concurrent: make test runs it in its pass without
// -race.

package inference

import (
	"eyeflow/internal/tinytest"
	"eyeflow/models"
	"eyeflow/onnx"
	"fmt"
	"math"
	"testing"
)

// TestDenseNet121MatchesAReference runs the synthetic DenseNet121 through
// the classifier (input normalisation and CHW packing, ONNX Runtime,
// softmax) on an asymmetric image and compares every class with an
// independent evaluation: the same graph computed in plain Go from the
// image, normalised here with ImageNet's mean and std. Softmax is invariant
// to a shift of the logits, so the comparison is of log-probability
// differences against class 0, which equal the logit differences.
func TestDenseNet121MatchesAReference(t *testing.T) {
	initORT(t)
	f := denseNet(t)
	m, err := LoadModel(f, SessionOptions{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	img := asymmetricImage()
	probs, err := m.Run([][]byte{img})
	if err != nil {
		t.Fatal(err)
	}
	got := probs[0]

	in := newRef(3, imageSize, imageSize)
	for c := range 3 {
		for i := range imageSize * imageSize {
			in.plane(c)[i] = float32((float64(img[3*i+c])/255 - models.ImageNetMean[c]) / models.ImageNetStd[c])
		}
	}
	logits := refEval(t, onnx.DenseNet121Graph(len(m.Labels), models.SyntheticSeed), in)
	want := Softmax(logits)

	spread := 0.0
	for k := range logits {
		spread = max(spread, math.Abs(float64(logits[k]-logits[0])))
	}
	if spread < 0.05 {
		t.Fatalf("reference logits %v hardly differ: the comparison would prove nothing", logits)
	}
	var report string
	for k := range want {
		gotD := math.Log(got[k]) - math.Log(got[0])
		wantD := float64(logits[k] - logits[0])
		report += fmt.Sprintf("\n  class %2d: p %.6f (reference %.6f), logit-logit0 %+.5f (reference %+.5f)", k, got[k], want[k], gotD, wantD)
		if math.Abs(gotD-wantD) > 1e-3 {
			t.Errorf("class %d: logit difference %+.5f, the reference gives %+.5f", k, gotD, wantD)
		}
	}
	if tinytest.Argmax(got) != tinytest.Argmax(want) {
		t.Errorf("class %d, the reference says %d", tinytest.Argmax(got), tinytest.Argmax(want))
	}
	t.Log(report)
}
