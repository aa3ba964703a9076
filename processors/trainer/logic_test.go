package trainer

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"eyeflow/schemas"
)

// blobs returns n points per class around distinct centres in d dimensions.
func blobs(classes, n, d int, spread float64, seed uint64) ([][]float32, []int) {
	rng := rand.New(rand.NewPCG(seed, 1))
	centres := make([][]float64, classes)
	for k := range centres {
		centres[k] = make([]float64, d)
		for j := range centres[k] {
			centres[k][j] = rng.NormFloat64() * 3
		}
	}
	var x [][]float32
	var y []int
	for k := range classes {
		for range n {
			row := make([]float32, d)
			for j := range row {
				row[j] = float32(centres[k][j] + rng.NormFloat64()*spread + 100) // an offset standardisation must remove
			}
			x, y = append(x, row), append(y, k)
		}
	}
	return x, y
}

func TestLogRegFitsDeterministically(t *testing.T) {
	x, y := blobs(4, 30, 16, 1, 7)
	a, err := FitLogReg(x, y, 4, LogRegOptions{Lambda: 1e-3, Balanced: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := FitLogReg(x, y, 4, LogRegOptions{Lambda: 1e-3, Balanced: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.W, b.W) || !reflect.DeepEqual(a.B, b.B) {
		t.Fatal("two fits on the same data differ: the embedded engine must be deterministic")
	}
	if acc := accuracy(y, a.Predict(x)); acc < 0.95 {
		t.Errorf("train accuracy %.2f on separable blobs, want >= 0.95", acc)
	}
	// The folded head (standardisation inside the weights) must give the
	// same logits as the standardised model: that is what goes into ONNX.
	w, bias := a.Folded()
	for _, row := range x[:40] {
		want := a.Predict([][]float32{row})[0]
		best, bestV := 0, math.Inf(-1)
		for k := range a.Classes {
			v := float64(bias[k])
			for j, f := range row {
				v += float64(w[k*a.Dim+j]) * float64(f)
			}
			if v > bestV {
				best, bestV = k, v
			}
		}
		if best != want {
			t.Fatalf("folded head predicts %d, model %d", best, want)
		}
	}
}

func TestLogRegBalancedWeights(t *testing.T) {
	// 90 images of class 0, 10 of class 1, overlapping: unweighted, the
	// minority class is mostly given up; balanced, its recall rises.
	x, y := blobs(2, 90, 4, 4, 3)
	x = append(x[:90], x[90:100]...)
	y = append(y[:90], y[90:100]...)
	recall1 := func(bal bool) float64 {
		m, err := FitLogReg(x, y, 2, LogRegOptions{Lambda: 1e-2, Balanced: bal})
		if err != nil {
			t.Fatal(err)
		}
		p := m.Predict(x)
		hit := 0
		for i := 90; i < 100; i++ {
			if p[i] == 1 {
				hit++
			}
		}
		return float64(hit) / 10
	}
	if b, u := recall1(true), recall1(false); b <= u {
		t.Errorf("balanced minority recall %.2f is not above the unweighted fit's %.2f", b, u)
	}
}

func TestScore(t *testing.T) {
	classes := []string{"a", "b", "c"}
	y := []int{0, 0, 0, 0, 1, 1, 2, 2}
	pred := []int{0, 0, 0, 1, 1, 0, 2, 2}
	conf := []float64{0.9, 0.9, 0.9, 0.6, 0.8, 0.55, 0.95, 0.95}
	m := Score(classes, y, pred, conf)
	if m.Images != 8 || math.Abs(m.Accuracy-6.0/8) > 1e-12 {
		t.Errorf("images %d accuracy %v, want 8 and 0.75", m.Images, m.Accuracy)
	}
	// F1: a = 2*3/(6+1+1) = 0.75, b = 2*1/(2+1+1) = 0.5, c = 1.
	if want := (0.75 + 0.5 + 1) / 3; math.Abs(m.MacroF1-want) > 1e-12 {
		t.Errorf("macro-F1 %v, want %v", m.MacroF1, want)
	}
	if m.Recall["a"] != 0.75 || m.Recall["b"] != 0.5 || m.Recall["c"] != 1 || m.Support["a"] != 4 {
		t.Errorf("recall %v support %v", m.Recall, m.Support)
	}
	if m.Confusion[0][1] != 1 || m.Confusion[1][0] != 1 || m.Confusion[2][2] != 2 {
		t.Errorf("confusion %v", m.Confusion)
	}
	// ECE by hand: bins 13 (0.9: 3 right, conf .9 -> .1 gap... ) computed
	// from the definition: |mean conf - acc| weighted by bin share.
	want := 3.0/8*math.Abs(0.9-1) + 1.0/8*math.Abs(0.6-0) + 1.0/8*math.Abs(0.8-1) + 1.0/8*math.Abs(0.55-0) + 2.0/8*math.Abs(0.95-1)
	if math.Abs(m.ECE-want) > 1e-12 {
		t.Errorf("ECE %v, want %v", m.ECE, want)
	}
	if !(m.AccuracyCI95[0] <= m.Accuracy && m.Accuracy <= m.AccuracyCI95[1]) || m.AccuracyCI95[0] == m.AccuracyCI95[1] {
		t.Errorf("accuracy interval %v around %v", m.AccuracyCI95, m.Accuracy)
	}
	if again := Score(classes, y, pred, conf); !reflect.DeepEqual(again, m) {
		t.Error("Score is not deterministic")
	}
}

func TestCanaryGate(t *testing.T) {
	g := DefaultGate()
	hm := func(f1 float64, recall map[string]float64, support map[string]int) schemas.HoldoutMetrics {
		return schemas.HoldoutMetrics{Images: 30, Accuracy: f1, MacroF1: f1, Recall: recall, Support: support}
	}
	sup := map[string]int{"a": 10, "b": 10, "c": 4}
	prod := hm(0.70, map[string]float64{"a": 0.8, "b": 0.6, "c": 1}, sup)
	tests := []struct {
		name string
		cand schemas.HoldoutMetrics
		prod *schemas.HoldoutMetrics
		pass bool
		why  string
	}{
		{"no trained prod, above chance", hm(0.5, map[string]float64{"a": 0.5}, sup), nil, true, "prod serves no trained model"},
		{"no trained prod, at chance", schemas.HoldoutMetrics{Images: 30, Accuracy: 1.0 / 3, Support: sup}, nil, false, "not above chance"},
		{"beats by the margin exactly", hm(0.72, map[string]float64{"a": 0.8, "b": 0.6, "c": 1}, sup), &prod, true, "beats prod"},
		{"beats by less than the margin", hm(0.7199, map[string]float64{"a": 0.8, "b": 0.6, "c": 1}, sup), &prod, false, "does not beat"},
		{"a class loses exactly 0.10", hm(0.80, map[string]float64{"a": 0.7, "b": 0.9, "c": 1}, sup), &prod, true, "beats prod"},
		{"a class loses more than 0.10", hm(0.80, map[string]float64{"a": 0.6, "b": 0.9, "c": 1}, sup), &prod, false, "a 0.80 -> 0.60"},
		{"a small class may lose more", hm(0.80, map[string]float64{"a": 0.8, "b": 0.9, "c": 0.25}, sup), &prod, true, "beats prod"},
		{"empty holdout", schemas.HoldoutMetrics{}, &prod, false, "no images"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pass, why := g.CanaryGate(tt.cand, tt.prod)
			if pass != tt.pass || !strings.Contains(why, tt.why) {
				t.Errorf("CanaryGate = %v, %q; want %v and a reason with %q", pass, why, tt.pass, tt.why)
			}
		})
	}
}

func TestProdGateAndRollback(t *testing.T) {
	g := DefaultGate()
	g.CanaryMin = 100
	tests := []struct {
		name         string
		canary, prod LiveStats
		verdict      string
	}{
		{"too few live predictions", LiveStats{Predictions: 99}, LiveStats{Predictions: 500}, VerdictWait},
		{"as good as prod", LiveStats{Predictions: 100, LowConfidence: 10}, LiveStats{Predictions: 500, LowConfidence: 50}, VerdictPromote},
		{"within the slack", LiveStats{Predictions: 100, LowConfidence: 12}, LiveStats{Predictions: 500, LowConfidence: 50}, VerdictPromote},
		{"more low-confidence answers", LiveStats{Predictions: 100, LowConfidence: 13}, LiveStats{Predictions: 500, LowConfidence: 50}, VerdictRefuse},
		{"more drift", LiveStats{Predictions: 100, DriftFiring: 1}, LiveStats{Predictions: 500}, VerdictRefuse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v, why := g.ProdGate(tt.canary, tt.prod); v != tt.verdict {
				t.Errorf("ProdGate = %s (%s), want %s", v, why, tt.verdict)
			}
		})
	}
	worse := LiveStats{Predictions: 50, Labelled: 20, Correct: 10}
	if back, _ := g.ShouldRollback(true, worse, 0.8); !back {
		t.Error("drift plus worse labelled feedback must roll back")
	}
	if back, _ := g.ShouldRollback(false, worse, 0.8); back {
		t.Error("no drift: no rollback")
	}
	if back, _ := g.ShouldRollback(true, worse, 0.5); back {
		t.Error("feedback as good as the previous version's: no rollback")
	}
	if back, _ := g.ShouldRollback(true, LiveStats{Predictions: 50}, 0.8); back {
		t.Error("no labelled feedback: no rollback")
	}
}
