package driftwatch

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/gonum/stat/distuv"
)

// KSTwoSample is the two-sample Kolmogorov-Smirnov test: D is the largest
// distance between the empirical distribution functions of a and b (gonum's
// stat.KolmogorovSmirnov, which steps over ties in both samples at once), p
// the asymptotic probability of a D at least that large when both samples
// come from one continuous distribution. The p-value uses the effective
// sample size correction of Stephens (1970), as Numerical Recipes' kstwo
// does: lambda = (sqrt(ne) + 0.12 + 0.11/sqrt(ne)) * D with ne = n*m/(n+m),
// which keeps it accurate down to samples of a few dozen. Empty input gives
// D 0, p 1.
func KSTwoSample(a, b []float64) (d, p float64) {
	if len(a) == 0 || len(b) == 0 {
		return 0, 1
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	d = stat.KolmogorovSmirnov(x, nil, y, nil)
	n, m := float64(len(x)), float64(len(y))
	ne := n * m / (n + m)
	sq := math.Sqrt(ne)
	return d, KolmogorovQ((sq + 0.12 + 0.11/sq) * d)
}

// KolmogorovQ is the survival function of the Kolmogorov distribution
// (gonum v0.17.0 has the KS statistic but not this distribution),
// Q(lambda) = P(K > lambda) = 2 * sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lambda^2).
// That alternating series converges slowly for small lambda, where the
// equivalent Jacobi theta form
// P(K <= lambda) = sqrt(2 pi)/lambda * sum_{j>=1} exp(-(2j-1)^2 pi^2 / (8 lambda^2))
// converges fast instead; the switch point 1.18 is where both need only a
// handful of terms.
func KolmogorovQ(lambda float64) float64 {
	switch {
	case math.IsNaN(lambda):
		return math.NaN()
	case lambda <= 0:
		return 1
	case lambda < 1.18:
		y := math.Exp(-math.Pi * math.Pi / (8 * lambda * lambda))
		// exp(-(2j-1)^2 c) = y^((2j-1)^2) for j = 1..4 is exact to 1e-16
		// for lambda < 1.18.
		sum := y + math.Pow(y, 9) + math.Pow(y, 25) + math.Pow(y, 49)
		return clamp01(1 - math.Sqrt(2*math.Pi)/lambda*sum)
	default:
		x := math.Exp(-2 * lambda * lambda)
		// Four terms: x^16 < 1e-26 at lambda >= 1.18.
		sum := x - math.Pow(x, 4) + math.Pow(x, 9) - math.Pow(x, 16)
		return clamp01(2 * sum)
	}
}

// ChiSquareSF is the chi-square survival function P(X >= x) for df degrees
// of freedom: gonum's (the regularized upper incomplete gamma Q(df/2, x/2),
// from Cephes), within 1e-14 relative of the closed forms in the tests.
func ChiSquareSF(x float64, df int) float64 {
	if df < 1 || math.IsNaN(x) {
		return math.NaN()
	}
	if x <= 0 {
		return 1
	}
	return distuv.ChiSquared{K: float64(df)}.Survival(x)
}

// ChiSquareGoodnessOfFit tests observed counts against expected proportions
// (any non-negative weights; they are normalised to proportions). Every
// category of either side takes part. smoothing is a pseudo-proportion added
// to every category's expected share before renormalising, so a category the
// reference never saw gets a small expected count instead of making the
// statistic infinite. It returns the statistic, the degrees of freedom
// (categories - 1) and the p-value; fewer than two categories or no
// observations give p 1.
func ChiSquareGoodnessOfFit(observed map[string]int, expected map[string]float64, smoothing float64) (stat float64, df int, p float64) {
	cats := map[string]bool{}
	for c := range observed {
		cats[c] = true
	}
	var wsum float64
	for c, w := range expected {
		if w > 0 {
			cats[c] = true
			wsum += w
		}
	}
	n := 0
	for _, o := range observed {
		n += o
	}
	k := len(cats)
	if k < 2 || n == 0 || wsum == 0 {
		return 0, max(k-1, 0), 1
	}
	smoothing = max(smoothing, 0)
	total := 1 + smoothing*float64(k)
	for c := range cats {
		e := float64(n) * (max(expected[c], 0)/wsum + smoothing) / total
		if e <= 0 {
			// No smoothing and a category the reference never saw.
			return math.Inf(1), k - 1, 0
		}
		diff := float64(observed[c]) - e
		stat += diff * diff / e
	}
	return stat, k - 1, ChiSquareSF(stat, k-1)
}

// Entropy is the Shannon entropy (nats) of a prediction's class
// probabilities. A top-k list that does not sum to one leaves out classes;
// their remaining mass is counted as one more outcome, a lower bound on the
// full entropy that is monotone in the same way, which is all a
// distribution test needs.
func Entropy(probs []float64) float64 {
	var h, sum float64
	for _, p := range probs {
		if p > 0 {
			h -= p * math.Log(p)
			sum += p
		}
	}
	if rest := 1 - sum; rest > 1e-9 {
		h -= rest * math.Log(rest)
	}
	return h
}

func clamp01(v float64) float64 { return math.Min(1, math.Max(0, v)) }
