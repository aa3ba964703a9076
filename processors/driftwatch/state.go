package driftwatch

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"eyeflow/schemas"
	"eyeflow/stage"
)

// State is everything the watcher remembers for one (env, model version).
// It is stored as JSON in the KV bucket after every counted prediction.
type State struct {
	Env          string `json:"env"`
	ModelVersion string `json:"model_version"`
	// LastSeq is the stream sequence of the last prediction counted; a
	// delivery at or below it is a redelivery and is not counted again.
	LastSeq uint64 `json:"last_seq"`
	// LastOutputs are the events LastSeq produced, so that a redelivery of
	// that very prediction (the process died after saving the state and
	// before its events were stored) publishes them again under the same
	// Msg-Ids instead of losing them.
	LastOutputs []SavedOutput `json:"last_outputs,omitempty"`

	Streak StreakState `json:"streak"`
	KS     KSState     `json:"ks"`
	Chi2   Chi2State   `json:"chi2"`
}

// SavedOutput is one published event, already marshalled.
type SavedOutput struct {
	Subject string          `json:"subject"`
	Key     string          `json:"key"`
	Event   json.RawMessage `json:"event"`
}

// StreakState is the current run of low-confidence predictions.
type StreakState struct {
	// Len counts the run; Samples keeps its first Count predictions, the
	// ones a firing alert reports.
	Len     int                  `json:"len"`
	Samples []schemas.Prediction `json:"samples,omitempty"`
	Seqs    []uint64             `json:"seqs,omitempty"`
	Firing  bool                 `json:"firing"`
	AlertID string               `json:"alert_id,omitempty"`
	From    time.Time            `json:"from,omitzero"`
}

// KSState holds the reference entropies (a ring of the last Reference
// holdout predictions) and the current window.
type KSState struct {
	Reference []float64 `json:"reference,omitempty"`
	RefNext   int       `json:"ref_next"`
	Window    []float64 `json:"window,omitempty"`
	window
}

// Chi2State holds the train class counts learnt from the stream and the
// current window's predicted-class counts.
type Chi2State struct {
	Train  map[string]int `json:"train,omitempty"`
	Counts map[string]int `json:"counts,omitempty"`
	N      int            `json:"n"`
	window
}

// window is what both tumbling-window monitors share.
type window struct {
	FirstSeq uint64    `json:"first_seq,omitempty"`
	From     time.Time `json:"from,omitzero"`
	To       time.Time `json:"to,omitzero"`
	Firing   bool      `json:"firing"`
	AlertID  string    `json:"alert_id,omitempty"`
	// Tested counts windows tested; LastP is the last p-value (NaN-free:
	// 1 before the first test).
	Tested int     `json:"tested"`
	LastP  float64 `json:"last_p"`
	// Samples are the window's first images (Config.LabelSamples), which
	// a firing alert asks to have labelled.
	Samples []schemas.Prediction `json:"samples,omitempty"`
}

func (w *window) sample(p schemas.Prediction, n int) {
	if len(w.Samples) < n {
		w.Samples = append(w.Samples, stripForState(p))
	}
}

func (w *window) open(seq uint64, t time.Time) {
	if w.FirstSeq == 0 {
		w.FirstSeq, w.From = seq, t
	}
	w.To = t
}

func (w *window) reset() { w.FirstSeq, w.From, w.To, w.Samples = 0, time.Time{}, time.Time{}, nil }

// isHoldout reports whether a split is one of the holdouts, the reference.
func isHoldout(split string) bool { return strings.HasPrefix(split, "holdout") }

// monitored reports whether a prediction is live traffic, the population
// the distribution tests watch: anything neither train nor holdout.
func monitored(split string) bool { return split != schemas.SplitTrain && !isHoldout(split) }

// alertID is deterministic in what opened the alert, so a replay of the
// stream names the same alert.
func alertID(signal, env, version string, seq uint64) string {
	h := sha256.Sum256([]byte(signal + "\x00" + env + "\x00" + version + "\x00" + strconv.FormatUint(seq, 10)))
	return signal + "-" + hex.EncodeToString(h[:8])
}

// apply counts one prediction, delivered at stream sequence seq, into the
// state and returns the events it causes. It is a pure function of the
// state, the configuration and the prediction, so replaying the stream from
// any saved state gives the same events.
func apply(cfg Config, st *State, p schemas.Prediction, seq uint64, now time.Time) ([]stage.Output, error) {
	t := p.Time
	if t.IsZero() {
		t = now
	}
	var outs []stage.Output
	add := func(subject, key string, ev any) {
		outs = append(outs, stage.Output{Subject: subject, Key: key, Event: ev})
	}
	drift := schemas.DriftSubject(st.Env)

	// The operators' rule.
	s := &st.Streak
	if p.Confidence < cfg.Threshold {
		if s.Len == 0 {
			s.From = t
		}
		s.Len++
		if len(s.Samples) < cfg.Count {
			s.Samples = append(s.Samples, stripForState(p))
			s.Seqs = append(s.Seqs, seq)
		}
		if s.Len == cfg.Count && !s.Firing {
			s.Firing = true
			s.AlertID = alertID(SignalLowConfidence, st.Env, st.ModelVersion, s.Seqs[0])
			a := streakAlert(cfg, st, StateFiring, now)
			a.To = t
			add(drift, a.AlertID+"/"+StateFiring, a)
			add(schemas.SubjectRetrain, a.AlertID, retrainFor(st, a, s.Samples, now))
		}
	} else {
		if s.Firing {
			a := streakAlert(cfg, st, StateResolved, now)
			a.To = t
			a.Detail = fmt.Sprintf("resolved after %d consecutive predictions below %v; first confident prediction %s (%.3f)",
				s.Len, cfg.Threshold, p.ImageID, p.Confidence)
			add(drift, a.AlertID+"/"+StateResolved, a)
		}
		*s = StreakState{}
	}

	probs := make([]float64, len(p.TopK))
	for i, c := range p.TopK {
		probs[i] = c.Probability
	}
	if len(probs) == 0 {
		probs = []float64{p.Confidence}
	}
	h := Entropy(probs)

	if cfg.KS.Enabled {
		k := &st.KS
		switch {
		case isHoldout(p.Split):
			if len(k.Reference) < cfg.KS.Reference {
				k.Reference = append(k.Reference, h)
			} else {
				k.Reference[k.RefNext%len(k.Reference)] = h
			}
			k.RefNext = (k.RefNext + 1) % cfg.KS.Reference
		case monitored(p.Split):
			k.open(seq, t)
			k.sample(p, cfg.LabelSamples)
			k.Window = append(k.Window, h)
			if len(k.Window) >= cfg.KS.Window {
				if len(k.Reference) >= cfg.KS.MinReference {
					d, pv := KSTwoSample(k.Window, k.Reference)
					k.Tested++
					k.LastP = pv
					if a, ok := edge(&k.window, SignalEntropyKS, st, pv < cfg.KS.PValue, now); ok {
						a.Statistic, a.PValue, a.Threshold = d, pv, cfg.KS.PValue
						a.SampleSize, a.ReferenceSize = len(k.Window), len(k.Reference)
						a.Detail = fmt.Sprintf("prediction entropy vs holdout reference: KS D=%.4f p=%.3g over %d predictions (reference %d, alert below p %v)",
							d, pv, len(k.Window), len(k.Reference), cfg.KS.PValue)
						add(drift, a.AlertID+"/"+a.State, a)
						if a.State == StateFiring && len(k.Samples) > 0 {
							add(schemas.SubjectRetrain, a.AlertID, retrainFor(st, a, k.Samples, now))
						}
					}
				}
				k.Window = k.Window[:0]
				k.reset()
			}
		}
	}

	if cfg.Chi2.Enabled {
		c := &st.Chi2
		switch {
		case p.Split == schemas.SplitTrain:
			if p.TrueLabel != "" {
				if c.Train == nil {
					c.Train = map[string]int{}
				}
				c.Train[p.TrueLabel]++
			}
		case monitored(p.Split):
			c.open(seq, t)
			c.sample(p, cfg.LabelSamples)
			if c.Counts == nil {
				c.Counts = map[string]int{}
			}
			c.Counts[p.PredictedClass]++
			c.N++
			if c.N >= cfg.Chi2.Window {
				expected, size := trainDistribution(cfg, c)
				if expected != nil {
					stat, df, pv := ChiSquareGoodnessOfFit(c.Counts, expected, cfg.Chi2.Smoothing)
					c.Tested++
					c.LastP = pv
					if a, ok := edge(&c.window, SignalClassChi2, st, pv < cfg.Chi2.PValue, now); ok {
						a.Statistic, a.PValue, a.Threshold = stat, pv, cfg.Chi2.PValue
						a.SampleSize, a.ReferenceSize = c.N, size
						a.Detail = fmt.Sprintf("predicted classes vs training distribution: chi2=%.2f df=%d p=%.3g over %d predictions (alert below p %v); window counts %v",
							stat, df, pv, c.N, cfg.Chi2.PValue, c.Counts)
						add(drift, a.AlertID+"/"+a.State, a)
						if a.State == StateFiring && len(c.Samples) > 0 {
							add(schemas.SubjectRetrain, a.AlertID, retrainFor(st, a, c.Samples, now))
						}
					}
				}
				c.Counts, c.N = nil, 0
				c.reset()
			}
		}
	}

	// Events go out as marshalled bytes, the same bytes a replay returns.
	saved := make([]SavedOutput, len(outs))
	for i, o := range outs {
		data, err := json.Marshal(o.Event)
		if err != nil {
			return nil, fmt.Errorf("marshal %s event: %w", o.Subject, err)
		}
		saved[i] = SavedOutput{Subject: o.Subject, Key: o.Key, Event: data}
		outs[i].Event = data
	}
	st.LastSeq = seq
	st.LastOutputs = saved
	return outs, nil
}

// edge turns a test outcome into an alert transition: firing when the
// window is drifted and the alert is not firing yet, resolved when it is not
// drifted and the alert fires; nothing otherwise (edge-triggered).
func edge(w *window, signal string, st *State, drifted bool, now time.Time) (schemas.DriftAlert, bool) {
	var state string
	switch {
	case drifted && !w.Firing:
		w.Firing = true
		w.AlertID = alertID(signal, st.Env, st.ModelVersion, w.FirstSeq)
		state = StateFiring
	case !drifted && w.Firing:
		w.Firing = false
		state = StateResolved
	default:
		return schemas.DriftAlert{}, false
	}
	return schemas.DriftAlert{
		Schema: schemas.SchemaDrift, AlertID: w.AlertID, Env: st.Env, ModelVersion: st.ModelVersion,
		Signal: signal, State: state, From: w.From, To: w.To, Time: now,
	}, true
}

// trainDistribution is the configured distribution, else the train labels
// seen on the stream once there are enough of them; nil while unknown.
func trainDistribution(cfg Config, c *Chi2State) (map[string]float64, int) {
	if len(cfg.Chi2.TrainDistribution) > 0 {
		return cfg.Chi2.TrainDistribution, 0
	}
	n := 0
	for _, v := range c.Train {
		n += v
	}
	if n < cfg.Chi2.MinTrain {
		return nil, n
	}
	out := make(map[string]float64, len(c.Train))
	for k, v := range c.Train {
		out[k] = float64(v)
	}
	return out, n
}

func streakAlert(cfg Config, st *State, state string, now time.Time) schemas.DriftAlert {
	s := st.Streak
	a := schemas.DriftAlert{
		Schema: schemas.SchemaDrift, AlertID: s.AlertID, Env: st.Env, ModelVersion: st.ModelVersion,
		Signal: SignalLowConfidence, State: state, From: s.From, Time: now,
		Threshold: cfg.Threshold, SampleSize: s.Len,
	}
	for _, p := range s.Samples {
		a.ImageIDs = append(a.ImageIDs, p.ImageID)
		a.Confidences = append(a.Confidences, p.Confidence)
	}
	if state == StateFiring {
		a.Detail = fmt.Sprintf("%d consecutive predictions below confidence %v", s.Len, cfg.Threshold)
	}
	return a
}

// retrainFor is the retraining request a firing alert sends: the images
// behind it (a streak's, or a drifted window's first ones), with their
// predictions for pre-annotation.
func retrainFor(st *State, a schemas.DriftAlert, samples []schemas.Prediction, now time.Time) schemas.Retrain {
	id := strings.TrimPrefix(a.AlertID, SignalLowConfidence+"-")
	if a.Signal != SignalLowConfidence {
		id = a.AlertID // keeps the signal: a window alert's id is its own
	}
	r := schemas.Retrain{
		Schema:       schemas.SchemaRetrain,
		EventID:      "retrain-" + id,
		Kind:         schemas.RetrainRequested,
		Reason:       fmt.Sprintf("%s: %s (env %s, model %s)", a.Signal, a.Detail, st.Env, st.ModelVersion),
		Env:          st.Env,
		ModelVersion: st.ModelVersion,
		AlertID:      a.AlertID,
		Time:         now,
	}
	for _, p := range samples {
		r.Samples = append(r.Samples, p.Source)
		r.Predictions = append(r.Predictions, p)
	}
	return r
}

// stripForState keeps what alerts and retrain requests need of a prediction.
func stripForState(p schemas.Prediction) schemas.Prediction {
	p.InferenceSeconds, p.BatchSize = 0, 0
	return p
}

// supersede resolves every alert still firing in old, the state of a model
// version its env no longer serves (newVersion's first prediction arrived):
// nothing that version does any more can resolve them.
func supersede(old *State, newVersion string, now time.Time) []schemas.DriftAlert {
	detail := fmt.Sprintf("resolved: %s now serves model version %s", old.Env, newVersion)
	var out []schemas.DriftAlert
	if old.Streak.Firing {
		a := schemas.DriftAlert{Schema: schemas.SchemaDrift, AlertID: old.Streak.AlertID, Env: old.Env, ModelVersion: old.ModelVersion,
			Signal: SignalLowConfidence, State: StateResolved, From: old.Streak.From, Time: now, Detail: detail, SampleSize: old.Streak.Len}
		out = append(out, a)
		old.Streak = StreakState{}
	}
	for _, w := range []struct {
		signal string
		w      *window
	}{{SignalEntropyKS, &old.KS.window}, {SignalClassChi2, &old.Chi2.window}} {
		if w.w.Firing {
			out = append(out, schemas.DriftAlert{Schema: schemas.SchemaDrift, AlertID: w.w.AlertID, Env: old.Env, ModelVersion: old.ModelVersion,
				Signal: w.signal, State: StateResolved, From: w.w.From, To: w.w.To, Time: now, Detail: detail})
			w.w.Firing = false
		}
	}
	return out
}
