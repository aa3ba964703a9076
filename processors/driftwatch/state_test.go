package driftwatch

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"eyeflow/schemas"
)

var classes = []string{"amd", "cataract", "diabetic_retinopathy", "glaucoma", "normal"}

// trainShares is the class mix of the synthetic training split.
var trainShares = []float64{0.1, 0.1, 0.2, 0.15, 0.45}

func pick(r *rand.Rand, shares []float64) string {
	u := r.Float64()
	for i, s := range shares {
		if u < s {
			return classes[i]
		}
		u -= s
	}
	return classes[len(classes)-1]
}

// synthPrediction makes a prediction whose top-1 probability is conf, the
// rest spread over the other classes.
func synthPrediction(i int, split, class string, conf float64) schemas.Prediction {
	topK := []schemas.ClassProb{{Class: class, Probability: conf}}
	for _, c := range classes {
		if c != class {
			topK = append(topK, schemas.ClassProb{Class: c, Probability: (1 - conf) / float64(len(classes)-1)})
		}
	}
	return schemas.Prediction{
		Schema: schemas.SchemaPrediction, ImageID: fmt.Sprintf("img-%05d", i), Split: split,
		Source: schemas.ObjectRef{Bucket: "raw", Key: fmt.Sprintf("unlabeled/img-%05d.jpg", i)},
		Env:    schemas.EnvProd, ModelName: "tiny", ModelVersion: "v1",
		PredictedClass: class, Confidence: conf, TopK: topK, TrueLabel: map[bool]string{true: class}[split == schemas.SplitTrain],
		Time: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
	}
}

// TestDistributionMonitors feeds a reference phase (holdout and train
// predictions of a healthy model) and then live traffic, stable or shifted,
// and checks which signals fire.
func TestDistributionMonitors(t *testing.T) {
	tests := []struct {
		name string
		// live returns the predicted class and confidence of live prediction i.
		live       func(r *rand.Rand, i int) (string, float64)
		wantKS     bool
		wantChi2   bool
		liveWindow int
	}{
		{"stable", func(r *rand.Rand, i int) (string, float64) { return pick(r, trainShares), 0.6 + 0.39*r.Float64() }, false, false, 6},
		{"confidence shift", func(r *rand.Rand, i int) (string, float64) { return pick(r, trainShares), 0.5 + 0.3*r.Float64() }, true, false, 3},
		{"class shift", func(r *rand.Rand, i int) (string, float64) {
			return pick(r, []float64{0.05, 0.05, 0.45, 0.15, 0.30}), 0.6 + 0.39*r.Float64()
		}, false, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			r := rand.New(rand.NewPCG(7, 11))
			st := State{Env: schemas.EnvProd, ModelVersion: "v1"}
			seq := uint64(0)
			fired := map[string]int{}
			feed := func(p schemas.Prediction) {
				seq++
				outs, err := apply(cfg, &st, p, seq, time.Unix(0, 0))
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range outs {
					if o.Subject != schemas.DriftSubject(schemas.EnvProd) {
						continue
					}
					var a schemas.DriftAlert
					if err := json.Unmarshal(o.Event.([]byte), &a); err != nil {
						t.Fatal(err)
					}
					if a.Signal != SignalLowConfidence {
						fired[a.Signal+"/"+a.State]++
						t.Logf("%s %s: %s", a.Signal, a.State, a.Detail)
					}
				}
			}
			// Reference phase: the model on its holdouts and train split.
			for i := range 600 {
				split := []string{schemas.SplitHoldout1, schemas.SplitHoldout2, schemas.SplitHoldout3, schemas.SplitTrain}[i%4]
				feed(synthPrediction(i, split, pick(r, trainShares), 0.6+0.39*r.Float64()))
			}
			for i := range tt.liveWindow * cfg.KS.Window {
				class, conf := tt.live(r, i)
				feed(synthPrediction(1000+i, schemas.SplitUnlabeled, class, conf))
			}
			if st.KS.Tested != tt.liveWindow || st.Chi2.Tested != tt.liveWindow {
				t.Fatalf("tested %d KS and %d chi2 windows, want %d each", st.KS.Tested, st.Chi2.Tested, tt.liveWindow)
			}
			for signal, want := range map[string]bool{SignalEntropyKS: tt.wantKS, SignalClassChi2: tt.wantChi2} {
				n := fired[signal+"/"+StateFiring]
				if want && n != 1 {
					t.Errorf("%s fired %d times on a shifted stream, want exactly once (edge-triggered)", signal, n)
				}
				if !want && n != 0 {
					t.Errorf("%s fired %d times, want quiet", signal, n)
				}
				if fired[signal+"/"+StateResolved] != 0 {
					t.Errorf("%s resolved while the shift lasts", signal)
				}
			}
		})
	}
}

// TestDistributionMonitorResolves: once live traffic is healthy again the
// firing alert resolves on the next window.
func TestDistributionMonitorResolves(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Chi2.TrainDistribution = map[string]float64{}
	for i, c := range classes {
		cfg.Chi2.TrainDistribution[c] = trainShares[i]
	}
	cfg.KS.Enabled = false
	r := rand.New(rand.NewPCG(3, 4))
	st := State{Env: schemas.EnvProd, ModelVersion: "v1"}
	var states []string
	seq := uint64(0)
	phase := func(n int, shares []float64) {
		for range n {
			seq++
			outs, err := apply(cfg, &st, synthPrediction(int(seq), "", pick(r, shares), 0.9), seq, time.Unix(0, 0))
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range outs {
				if o.Subject != schemas.DriftSubject(st.Env) {
					continue // the firing alert's labelling request
				}
				var a schemas.DriftAlert
				if err := json.Unmarshal(o.Event.([]byte), &a); err != nil {
					t.Fatal(err)
				}
				states = append(states, a.Signal+"/"+a.State)
			}
		}
	}
	phase(2*cfg.Chi2.Window, []float64{0, 0, 0, 0, 1}) // everything "normal"
	phase(2*cfg.Chi2.Window, trainShares)
	want := []string{SignalClassChi2 + "/firing", SignalClassChi2 + "/resolved"}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", states, want)
	}
}

// TestStreakThresholdBoundary: "below the threshold" is strict. A
// confidence of exactly the threshold is confident: it neither counts
// toward a streak nor lets one go on, so five predictions at exactly 0.5
// stay quiet and one at 0.5 inside a dip splits it.
func TestStreakThresholdBoundary(t *testing.T) {
	below := math.Nextafter(0.5, 0)
	tests := []struct {
		name        string
		confidences []float64
		wantFiring  int
	}{
		{"five at exactly the threshold", []float64{0.5, 0.5, 0.5, 0.5, 0.5}, 0},
		{"five just below", []float64{below, below, below, below, below}, 1},
		{"a dip split by one at exactly the threshold", []float64{below, below, below, 0.5, below, below}, 0},
		{"four below, then exactly the threshold, then one below", []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.1}, 0},
		{"five below, the sixth at the threshold resolves", []float64{0.1, 0.2, 0.3, 0.4, below, 0.5}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.KS.Enabled, cfg.Chi2.Enabled = false, false
			st := State{Env: schemas.EnvProd, ModelVersion: "v1"}
			var firing, resolved int
			for i, c := range tt.confidences {
				outs, err := apply(cfg, &st, synthPrediction(i, schemas.SplitUnlabeled, "normal", c), uint64(i+1), time.Unix(0, 0))
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range outs {
					if o.Subject != schemas.DriftSubject(schemas.EnvProd) {
						continue
					}
					var a schemas.DriftAlert
					if err := json.Unmarshal(o.Event.([]byte), &a); err != nil {
						t.Fatal(err)
					}
					switch a.State {
					case StateFiring:
						firing++
					case StateResolved:
						resolved++
					}
				}
			}
			if firing != tt.wantFiring {
				t.Errorf("confidences %v: %d firing alerts, want %d", tt.confidences, firing, tt.wantFiring)
			}
			if last := tt.confidences[len(tt.confidences)-1]; firing == 1 && last >= cfg.Threshold && resolved != 1 {
				t.Errorf("confidences %v: the last, at the threshold, did not resolve the alert", tt.confidences)
			}
		})
	}
}
