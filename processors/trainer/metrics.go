package trainer

import (
	"math"
	"math/rand/v2"
	"slices"

	"eyeflow/schemas"
)

func accuracy(y, pred []int) float64 {
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

// macroF1 is the unweighted mean F1 over the classes present in y (a class
// never seen and never predicted has no F1; one predicted but absent from y
// still costs precision of the classes it was taken from).
func macroF1(y, pred []int, classes int) float64 {
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

// eceBins is the number of equal-width confidence bins of the ECE.
const eceBins = 15

// bootstrapRounds and bootstrapSeed fix the intervals: the same predictions
// give the same interval.
const (
	bootstrapRounds = 1000
	bootstrapSeed   = 20261130
)

// Score computes a holdout's figures from true classes y, predicted classes
// and the confidence of each prediction, over classes (the model's labels).
func Score(classes []string, y, pred []int, conf []float64) schemas.HoldoutMetrics {
	k := len(classes)
	m := schemas.HoldoutMetrics{Images: len(y), Classes: slices.Clone(classes), Recall: map[string]float64{}, Support: map[string]int{}}
	m.Confusion = make([][]int, k)
	for i := range m.Confusion {
		m.Confusion[i] = make([]int, k)
	}
	for i := range y {
		m.Confusion[y[i]][pred[i]]++
	}
	for c := range k {
		n := 0
		for _, v := range m.Confusion[c] {
			n += v
		}
		if n > 0 {
			m.Support[classes[c]] = n
			m.Recall[classes[c]] = float64(m.Confusion[c][c]) / float64(n)
		}
	}
	if len(y) == 0 {
		return m
	}
	m.Accuracy = accuracy(y, pred)
	m.MacroF1 = macroF1(y, pred, k)
	m.ECE = ece(y, pred, conf)
	// Percentile bootstrap over images.
	rng := rand.New(rand.NewPCG(bootstrapSeed, uint64(len(y))))
	accs, f1s := make([]float64, bootstrapRounds), make([]float64, bootstrapRounds)
	by, bp := make([]int, len(y)), make([]int, len(y))
	for r := range bootstrapRounds {
		for i := range y {
			j := rng.IntN(len(y))
			by[i], bp[i] = y[j], pred[j]
		}
		accs[r], f1s[r] = accuracy(by, bp), macroF1(by, bp, k)
	}
	m.AccuracyCI95 = percentile95(accs)
	m.MacroF1CI95 = percentile95(f1s)
	return m
}

func percentile95(v []float64) [2]float64 {
	slices.Sort(v)
	at := func(q float64) float64 {
		i := int(math.Round(q * float64(len(v)-1)))
		return v[i]
	}
	return [2]float64{at(0.025), at(0.975)}
}

// ece is the expected calibration error: the image-weighted mean gap between
// confidence and accuracy over equal-width confidence bins.
func ece(y, pred []int, conf []float64) float64 {
	var n, correct [eceBins]float64
	var sumConf [eceBins]float64
	for i := range y {
		b := min(int(conf[i]*eceBins), eceBins-1)
		b = max(b, 0)
		n[b]++
		sumConf[b] += conf[i]
		if y[i] == pred[i] {
			correct[b]++
		}
	}
	var e float64
	for b := range eceBins {
		if n[b] > 0 {
			e += n[b] / float64(len(y)) * math.Abs(sumConf[b]/n[b]-correct[b]/n[b])
		}
	}
	return e
}
