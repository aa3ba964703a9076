package driftwatch

import (
	"math"
	"math/rand/v2"
	"testing"
)

func near(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want))
}

// Reference values: the Kolmogorov distribution's tabulated critical values
// (Q = 0.10, 0.05, 0.01 at 1.2238, 1.3581, 1.6276) and the series summed to
// 200 terms in float64.
func TestKolmogorovQ(t *testing.T) {
	tests := []struct{ lambda, want float64 }{
		{0, 1},
		{0.3, 0.9999906941986655},
		{0.5, 0.9639452436648751},
		{0.8, 0.5441424115741981},
		{1.0, 0.26999967167735456},
		{1.1, 0.17771819260640118},
		{1.2238, 0.1000234278356778},
		{1.3581, 0.0499996304316674},
		{1.6276, 0.010001537333060776},
		{2.0, 0.0006709252557796953},
		{5, 2 * math.Exp(-50)},
	}
	for _, tt := range tests {
		if got := KolmogorovQ(tt.lambda); !near(got, tt.want, 1e-12) {
			t.Errorf("KolmogorovQ(%v) = %.17g, want %.17g", tt.lambda, got, tt.want)
		}
	}
	// Continuous across the switch between the two series.
	if a, b := KolmogorovQ(1.18-1e-9), KolmogorovQ(1.18+1e-9); math.Abs(a-b) > 1e-8 {
		t.Errorf("discontinuity at 1.18: %v vs %v", a, b)
	}
}

// Closed forms of the chi-square survival function for small df, from the
// body of the distribution far into its tail. ChiSquareSF is gonum's; the
// hand-written incomplete gamma it replaced was as accurate on this table
// (largest relative error 1.1e-14 for both).
func TestChiSquareSF(t *testing.T) {
	df1 := func(x float64) float64 { return math.Erfc(math.Sqrt(x / 2)) }
	df2 := func(x float64) float64 { return math.Exp(-x / 2) }
	df3 := func(x float64) float64 {
		return math.Erfc(math.Sqrt(x/2)) + math.Sqrt(2*x/math.Pi)*math.Exp(-x/2)
	}
	df4 := func(x float64) float64 { return math.Exp(-x/2) * (1 + x/2) }
	tests := []struct {
		x    float64
		df   int
		want float64
	}{
		// Tabulated critical values.
		{3.841458820694124, 1, 0.05},
		{6.634896601021214, 1, 0.01},
		{18.307038053275146, 10, 0.05},
		{30.57791416689249, 15, 0.01},
		{0, 5, 1},
		{0.5, 1, df1(0.5)}, {3, 1, df1(3)}, {40, 1, df1(40)},
		{0.1, 2, df2(0.1)}, {2, 2, df2(2)}, {90, 2, df2(90)},
		{0.7, 3, df3(0.7)}, {2.4, 3, df3(2.4)}, {25, 3, df3(25)},
		{1, 4, df4(1)}, {3.9, 4, df4(3.9)}, {60, 4, df4(60)},
		{200, 4, df4(200)}, {400, 2, df2(400)},
	}
	for _, tt := range tests {
		// Relative: p-values of 1e-87 must be right too, not just below 1e-9.
		if got := ChiSquareSF(tt.x, tt.df); math.Abs(got-tt.want) > 5e-14*tt.want {
			t.Errorf("ChiSquareSF(%v, %d) = %.15g, want %.15g (relative error %.2g)", tt.x, tt.df, got, tt.want, math.Abs(got-tt.want)/tt.want)
		}
	}
	if !math.IsNaN(ChiSquareSF(1, 0)) {
		t.Error("df 0 must be NaN")
	}
}

func TestKSTwoSample(t *testing.T) {
	tests := []struct {
		name  string
		a, b  []float64
		wantD float64
	}{
		{"disjoint", []float64{1, 2, 3}, []float64{4, 5, 6}, 1},
		{"identical", []float64{1, 2, 3}, []float64{1, 2, 3}, 0},
		{"interleaved", []float64{0.1, 0.2, 0.3, 0.4}, []float64{0.25, 0.35}, 0.5},
		{"ties across samples", []float64{1, 1, 2, 2}, []float64{1, 2, 2, 2}, 0.25},
		{"empty", nil, []float64{1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, p := KSTwoSample(tt.a, tt.b)
			if !near(d, tt.wantD, 1e-12) {
				t.Fatalf("D = %v, want %v", d, tt.wantD)
			}
			if tt.wantD == 0 && p != 1 {
				t.Fatalf("p = %v for D 0, want 1", p)
			}
			if len(tt.a) > 0 && len(tt.b) > 0 {
				ne := float64(len(tt.a)*len(tt.b)) / float64(len(tt.a)+len(tt.b))
				want := KolmogorovQ((math.Sqrt(ne) + 0.12 + 0.11/math.Sqrt(ne)) * d)
				if p != want {
					t.Fatalf("p = %v, want %v", p, want)
				}
			}
		})
	}

	// Calibration: under the null the p-value is about uniform, under a
	// shift it is tiny.
	r := rand.New(rand.NewPCG(1, 2))
	sample := func(n int, shift float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = r.NormFloat64() + shift
		}
		return out
	}
	rejected := 0
	const trials = 400
	for range trials {
		if _, p := KSTwoSample(sample(200, 0), sample(500, 0)); p < 0.05 {
			rejected++
		}
	}
	if rate := float64(rejected) / trials; rate > 0.09 {
		t.Errorf("null rejection rate %.3f at alpha 0.05", rate)
	}
	if _, p := KSTwoSample(sample(200, 0.5), sample(500, 0)); p > 1e-4 {
		t.Errorf("shift of 0.5 sd over 200/500 samples: p = %v", p)
	}
}

func TestChiSquareGoodnessOfFit(t *testing.T) {
	tests := []struct {
		name     string
		observed map[string]int
		expected map[string]float64
		wantStat float64
		wantDF   int
	}{
		// (60-50)^2/50 + (40-50)^2/50 = 4.
		{"two classes", map[string]int{"a": 60, "b": 40}, map[string]float64{"a": 1, "b": 1}, 4, 1},
		// Counts or proportions mean the same.
		{"proportions", map[string]int{"a": 30, "b": 30, "c": 40}, map[string]float64{"a": 0.3, "b": 0.3, "c": 0.4}, 0, 2},
		{"counts", map[string]int{"a": 30, "b": 30, "c": 40}, map[string]float64{"a": 300, "b": 300, "c": 400}, 0, 2},
		// A class the reference lacks is a category too.
		{"unseen class", map[string]int{"a": 50, "b": 50}, map[string]float64{"a": 1}, math.NaN(), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stat, df, p := ChiSquareGoodnessOfFit(tt.observed, tt.expected, 0)
			if df != tt.wantDF {
				t.Fatalf("df = %d, want %d", df, tt.wantDF)
			}
			if math.IsNaN(tt.wantStat) {
				if !math.IsInf(stat, 1) || p != 0 {
					t.Fatalf("unseen class without smoothing: stat %v p %v, want +Inf and 0", stat, p)
				}
				stat, _, p = ChiSquareGoodnessOfFit(tt.observed, tt.expected, 1e-3)
				if math.IsInf(stat, 0) || p >= 1e-6 {
					t.Fatalf("with smoothing: stat %v p %v, want finite and tiny", stat, p)
				}
				return
			}
			if !near(stat, tt.wantStat, 1e-9) || !near(p, ChiSquareSF(stat, df), 1e-12) {
				t.Fatalf("stat %v p %v, want %v and its p", stat, p, tt.wantStat)
			}
		})
	}
}

func TestEntropy(t *testing.T) {
	tests := []struct {
		probs []float64
		want  float64
	}{
		{[]float64{1}, 0},
		{[]float64{0.5, 0.5}, math.Ln2},
		{[]float64{0.25, 0.25, 0.25, 0.25}, math.Log(4)},
		// Top-2 of a uniform 4-way: the missing half counts as one outcome.
		{[]float64{0.25, 0.25}, -2*0.25*math.Log(0.25) - 0.5*math.Log(0.5)},
	}
	for _, tt := range tests {
		if got := Entropy(tt.probs); !near(got, tt.want, 1e-12) {
			t.Errorf("Entropy(%v) = %v, want %v", tt.probs, got, tt.want)
		}
	}
}
