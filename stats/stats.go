package stats

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"gonum.org/v1/gonum/stat/distuv"
)

// Accuracy is the share of images whose prediction is the true class.
func Accuracy(y, pred []int) float64 {
	if len(y) == 0 {
		return 0
	}
	c := 0
	for i := range y {
		if y[i] == pred[i] {
			c++
		}
	}
	return float64(c) / float64(len(y))
}

// MacroF1 is the unweighted mean F1 over the classes present in y (a class
// never seen and never predicted has no F1; one predicted but absent from y
// still costs precision of the classes it was taken from).
func MacroF1(y, pred []int, classes int) float64 {
	tp, fp, fn := make([]int, classes), make([]int, classes), make([]int, classes)
	for i := range y {
		if y[i] == pred[i] {
			tp[y[i]]++
		} else {
			fn[y[i]]++
			if pred[i] >= 0 && pred[i] < classes {
				fp[pred[i]]++
			}
		}
	}
	var sum float64
	n := 0
	for k := range classes {
		if tp[k]+fn[k] == 0 {
			continue
		}
		n++
		if tp[k] > 0 {
			sum += 2 * float64(tp[k]) / float64(2*tp[k]+fp[k]+fn[k])
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// Interval is an estimate with its interval.
type Interval struct {
	Estimate float64 `json:"estimate"`
	Lo       float64 `json:"lo"`
	Hi       float64 `json:"hi"`
}

// PairedDifference is model b minus model a on the same images.
type PairedDifference struct {
	Images   int      `json:"images"`
	Accuracy Interval `json:"accuracy"`
	MacroF1  Interval `json:"macro_f1"`
	Rounds   int      `json:"rounds"`
	Level    float64  `json:"level"`
}

// SeedOf derives a generator seed from a set of ids: a hash of the sorted
// ids, so the same set gives the same seed in any order.
func SeedOf(ids []string) (uint64, uint64) {
	s := slices.Clone(ids)
	slices.Sort(s)
	h := sha256.New()
	for _, id := range s {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:16])
}

// PairedBootstrap returns the percentile bootstrap interval (level, e.g.
// 0.95) of b's accuracy and macro-F1 minus a's, over images ids with true
// classes y and the two models' predictions pa and pb. Each round draws
// one resample of the images and scores both models on it. The images are
// put in id order first and the generator is seeded from the sorted ids,
// so the result depends on the data only.
func PairedBootstrap(ids []string, y, pa, pb []int, classes, rounds int, level float64) PairedDifference {
	n := len(ids)
	out := PairedDifference{Images: n, Rounds: rounds, Level: level}
	if n == 0 {
		return out
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(i, j int) bool { return ids[order[i]] < ids[order[j]] })
	ys, as, bs := make([]int, n), make([]int, n), make([]int, n)
	for i, o := range order {
		ys[i], as[i], bs[i] = y[o], pa[o], pb[o]
	}
	out.Accuracy.Estimate = Accuracy(ys, bs) - Accuracy(ys, as)
	out.MacroF1.Estimate = MacroF1(ys, bs, classes) - MacroF1(ys, as, classes)
	rng := rand.New(rand.NewPCG(SeedOf(ids)))
	dAcc, dF1 := make([]float64, rounds), make([]float64, rounds)
	ry, ra, rb := make([]int, n), make([]int, n), make([]int, n)
	for r := range rounds {
		for i := range n {
			j := rng.IntN(n)
			ry[i], ra[i], rb[i] = ys[j], as[j], bs[j]
		}
		dAcc[r] = Accuracy(ry, rb) - Accuracy(ry, ra)
		dF1[r] = MacroF1(ry, rb, classes) - MacroF1(ry, ra, classes)
	}
	out.Accuracy.Lo, out.Accuracy.Hi = Percentiles(dAcc, level)
	out.MacroF1.Lo, out.MacroF1.Hi = Percentiles(dF1, level)
	return out
}

// Percentiles returns the (1-level)/2 and (1+level)/2 quantiles of v (v is
// sorted in place), by the nearest rank on the sorted values.
func Percentiles(v []float64, level float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	at := func(q float64) float64 { return v[int(math.Round(q*float64(len(v)-1)))] }
	return at((1 - level) / 2), at((1 + level) / 2)
}

// BinomialUpperTail is P(X >= k) for X ~ Binomial(n, 1/2), exact.
func BinomialUpperTail(k, n int) float64 {
	if k <= 0 {
		return 1
	}
	if k > n {
		return 0
	}
	// Sum in log space from the top: terms C(n, i) / 2^n.
	var p float64
	ln2n := float64(n) * math.Ln2
	for i := k; i <= n; i++ {
		p += math.Exp(lchoose(n, i) - ln2n)
	}
	return min(1, p)
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// McNemar is the exact one-sided McNemar test that model b is worse than
// model a on one set of images: worse counts images a got right and b
// wrong, better the opposite; under the null (b no worse) each discordant
// image is a fair coin, and the p-value is P(X >= worse) for X ~
// Binomial(worse+better, 1/2). No discordant image gives 1.
func McNemar(worse, better int) float64 { return BinomialUpperTail(worse, worse+better) }

// Holm returns Holm's step-down adjusted p-values (Holm 1979), in the
// order of p: reject hypothesis i at family-wise level alpha when
// adjusted[i] <= alpha.
func Holm(p []float64) []float64 {
	m := len(p)
	idx := make([]int, m)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return p[idx[i]] < p[idx[j]] })
	out := make([]float64, m)
	running := 0.0
	for rank, i := range idx {
		v := min(1, float64(m-rank)*p[i])
		running = max(running, v)
		out[i] = running
	}
	return out
}

// z returns the standard normal quantile of q.
func z(q float64) float64 { return distuv.UnitNormal.Quantile(q) }

// Wilson returns the Wilson score interval (two-sided level, e.g. 0.95)
// of the proportion k/n; n 0 gives [0, 1].
func Wilson(k, n int, level float64) Interval {
	if n == 0 {
		return Interval{Lo: 0, Hi: 1}
	}
	zz := z((1 + level) / 2)
	p := float64(k) / float64(n)
	nn := float64(n)
	den := 1 + zz*zz/nn
	mid := (p + zz*zz/(2*nn)) / den
	half := zz / den * math.Sqrt(p*(1-p)/nn+zz*zz/(4*nn*nn))
	return Interval{Estimate: p, Lo: max(0, mid-half), Hi: min(1, mid+half)}
}

// TwoProportionResult compares proportion 1 (k1/n1) with proportion 2.
type TwoProportionResult struct {
	P1, P2 float64
	// Diff is P1-P2 with Newcombe's hybrid score interval (method 10 of
	// Newcombe 1998), at the level asked.
	Diff Interval
	// Z is the pooled z statistic and PGreater the one-sided p-value that
	// proportion 1 exceeds proportion 2.
	Z, PGreater float64
}

// TwoProportion is the pooled two-proportion z-test with Newcombe's
// interval of the difference.
func TwoProportion(k1, n1, k2, n2 int, level float64) TwoProportionResult {
	var r TwoProportionResult
	if n1 == 0 || n2 == 0 {
		r.PGreater, r.Diff = 1, Interval{Lo: -1, Hi: 1}
		return r
	}
	r.P1, r.P2 = float64(k1)/float64(n1), float64(k2)/float64(n2)
	pool := float64(k1+k2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se > 0 {
		r.Z = (r.P1 - r.P2) / se
		r.PGreater = 1 - distuv.UnitNormal.CDF(r.Z)
	} else {
		r.PGreater = 1
		if r.P1 > r.P2 {
			r.PGreater = 0
		}
	}
	w1, w2 := Wilson(k1, n1, level), Wilson(k2, n2, level)
	d := r.P1 - r.P2
	r.Diff = Interval{Estimate: d,
		Lo: d - math.Sqrt((r.P1-w1.Lo)*(r.P1-w1.Lo)+(w2.Hi-r.P2)*(w2.Hi-r.P2)),
		Hi: d + math.Sqrt((w1.Hi-r.P1)*(w1.Hi-r.P1)+(r.P2-w2.Lo)*(r.P2-w2.Lo))}
	return r
}

// TwoProportionSampleSize is how many observations per group a one-sided
// test at alpha with the given power needs to tell two proportions near p
// apart by margin (the normal approximation:
// n = (z_{1-alpha} + z_{power})^2 * 2p(1-p) / margin^2, rounded up, at
// least 1). p is taken no nearer 0 or 1 than 0.05.
func TwoProportionSampleSize(p, margin, alpha, power float64) int {
	if margin <= 0 {
		return math.MaxInt32
	}
	p = min(max(p, 0.05), 0.95)
	s := z(1-alpha) + z(power)
	return max(1, int(math.Ceil(s*s*2*p*(1-p)/(margin*margin))))
}
