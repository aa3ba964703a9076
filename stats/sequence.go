package stats

import "math"

// Confidence sequences by betting (Waudby-Smith and Ramdas, "Estimating
// means of bounded random variables by betting", JRSS-B 86(1), 2024).
//
// The observations d_1, d_2, ... lie in [-1, 1] (a paired difference per
// image: +1 the candidate right and the baseline wrong, -1 the opposite, 0
// both right or both wrong) and arrive in a fixed order; looks may be
// taken after any of them. For a value m, the capital
//
//	K_t(m) = prod_{i<=t} (1 + lambda_i (d_i - m)),  lambda_i in [0, c/(1+m)]
//
// with lambda_i chosen from d_1..d_{i-1} only (predictable) is a
// nonnegative supermartingale when the mean of d is at most m, so by
// Ville's inequality P(sup_t K_t(m) >= 2/alpha) <= alpha/2: m below the
// true mean is excluded, at any look, ever, with probability at most
// alpha/2. The lower bound of the sequence is the smallest m not excluded;
// the upper bound is the mirror image. Together they are a two-sided
// 1-alpha confidence sequence: valid however many times, and whenever, the
// gate looks.
//
// The bet is the approximate growth-rate-adaptive one (aGRAPA, their
// section 5): lambda_i = (mu_{i-1} - m) / (sigma2_{i-1} + (mu_{i-1} - m)^2),
// clipped to [0, c/(1+m)] with c = 1/2, from the running mean and variance
// with prior mean 0 and prior variance 1/4 (weight one observation each).

// betCap is c: the share of the capital at most bet on one observation.
const betCap = 0.5

// gridStep is the resolution of the bounds.
const gridStep = 0.001

// bettor is one capital process K_t(m), observation by observation.
type bettor struct {
	m               float64
	up              bool
	n               int
	mu, s2, sum, sq float64
	logK            float64
}

func newBettor(m float64, up bool) *bettor { return &bettor{m: m, up: up, s2: 0.25, sq: 0.25} }

// add bets on x with a stake chosen from the observations before it.
func (b *bettor) add(x float64) {
	var gain float64
	if b.up {
		e := b.mu - b.m
		gain = min(max(e/(b.s2+e*e), 0), betCap/(1+b.m)) * (x - b.m)
	} else {
		e := b.m - b.mu
		gain = -min(max(e/(b.s2+e*e), 0), betCap/(1-b.m)) * (x - b.m)
	}
	b.logK += math.Log1p(gain)
	b.n++
	b.sum += x
	b.mu = b.sum / float64(b.n+1)
	b.sq += (x - b.mu) * (x - b.mu)
	b.s2 = b.sq / float64(b.n+1)
}

// logCapital returns log K_t(m) over d, betting that the mean exceeds m
// (up true) or is below m (up false).
func logCapital(d []float64, m float64, up bool) float64 {
	b := newBettor(m, up)
	for _, x := range d {
		b.add(x)
	}
	return b.logK
}

// Sequence is where a confidence sequence stands after the observations
// seen so far.
type Sequence struct {
	N int `json:"n"`
	// Mean is the plain mean of the observations; Lo and Hi the bounds of
	// the two-sided 1-Alpha confidence sequence.
	Mean  float64 `json:"mean"`
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
	Alpha float64 `json:"alpha"`
}

func threshold(alpha float64) float64 { return math.Log(2 / alpha) }

// grid returns the i-th grid point of [-1, 1].
func gridAt(i int) float64 { return -1 + float64(i)*gridStep }

const gridPoints = 2000 // gridAt(2000) == 1

// Bounds returns the confidence sequence's state over d (in arrival order)
// at level 1-alpha.
func Bounds(d []float64, alpha float64) Sequence {
	s := Sequence{N: len(d), Alpha: alpha, Lo: -1, Hi: 1}
	if len(d) == 0 {
		return s
	}
	var sum float64
	for _, x := range d {
		sum += x
	}
	s.Mean = sum / float64(len(d))
	thr := threshold(alpha)
	// Lower bound: the first grid point from the bottom not excluded,
	// found on a coarse grid (every tenth point), then refined. (The
	// decisions do not rest on the grid: Above and Below test the margin
	// itself.)
	const coarse = 10
	excluded := func(i int, up bool) bool { return logCapital(d, gridAt(i), up) >= thr }
	for i := coarse; i <= gridPoints; i += coarse {
		if !excluded(i, true) {
			j := i - coarse + 1
			for j < i && excluded(j, true) {
				j++
			}
			s.Lo = gridAt(j - 1)
			break
		}
	}
	for i := gridPoints - coarse; i >= 0; i -= coarse {
		if !excluded(i, false) {
			j := i + coarse - 1
			for j > i && excluded(j, false) {
				j--
			}
			s.Hi = gridAt(j + 1)
			break
		}
	}
	// The bounds never cross the mean's side they bound.
	s.Lo, s.Hi = round3(min(s.Lo, s.Mean)), round3(max(s.Hi, s.Mean))
	return s
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// Above says whether the sequence shows the mean of d is above m: m
// itself is excluded (the test) and so is every grid value below it (the
// reported lower bound is above m).
func Above(d []float64, m, alpha float64) bool {
	if logCapital(d, m, true) < threshold(alpha) {
		return false
	}
	return Bounds(d, alpha).Lo >= m
}

// Below is the mirror image of Above.
func Below(d []float64, m, alpha float64) bool {
	if logCapital(d, m, false) < threshold(alpha) {
		return false
	}
	return Bounds(d, alpha).Hi <= m
}

// ToDecide estimates how many observations in all would show the mean is
// above m (up) or below m (!up) if the ones to come were like those seen:
// d continued by itself, cycled, until the test at m rejects. It returns 0
// when that does not happen within limit observations (the observed mean
// is too near m, or on the other side).
func ToDecide(d []float64, m, alpha float64, up bool, limit int) int {
	if len(d) == 0 {
		return 0
	}
	thr := threshold(alpha)
	b := newBettor(m, up)
	for i := 0; i < limit; i++ {
		b.add(d[i%len(d)])
		if b.logK >= thr && i+1 > len(d) {
			return i + 1
		}
	}
	return 0
}
