package stats

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
)

func near(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.6f, want %.6f", what, got, want)
	}
}

// Published values: Newcombe, "Two-sided confidence intervals for the
// single proportion" and "Interval estimation for the difference between
// independent proportions", Statistics in Medicine 17 (1998).
func TestWilsonKnownValues(t *testing.T) {
	for _, c := range []struct {
		k, n   int
		lo, hi float64
	}{{81, 263, 0.2553, 0.3662}, {15, 148, 0.0624, 0.1605}, {8, 10, 0.4902, 0.9433}, {0, 10, 0, 0.2775}} {
		w := Wilson(c.k, c.n, 0.95)
		near(t, "Wilson lo "+strconv.Itoa(c.k)+"/"+strconv.Itoa(c.n), w.Lo, c.lo, 5e-5)
		near(t, "Wilson hi "+strconv.Itoa(c.k)+"/"+strconv.Itoa(c.n), w.Hi, c.hi, 5e-5)
	}
}

func TestTwoProportionKnownValues(t *testing.T) {
	r := TwoProportion(56, 70, 48, 80, 0.95) // Newcombe 1998, method 10: 0.0524 to 0.3339
	near(t, "diff", r.Diff.Estimate, 0.2, 1e-12)
	near(t, "Newcombe lo", r.Diff.Lo, 0.0524, 5e-5)
	near(t, "Newcombe hi", r.Diff.Hi, 0.3339, 5e-5)
	// Pooled z by hand: 30/100 vs 20/100, pool 0.25, se sqrt(.25*.75*.02).
	r = TwoProportion(30, 100, 20, 100, 0.95)
	near(t, "z", r.Z, 1.6329932, 1e-6)
	near(t, "p", r.PGreater, 0.0512352, 1e-6)
	if n := TwoProportionSampleSize(0.5, 0.1, 0.05, 0.8); n != 310 {
		t.Errorf("sample size %d, want 310 ((1.645+0.842)^2 * 0.5 / 0.01 = 309.1)", n)
	}
}

func TestMcNemarAndHolm(t *testing.T) {
	near(t, "McNemar(5,1)", McNemar(5, 1), 7.0/64, 1e-12) // P(X>=5 | 6, 1/2) = (6+1)/64
	near(t, "McNemar(1,0)", McNemar(1, 0), 0.5, 1e-12)
	near(t, "McNemar(0,3)", McNemar(0, 3), 1, 1e-12)
	near(t, "McNemar(0,0)", McNemar(0, 0), 1, 1e-12)
	// sum_{i=15}^{20} C(20,i) / 2^20
	near(t, "McNemar(15,5)", McNemar(15, 5), 0.020694732666015625, 1e-12)
	got := Holm([]float64{0.01, 0.04, 0.03, 0.005})
	want := []float64{0.03, 0.06, 0.06, 0.02}
	for i := range want {
		near(t, "Holm["+strconv.Itoa(i)+"]", got[i], want[i], 1e-12)
	}
	if h := Holm([]float64{0.9, 0.8}); h[0] != 1 || h[1] != 1 {
		t.Errorf("Holm caps at 1: %v", h)
	}
}

func TestPairedBootstrap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 60
	ids, y, a, b := make([]string, n), make([]int, n), make([]int, n), make([]int, n)
	for i := range n {
		ids[i] = "img" + strconv.Itoa(i)
		y[i] = i % 3
		a[i], b[i] = y[i], y[i]
		if rng.Float64() < 0.3 {
			a[i] = (y[i] + 1) % 3
		}
		if rng.Float64() < 0.1 {
			b[i] = (y[i] + 2) % 3
		}
	}
	d := PairedBootstrap(ids, y, a, b, 3, 2000, 0.95)
	near(t, "accuracy difference", d.Accuracy.Estimate, Accuracy(y, b)-Accuracy(y, a), 1e-12)
	if !(d.Accuracy.Lo <= d.Accuracy.Estimate && d.Accuracy.Estimate <= d.Accuracy.Hi) || d.Accuracy.Lo == d.Accuracy.Hi {
		t.Errorf("accuracy interval %+v", d.Accuracy)
	}
	if !(d.MacroF1.Lo <= d.MacroF1.Estimate && d.MacroF1.Estimate <= d.MacroF1.Hi) {
		t.Errorf("macro-F1 interval %+v", d.MacroF1)
	}
	// The same data in another order: the same interval, exactly.
	perm := rng.Perm(n)
	ids2, y2, a2, b2 := make([]string, n), make([]int, n), make([]int, n), make([]int, n)
	for i, p := range perm {
		ids2[i], y2[i], a2[i], b2[i] = ids[p], y[p], a[p], b[p]
	}
	if d2 := PairedBootstrap(ids2, y2, a2, b2, 3, 2000, 0.95); !reflect.DeepEqual(d, d2) {
		t.Errorf("reordered data: %+v, want %+v", d2, d)
	}
	// Paired: a model against itself differs by exactly 0 in every resample.
	if s := PairedBootstrap(ids, y, a, a, 3, 500, 0.95); s.Accuracy != (Interval{}) || s.MacroF1 != (Interval{}) {
		t.Errorf("a model against itself: %+v", s)
	}
	// A paired interval is narrower than the unpaired spread would be when
	// the two models err on the same images: b = a except one image.
	b3 := append([]int(nil), a...)
	for i := range b3 {
		if b3[i] != y[i] {
			b3[i] = y[i]
			break
		}
	}
	p := PairedBootstrap(ids, y, a, b3, 3, 2000, 0.95)
	if p.Accuracy.Lo != 0 || p.Accuracy.Hi > 5.0/float64(n)+1e-12 {
		t.Errorf("one image better: paired interval %+v, want from 0 to a few images' worth", p.Accuracy)
	}
}

func TestSequenceBounds(t *testing.T) {
	ones := make([]float64, 30)
	for i := range ones {
		ones[i] = 1
	}
	s := Bounds(ones, 0.05)
	if s.Lo <= 0 || s.Hi != 1 || s.Mean != 1 {
		t.Errorf("30 wins: %+v, want a lower bound above 0", s)
	}
	if !Above(ones, 0, 0.05) || Below(ones, 0, 0.05) {
		t.Error("30 wins: above 0, not below")
	}
	// Ties only: the bounds straddle 0 and narrow as images accumulate.
	zeros := make([]float64, 400)
	a, b := Bounds(zeros[:40], 0.05), Bounds(zeros, 0.05)
	if !(a.Lo < 0 && a.Hi > 0 && b.Lo > a.Lo && b.Hi < a.Hi) {
		t.Errorf("ties: %+v then %+v", a, b)
	}
	if Above(zeros, -0.05, 0.05) != (b.Lo > -0.05) {
		t.Errorf("Above disagrees with the lower bound %v", b.Lo)
	}
	if ToDecide(ones[:3], 0, 0.05, true, 1000) == 0 {
		t.Error("three wins in three: more of the same decides")
	}
	if n := ToDecide([]float64{1, -1}, 0, 0.05, true, 1000); n != 0 {
		t.Errorf("a mean of 0 never shows it is above 0, got %d", n)
	}
	if again := Bounds(ones, 0.05); again != s {
		t.Error("Bounds is not deterministic")
	}
}

// TestSequenceRepeatedLooksUnderTheNull: two equal models (a paired mean
// of exactly m), looked at after every batch of 10 images up to 500: the
// share of simulated runs in which any look ever declares the mean above m
// stays at most the nominal alpha/2 (the lower side of a 1-alpha
// sequence). A fixed-sample test repeated at every look would not: it is
// measured below for contrast.
func TestSequenceRepeatedLooksUnderTheNull(t *testing.T) {
	const (
		alpha = 0.05
		runs  = 2000
		n     = 500
		batch = 10
	)
	for _, c := range []struct {
		name        string
		m, pUp, pDn float64
	}{
		{"superiority: equal models", 0, 0.15, 0.15},
		{"non-inferiority: worse by the margin exactly", -0.05, 0.15, 0.20},
	} {
		rng := rand.New(rand.NewPCG(7, 11))
		crossed, naive := 0, 0
		d := make([]float64, n)
		thr := threshold(alpha)
		zq := z(1 - alpha/2)
		var bt *bettor
		for range runs {
			for i := range d {
				u := rng.Float64()
				switch {
				case u < c.pUp:
					d[i] = 1
				case u < c.pUp+c.pDn:
					d[i] = -1
				default:
					d[i] = 0
				}
			}
			hit, naiveHit := false, false
			bt = newBettor(c.m, true)
			var s, ss float64
			for i, x := range d {
				bt.add(x)
				s += x
				ss += x * x
				look := i + 1
				if look%batch != 0 {
					continue
				}
				if bt.logK >= thr {
					hit = true
				}
				// A Wald interval at every look, for contrast.
				mean := s / float64(look)
				sd := math.Sqrt(max(ss/float64(look)-mean*mean, 1e-12) / float64(look))
				if mean-zq*sd > c.m {
					naiveHit = true
				}
			}
			if hit {
				crossed++
			}
			if naiveHit {
				naive++
			}
		}
		rate, naiveRate := float64(crossed)/runs, float64(naive)/runs
		t.Logf("%s: %d looks, sequence promotes %.4f (nominal %.3f); fixed-sample interval at every look %.4f", c.name, n/batch, rate, alpha/2, naiveRate)
		if rate > alpha/2 {
			t.Errorf("%s: repeated looks promote %.4f of null runs, more than the nominal %.3f", c.name, rate, alpha/2)
		}
		if naiveRate <= alpha/2 {
			t.Errorf("%s: the naive test at every look promotes only %.4f: the simulation does not show the peeking problem", c.name, naiveRate)
		}
	}
}

// TestSequenceCoverage: the true mean stays inside the sequence at the
// final look in at least 1-alpha of runs.
func TestSequenceCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	miss := 0
	const runs = 100
	d := make([]float64, 80)
	for range runs {
		for i := range d {
			u := rng.Float64()
			switch {
			case u < 0.4:
				d[i] = 1
			case u < 0.5:
				d[i] = -1
			default:
				d[i] = 0
			}
		}
		if s := Bounds(d, 0.05); s.Lo > 0.3 || s.Hi < 0.3 {
			miss++
		}
	}
	if float64(miss)/runs > 0.05 {
		t.Errorf("true mean 0.3 outside the sequence in %d of %d runs", miss, runs)
	}
}
