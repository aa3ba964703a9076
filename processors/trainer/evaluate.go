package trainer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"eyeflow/imaging"
	"eyeflow/inference"
	"eyeflow/models"
	"eyeflow/schemas"
)

// Holdouts are the splits the evaluator scores, in order.
func Holdouts() []string {
	return []string{schemas.SplitHoldout1, schemas.SplitHoldout2, schemas.SplitHoldout3}
}

// Holdout roles: one home for which holdout does what.
const (
	// SelectHoldout may be used by trainers for model selection.
	SelectHoldout = schemas.SplitHoldout1
	// GateHoldout decides promotion.
	GateHoldout = schemas.SplitHoldout2
	// ReportHoldout is reported only, never used for a decision.
	ReportHoldout = schemas.SplitHoldout3
)

// ErrCandidate marks a candidate the evaluator refuses: its ONNX does not
// load, or its labels disagree with the data set's classes.
var ErrCandidate = errors.New("candidate refused")

// Evaluator scores any candidate, whatever trained it, by running it
// through the classifier's own inference path (inference.LoadModel, the
// same decode and normalisation) on the holdout images.
type Evaluator struct {
	Images  ImageSource
	Session inference.SessionOptions
}

// Evaluate loads the candidate and scores it on every holdout of ds.
func (e *Evaluator) Evaluate(ctx context.Context, files models.ModelFiles, ds *Dataset) (map[string]schemas.HoldoutMetrics, error) {
	m, err := inference.LoadModel(files, e.Session)
	if err != nil {
		return nil, fmt.Errorf("%w: does not load: %v", ErrCandidate, err)
	}
	defer m.Close()
	var missing []string
	for _, split := range append([]string{schemas.SplitTrain}, Holdouts()...) {
		for _, c := range classesOf(ds.Splits[split]) {
			if !slices.Contains(m.Labels, c) && !slices.Contains(missing, c) {
				missing = append(missing, c)
			}
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("%w: labels.json lacks the data set's classes %v (it has %v)", ErrCandidate, missing, m.Labels)
	}
	out := map[string]schemas.HoldoutMetrics{}
	for _, split := range Holdouts() {
		hm, err := e.score(ctx, m, ds.Splits[split])
		if err != nil {
			return nil, fmt.Errorf("evaluate %s on %s: %w", m.Ref(), split, err)
		}
		out[split] = hm
	}
	return out, nil
}

func (e *Evaluator) score(ctx context.Context, m *inference.Model, exs []Example) (schemas.HoldoutMetrics, error) {
	idx := map[string]int{}
	for i, c := range m.Labels {
		idx[c] = i
	}
	n := len(exs)
	y, pred, conf := make([]int, n), make([]int, n), make([]float64, n)
	const batch = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan int)
	)
	for range max(1, m.ParallelRuns) {
		wg.Go(func() {
			for s := range next {
				end := min(s+batch, n)
				rgb := make([][]byte, 0, end-s)
				var err error
				for _, ex := range exs[s:end] {
					var data []byte
					if data, err = e.Images.PNG(ctx, ex); err != nil {
						break
					}
					var res imaging.Result
					if res, err = imaging.Decode(data, imaging.DefaultOptions()); err != nil {
						err = fmt.Errorf("decode %s: %w", ex.Key, err)
						break
					}
					rgb = append(rgb, res.RGB)
				}
				var probs [][]float64
				if err == nil {
					probs, err = m.Run(rgb)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				for j, p := range probs {
					i := s + j
					y[i] = idx[exs[i].Class]
					best := 0
					for k := range p {
						if p[k] > p[best] {
							best = k
						}
					}
					pred[i], conf[i] = best, p[best]
				}
			}
		})
	}
	for s := 0; s < n; s += batch {
		select {
		case next <- s:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return schemas.HoldoutMetrics{}, err
	}
	if err := ctx.Err(); err != nil {
		return schemas.HoldoutMetrics{}, err
	}
	return Score(m.Labels, y, pred, conf), nil
}
