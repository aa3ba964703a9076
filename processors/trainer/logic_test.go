package trainer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
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

// answers builds paired holdout answers: per class, n images of which the
// baseline gets baseRight right and the candidate candRight, overlapping
// as much as they can (both right on the first min of the two).
type classCase struct {
	class                   string
	n, baseRight, candRight int
	wrong                   string // the wrong answer ("other" unless set)
}

func answers(cases ...classCase) (cand, base []ImagePrediction) {
	for _, c := range cases {
		for i := range c.n {
			id := fmt.Sprintf("%s-%03d", c.class, i)
			wrong := "other"
			if c.wrong != "" {
				wrong = c.wrong
			} else if c.class == "other" {
				wrong = "normal"
			}
			b, k := wrong, wrong
			if i < c.baseRight {
				b = c.class
			}
			if i < c.candRight {
				k = c.class
			}
			base = append(base, ImagePrediction{ImageID: id, Class: c.class, Predicted: b, Confidence: 0.9})
			cand = append(cand, ImagePrediction{ImageID: id, Class: c.class, Predicted: k, Confidence: 0.8})
		}
	}
	return cand, base
}

func gateIn(cand, base []ImagePrediction) GateInput {
	return GateInput{Candidate: cand, Baseline: base, BaselineName: "prod fundus v1", Look: 1}
}

// TestCanaryGateOneImageDecidesNothing is the demo's refusal turned
// around: one image of a five-image class (amd 0.60 -> 0.40) is not a
// harm, and on enough earlier images the candidate is shown not worse.
func TestCanaryGateOneImageDecidesNothing(t *testing.T) {
	g := DefaultGate()
	cand, base := answers(classCase{"amd", 5, 3, 2, ""}, classCase{"cataract", 150, 120, 120, ""}, classCase{"normal", 150, 140, 140, ""})
	d := g.CanaryGate(gateIn(cand, base))
	if d.Verdict != VerdictPromote {
		t.Fatalf("one image lost in a five-image class: %s (%s), want promote", d.Verdict, d.Reason)
	}
	amd := d.Evidence.Classes[0]
	if amd.Class != "amd" || amd.Worse != 1 || amd.Harmed || amd.P != 0.5 {
		t.Errorf("amd: %+v, want 1 worse, p 0.5, not harmed", amd)
	}
	// Better by one image: not refused either.
	cand, base = answers(classCase{"amd", 5, 2, 3, ""}, classCase{"cataract", 150, 120, 120, ""}, classCase{"normal", 150, 140, 140, ""})
	if d := g.CanaryGate(gateIn(cand, base)); d.Verdict != VerdictPromote || !strings.Contains(d.Reason, "not worse on 305 earlier holdout_2 images") {
		t.Errorf("one image better: %s (%s)", d.Verdict, d.Reason)
	}
	t.Log(d.Reason)
}

func TestCanaryGateRefusesAHarmedClass(t *testing.T) {
	g := DefaultGate()
	// cataract: prod right on 12 of 12, the candidate on none; better
	// elsewhere, so the overall difference alone would not refuse it.
	cand, base := answers(classCase{"cataract", 12, 12, 0, ""}, classCase{"glaucoma", 40, 20, 40, ""}, classCase{"normal", 40, 30, 40, ""})
	d := g.CanaryGate(gateIn(cand, base))
	if d.Verdict != VerdictRefuse {
		t.Fatalf("a class lost on 12 images: %s (%s), want refuse", d.Verdict, d.Reason)
	}
	// McNemar: P(X >= 12 | 12, 1/2) = 1/4096; Holm over 3 classes: 3/4096.
	for _, want := range []string{"class harmed: cataract (12 worse, 0 better of 12 images; McNemar p 2.4e-04, Holm p 7.3e-04)", "refused: "} {
		if !strings.Contains(d.Reason, want) {
			t.Errorf("reason %q lacks %q", d.Reason, want)
		}
	}
	c := d.Evidence.Classes[0]
	if !c.Harmed || c.P != 0.0002441 || c.HolmP != 0.0007324 {
		t.Errorf("cataract evidence %+v", c)
	}
}

func TestCanaryGateHoldsOnTooFewImages(t *testing.T) {
	g := DefaultGate()
	cand, base := answers(classCase{"cataract", 5, 4, 4, ""}, classCase{"glaucoma", 5, 4, 4, ""}, classCase{"normal", 5, 5, 5, ""})
	d := g.CanaryGate(gateIn(cand, base))
	if d.Verdict != VerdictHold || d.Evidence.ImagesToDecide == 0 || !strings.HasPrefix(d.Reason, "hold: insufficient evidence (about ") {
		t.Fatalf("15 images, identical answers: %s (%s), want a hold with how many images would decide it", d.Verdict, d.Reason)
	}
	need := d.Evidence.ImagesToDecide
	// More images like these: the next look decides, reading the earlier
	// images first, in the order the first look fixed.
	more, moreBase := answers(classCase{"cataract", need / 3, need / 4, need / 4, ""}, classCase{"glaucoma", need / 3, need / 4, need / 4, ""}, classCase{"normal", need/3 + 2, need / 3, need / 3, ""})
	for i := range more {
		more[i].ImageID, moreBase[i].ImageID = "later-"+more[i].ImageID, "later-"+moreBase[i].ImageID
	}
	in := gateIn(append(cand, more...), append(base, moreBase...))
	in.Order, in.Look = d.Order, 2
	d2 := g.CanaryGate(in)
	if d2.Verdict != VerdictPromote {
		t.Fatalf("after %d more images: %s (%s), want promote", len(more), d2.Verdict, d2.Reason)
	}
	if !slices.Equal(d2.Order[:15], d.Order) {
		t.Error("the second look does not extend the first's order")
	}
	// A candidate clearly worse is refused, not held.
	cand, base = answers(classCase{"cataract", 20, 18, 5, ""}, classCase{"glaucoma", 20, 18, 5, ""}, classCase{"normal", 20, 18, 18, ""})
	if d := g.CanaryGate(gateIn(cand, base)); d.Verdict != VerdictRefuse || !strings.Contains(d.Reason, "worse on 60 earlier holdout_2 images") {
		t.Errorf("clearly worse: %s (%s)", d.Verdict, d.Reason)
	}
}

func TestCanaryGateFirstVersionBeatsTheMajorityClass(t *testing.T) {
	g := DefaultGate()
	// normal is the majority; always answering it is right on 20 of 60.
	cand, _ := answers(classCase{"cataract", 20, 0, 18, ""}, classCase{"glaucoma", 20, 0, 17, ""}, classCase{"normal", 20, 0, 15, ""})
	in := GateInput{Candidate: cand, Majority: "normal", BaselineName: "majority class normal", Look: 1}
	d := g.CanaryGate(in)
	if d.Verdict != VerdictPromote || !strings.Contains(d.Reason, "better on 60 holdout_2 images than always answering normal") {
		t.Errorf("first version: %s (%s)", d.Verdict, d.Reason)
	}
	// Above chance (1/3) but not above the majority class: not promoted.
	cand, _ = answers(classCase{"cataract", 20, 0, 3, ""}, classCase{"glaucoma", 20, 0, 3, ""}, classCase{"normal", 20, 0, 20, ""})
	in.Candidate = cand
	if d := g.CanaryGate(in); d.Verdict == VerdictPromote {
		t.Errorf("accuracy 0.43 against a majority class at 0.33 on 60 images: %s (%s)", d.Verdict, d.Reason)
	}
}

func TestCanaryGateDriftedPopulationAndFloors(t *testing.T) {
	g := DefaultGate()
	cand, base := answers(classCase{"cataract", 80, 70, 70, ""}, classCase{"normal", 80, 75, 75, ""}, classCase{"amd", 30, 5, 28, ""})
	in := gateIn(cand, base)
	in.Population = map[string]bool{}
	for _, p := range cand {
		if p.Class == "amd" {
			in.Population[p.ImageID] = true
		}
	}
	d := g.CanaryGate(in)
	if d.Verdict != VerdictPromote || !strings.Contains(d.Reason, "better on 30 holdout_2 images of the population the drift alert asked for") {
		t.Errorf("drift retrain better on the drifted images: %s (%s)", d.Verdict, d.Reason)
	}
	// Not better where it was asked to be: held.
	cand, base = answers(classCase{"cataract", 80, 70, 70, ""}, classCase{"normal", 80, 75, 75, ""}, classCase{"amd", 30, 20, 20, ""})
	in.Candidate, in.Baseline = cand, base
	if d := g.CanaryGate(in); d.Verdict != VerdictHold {
		t.Errorf("drift retrain no better on the drifted images: %s (%s), want hold", d.Verdict, d.Reason)
	}
	// A sensitivity floor the candidate is clearly below: refused.
	g.MinSensitivity = 0.95
	cand, base = answers(classCase{"cataract", 80, 40, 40, "normal"}, classCase{"normal", 80, 75, 75, ""})
	d = g.CanaryGate(gateIn(cand, base))
	if d.Verdict != VerdictRefuse || !strings.Contains(d.Reason, "sensitivity below its floor on 80 images") {
		t.Errorf("below the sensitivity floor: %s (%s)", d.Verdict, d.Reason)
	}
}

// TestCanaryGateIsDeterministic: the same inputs, in any order, give
// byte-identical evidence.
func TestCanaryGateIsDeterministic(t *testing.T) {
	g := DefaultGate()
	cand, base := answers(classCase{"cataract", 30, 20, 25, ""}, classCase{"glaucoma", 30, 25, 20, ""}, classCase{"normal", 30, 28, 28, ""})
	a, _ := json.Marshal(g.CanaryGate(gateIn(cand, base)))
	rng := rand.New(rand.NewPCG(1, 1))
	rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	rng.Shuffle(len(base), func(i, j int) { base[i], base[j] = base[j], base[i] })
	b, _ := json.Marshal(g.CanaryGate(gateIn(cand, base)))
	if !bytes.Equal(a, b) {
		t.Errorf("the same answers in another order give another decision:\n%s\n%s", a, b)
	}
}

// TestCanaryGateRepeatedLooksUnderTheNull: candidate and prod equally good
// (each right on 70% of images, independently, so they disagree often),
// a drift retrain looked at after every batch of 10 labelled images of the
// drifted population, up to 300: the share of runs promoted at any look
// stays at most the nominal alpha/2.
func TestCanaryGateRepeatedLooksUnderTheNull(t *testing.T) {
	g := DefaultGate()
	g.BootstrapRounds = -1 // reported, not decided on: left out here
	const runs, n, batch = 100, 300, 30
	rng := rand.New(rand.NewPCG(24, 2026))
	promoted := 0
	// Earlier images: identical answers, enough to show non-inferiority,
	// so the drifted population decides.
	earlierCand, earlierBase := answers(classCase{"normal", 200, 180, 180, ""})
	for range runs {
		cand, base := slices.Clone(earlierCand), slices.Clone(earlierBase)
		pop := map[string]bool{}
		var order []string
		for look := 1; look <= n/batch; look++ {
			for i := range batch {
				id := fmt.Sprintf("drift-%03d-%d", look, i)
				pop[id] = true
				ans := func() string {
					if rng.Float64() < 0.7 {
						return "amd"
					}
					return "other"
				}
				cand = append(cand, ImagePrediction{ImageID: id, Class: "amd", Predicted: ans()})
				base = append(base, ImagePrediction{ImageID: id, Class: "amd", Predicted: ans()})
			}
			in := GateInput{Candidate: cand, Baseline: base, Population: pop, Order: order, Look: look}
			d := g.CanaryGate(in)
			order = d.Order
			if d.Verdict == VerdictPromote {
				promoted++
				break
			}
			if d.Verdict == VerdictRefuse {
				break
			}
		}
	}
	rate := float64(promoted) / runs
	t.Logf("%d runs of up to %d looks: %.3f promoted (nominal %.3f)", runs, n/batch, rate, g.Alpha/2)
	if rate > g.Alpha/2 {
		t.Errorf("repeated looks under the null promote %.3f of runs, more than %.3f", rate, g.Alpha/2)
	}
}

func TestProdGateAndRollback(t *testing.T) {
	g := DefaultGate()
	prod := LiveStats{Predictions: 500, LowConfidence: 100}
	need := g.MinLive(prod)
	// (1.96 + 0.8416)^2 * 2 * 0.2 * 0.8 / 0.1^2 = 251.2
	if need != 252 {
		t.Errorf("MinLive = %d, want 252 for a prod rate of 0.2 and a margin of 0.10", need)
	}
	tests := []struct {
		name    string
		canary  LiveStats
		paired  []float64
		verdict string
		why     string
	}{
		{"too few live predictions", LiveStats{Predictions: need - 1}, nil, VerdictWait, "of the 252 live predictions"},
		{"as often unsure as prod", LiveStats{Predictions: need, LowConfidence: need / 5}, nil, VerdictPromote, "not more often unsure"},
		{"more often unsure", LiveStats{Predictions: need, LowConfidence: need / 3}, nil, VerdictRefuse, "more often unsure than the margin allows"},
		{"more drift", LiveStats{Predictions: need, DriftFiring: 1}, nil, VerdictRefuse, "drift alerts"},
		{"worse on labelled live images", LiveStats{Predictions: 10}, slices.Repeat([]float64{-1, -1, 0}, 20), VerdictRefuse, "worse on 60 labelled live images"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := g.ProdGate(tt.canary, prod, tt.paired); d.Verdict != tt.verdict || !strings.Contains(d.Reason, tt.why) {
				t.Errorf("ProdGate = %s (%s), want %s with %q", d.Verdict, d.Reason, tt.verdict, tt.why)
			}
		})
	}
	worse := LiveStats{Predictions: 50, Labelled: 20, Correct: 10}
	if back, why := g.ShouldRollback(true, worse, 40, 50); !back {
		t.Errorf("drift plus feedback 10/20 against 40/50 must roll back: %s", why)
	}
	if back, _ := g.ShouldRollback(false, worse, 40, 50); back {
		t.Error("no drift: no rollback")
	}
	if back, _ := g.ShouldRollback(true, worse, 25, 50); back {
		t.Error("feedback as good as the previous version's: no rollback")
	}
	if back, why := g.ShouldRollback(true, LiveStats{Labelled: 2, Correct: 1}, 4, 5); back {
		t.Errorf("one of two against four of five is noise: %s", why)
	}
	if back, _ := g.ShouldRollback(true, LiveStats{Predictions: 50}, 40, 50); back {
		t.Error("no labelled feedback: no rollback")
	}
}
