package trainer

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// LogReg is a fitted multinomial logistic regression on standardised
// features: logits = W ((x - Mean) / Std) + B.
type LogReg struct {
	Classes, Dim int
	// W is row-major [Classes][Dim]; B has Classes entries.
	W, B      []float64
	Mean, Std []float64
	Lambda    float64
	// Iterations and Loss report the fit.
	Iterations int
	Loss       float64
}

// LogRegOptions configure a fit.
type LogRegOptions struct {
	// Lambda is the L2 penalty on W (not on B), per unit of total sample
	// weight: the loss is the weighted mean cross-entropy + Lambda/2 |W|^2.
	Lambda float64
	// Balanced weighs each image by n / (classes * n_class), so every class
	// counts as much as any other, however imbalanced the data.
	Balanced bool
	// MaxIterations bounds L-BFGS (default 500).
	MaxIterations int
}

// ErrNonFinite is returned when a fit's loss is not a finite number.
var ErrNonFinite = errors.New("non-finite loss")

// Standardize returns the per-dimension mean and standard deviation of x
// (dimensions with no spread get std 1, so they fold to a constant).
func Standardize(x [][]float32) (mean, std []float64) {
	d := len(x[0])
	mean, std = make([]float64, d), make([]float64, d)
	for _, row := range x {
		for j, v := range row {
			mean[j] += float64(v)
		}
	}
	n := float64(len(x))
	for j := range mean {
		mean[j] /= n
	}
	for _, row := range x {
		for j, v := range row {
			dv := float64(v) - mean[j]
			std[j] += dv * dv
		}
	}
	for j := range std {
		std[j] = math.Sqrt(std[j] / n)
		if std[j] < 1e-12 {
			std[j] = 1
		}
	}
	return mean, std
}

// FitLogReg fits the model on x (n rows of Dim features) and labels y in
// [0, classes). It is deterministic: the same data and options give the same
// bytes. Standardisation (mean and std of x) is part of the result.
func FitLogReg(x [][]float32, y []int, classes int, o LogRegOptions) (*LogReg, error) {
	n := len(x)
	if n == 0 || len(y) != n {
		return nil, fmt.Errorf("logistic regression: %d rows, %d labels", n, len(y))
	}
	d := len(x[0])
	mean, std := Standardize(x)
	xs := mat.NewDense(n, d, nil)
	for i, row := range x {
		for j, v := range row {
			xs.Set(i, j, (float64(v)-mean[j])/std[j])
		}
	}
	w := make([]float64, n)
	counts := make([]int, classes)
	for _, c := range y {
		if c < 0 || c >= classes {
			return nil, fmt.Errorf("logistic regression: label %d outside [0,%d)", c, classes)
		}
		counts[c]++
	}
	var wsum float64
	for i, c := range y {
		w[i] = 1
		if o.Balanced {
			w[i] = float64(n) / float64(classes*counts[c])
		}
		wsum += w[i]
	}
	if o.MaxIterations <= 0 {
		o.MaxIterations = 500
	}
	nparam := classes*d + classes
	logits := mat.NewDense(n, classes, nil)
	grad := mat.NewDense(n, classes, nil)
	// loss and gradient at p = [W (classes x d) | B (classes)].
	eval := func(p, g []float64) float64 {
		W := mat.NewDense(classes, d, p[:classes*d])
		logits.Mul(xs, W.T())
		var loss float64
		for i := range n {
			row := logits.RawRowView(i)
			mx := math.Inf(-1)
			for k := range row {
				row[k] += p[classes*d+k]
				mx = max(mx, row[k])
			}
			var sum float64
			for k := range row {
				sum += math.Exp(row[k] - mx)
			}
			lse := mx + math.Log(sum)
			loss += w[i] * (lse - row[y[i]])
			if g != nil {
				gr := grad.RawRowView(i)
				for k := range row {
					gr[k] = w[i] * math.Exp(row[k]-lse) / wsum
				}
				gr[y[i]] -= w[i] / wsum
			}
		}
		loss /= wsum
		var reg float64
		for _, v := range p[:classes*d] {
			reg += v * v
		}
		loss += o.Lambda / 2 * reg
		if g != nil {
			gW := mat.NewDense(classes, d, g[:classes*d])
			gW.Mul(grad.T(), xs)
			for j := range classes * d {
				g[j] += o.Lambda * p[j]
			}
			for k := range classes {
				var s float64
				for i := range n {
					s += grad.At(i, k)
				}
				g[classes*d+k] = s
			}
		}
		return loss
	}
	problem := optimize.Problem{
		Func: func(p []float64) float64 { return eval(p, nil) },
		Grad: func(g, p []float64) { eval(p, g) },
	}
	res, err := optimize.Minimize(problem, make([]float64, nparam),
		&optimize.Settings{MajorIterations: o.MaxIterations, GradientThreshold: 1e-6, Converger: &optimize.FunctionConverge{Absolute: 1e-9, Iterations: 20}},
		&optimize.LBFGS{})
	if res == nil {
		return nil, fmt.Errorf("logistic regression: %w", err)
	}
	if math.IsNaN(res.F) || math.IsInf(res.F, 0) {
		return nil, fmt.Errorf("logistic regression: %w (%v)", ErrNonFinite, res.F)
	}
	// IterationLimit and similar stops still leave a usable minimiser.
	return &LogReg{Classes: classes, Dim: d, W: res.X[:classes*d], B: res.X[classes*d:], Mean: mean, Std: std,
		Lambda: o.Lambda, Iterations: res.Stats.MajorIterations, Loss: res.F}, nil
}

// Predict returns the class with the highest logit for each row.
func (m *LogReg) Predict(x [][]float32) []int {
	out := make([]int, len(x))
	for i, row := range x {
		best, bestV := 0, math.Inf(-1)
		for k := range m.Classes {
			v := m.B[k]
			wk := m.W[k*m.Dim : (k+1)*m.Dim]
			for j, f := range row {
				v += wk[j] * (float64(f) - m.Mean[j]) / m.Std[j]
			}
			if v > bestV {
				best, bestV = k, v
			}
		}
		out[i] = best
	}
	return out
}

// Folded returns the head in raw feature space, standardisation folded in:
// W' = W / Std and B' = B - W' Mean, as float32 for the ONNX graph.
func (m *LogReg) Folded() (w, b []float32) {
	w, b = make([]float32, m.Classes*m.Dim), make([]float32, m.Classes)
	for k := range m.Classes {
		bias := m.B[k]
		for j := range m.Dim {
			wj := m.W[k*m.Dim+j] / m.Std[j]
			w[k*m.Dim+j] = float32(wj)
			bias -= wj * m.Mean[j]
		}
		b[k] = float32(bias)
	}
	return w, b
}
