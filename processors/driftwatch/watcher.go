package driftwatch

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Metrics are the watcher's gauges, one series per env and model version.
type Metrics struct {
	// Alert is drift_alert{env,model_version}: 1 while low_confidence_streak fires.
	Alert     *prometheus.GaugeVec
	KSAlert   *prometheus.GaugeVec
	Chi2Alert *prometheus.GaugeVec
	KSP       *prometheus.GaugeVec
	Chi2P     *prometheus.GaugeVec
	Streak    *prometheus.GaugeVec
}

// NewMetrics registers the watcher's gauges with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	labels := []string{"env", "model_version"}
	g := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	}
	m := &Metrics{
		Alert:     g("drift_alert", "1 while the low_confidence_streak alert fires for the env and model version, else 0."),
		KSAlert:   g("drift_entropy_ks_alert", "1 while the entropy_ks alert (prediction entropy vs holdout reference, KS test) fires, else 0."),
		Chi2Alert: g("drift_class_chi2_alert", "1 while the class_chi2 alert (predicted classes vs training distribution, chi-square test) fires, else 0."),
		KSP:       g("drift_entropy_ks_p_value", "P-value of the last entropy KS test."),
		Chi2P:     g("drift_class_chi2_p_value", "P-value of the last predicted-class chi-square test."),
		Streak:    g("drift_low_confidence_streak", "Length of the current run of predictions below the confidence threshold."),
	}
	reg.MustRegister(m.Alert, m.KSAlert, m.Chi2Alert, m.KSP, m.Chi2P, m.Streak)
	return m
}

func (m *Metrics) observe(st *State) {
	l := []string{st.Env, st.ModelVersion}
	m.Alert.WithLabelValues(l...).Set(b2f(st.Streak.Firing))
	m.Streak.WithLabelValues(l...).Set(float64(st.Streak.Len))
	m.KSAlert.WithLabelValues(l...).Set(b2f(st.KS.Firing))
	m.Chi2Alert.WithLabelValues(l...).Set(b2f(st.Chi2.Firing))
	if st.KS.Tested > 0 {
		m.KSP.WithLabelValues(l...).Set(st.KS.LastP)
	}
	if st.Chi2.Tested > 0 {
		m.Chi2P.WithLabelValues(l...).Set(st.Chi2.LastP)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Watcher is the driftwatch processor.
type Watcher struct {
	cfg     Config
	kv      stage.KeyValue
	metrics *Metrics
	now     func() time.Time
}

// New returns the watcher on its state bucket kv (the topology's
// KVBucket) and restores the gauges from it, so /metrics tells a firing
// alert right after a restart.
func New(ctx context.Context, kv stage.KeyValue, cfg Config, m *Metrics) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if kv == nil || m == nil {
		return nil, errors.New("driftwatch: a state bucket and metrics are required")
	}
	w := &Watcher{cfg: cfg, kv: kv, metrics: m, now: func() time.Time { return time.Now().UTC() }}
	if err := w.restoreGauges(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Watcher) restoreGauges(ctx context.Context) error {
	keys, err := w.kv.Keys(ctx, "")
	if err != nil {
		return fmt.Errorf("driftwatch: list states: %w", err)
	}
	for _, key := range keys {
		st, _, err := w.load(ctx, key)
		if err != nil {
			return err
		}
		w.metrics.observe(&st)
	}
	return nil
}

// StateKey is the KV key of an (env, model version): both parts are
// base64url-encoded because a model version may hold characters a key may
// not (KV keys allow only [-/_=.a-zA-Z0-9]).
func StateKey(env, modelVersion string) string {
	enc := base64.RawURLEncoding
	return "state." + enc.EncodeToString([]byte(env)) + "." + enc.EncodeToString([]byte(modelVersion))
}

func (w *Watcher) load(ctx context.Context, key string) (State, uint64, error) {
	e, err := w.kv.Get(ctx, key)
	if errors.Is(err, stage.ErrKeyNotFound) {
		return State{}, 0, nil
	}
	if err != nil {
		return State{}, 0, fmt.Errorf("driftwatch: get state %s: %w", key, err)
	}
	var st State
	if err := json.Unmarshal(e.Value, &st); err != nil {
		return State{}, 0, fmt.Errorf("driftwatch: decode state %s: %w", key, err)
	}
	return st, e.Revision, nil
}

// Handle counts one prediction. Stream order and the last counted sequence
// make it exactly-once in effect: a prediction at or below the stored
// sequence was counted already; at the stored sequence its events are
// returned again (same Msg-Ids, so JetStream drops copies already stored).
func (w *Watcher) Handle(ctx context.Context, p schemas.Prediction) ([]stage.Output, error) {
	meta, ok := stage.MetaFrom(ctx)
	if !ok || meta.Sequence == 0 {
		return nil, errors.New("driftwatch: no stream sequence for the prediction")
	}
	if p.Env == "" {
		// The subject names the env when the payload does not.
		p.Env = strings.TrimPrefix(meta.Subject, strings.TrimSuffix(schemas.SubjectPredictionsAll, "*"))
	}
	if err := validPrediction(p); err != nil {
		return nil, stage.Permanent(schemas.ReasonBadPrediction, err)
	}
	key := StateKey(p.Env, p.ModelVersion)
	st, rev, err := w.load(ctx, key)
	if err != nil {
		return nil, err
	}
	switch {
	case meta.Sequence < st.LastSeq:
		return nil, nil
	case meta.Sequence == st.LastSeq:
		return replay(st.LastOutputs), nil
	}
	st.Env, st.ModelVersion = p.Env, p.ModelVersion
	var superseded []State
	if rev == 0 {
		others, err := w.others(ctx, p.Env, p.ModelVersion)
		if err != nil {
			return nil, err
		}
		// The training distribution is the data's, not the version's: a
		// new version starts with what its predecessors learnt, so its
		// class_chi2 tests from its first window.
		for _, o := range others {
			if total(o.Chi2.Train) > total(st.Chi2.Train) {
				st.Chi2.Train = maps.Clone(o.Chi2.Train)
			}
			if o.Streak.Firing || o.KS.Firing || o.Chi2.Firing {
				superseded = append(superseded, o)
			}
		}
	}
	outs, err := apply(w.cfg, &st, p, meta.Sequence, w.now())
	if err != nil {
		return nil, err
	}
	if rev == 0 {
		// The env's first prediction by this version: alerts of the
		// versions it replaced resolve. Their events join this
		// prediction's saved outputs, so a redelivery publishes them again.
		for i := range superseded {
			for _, a := range supersede(&superseded[i], p.ModelVersion, w.now()) {
				o := stage.Output{Subject: schemas.DriftSubject(p.Env), Key: a.AlertID + "/" + StateResolved, Event: a}
				outs = append(outs, o)
				b, err := json.Marshal(a)
				if err != nil {
					return nil, err
				}
				st.LastOutputs = append(st.LastOutputs, SavedOutput{Subject: o.Subject, Key: o.Key, Event: b})
			}
		}
	}
	data, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("driftwatch: encode state %s: %w", key, err)
	}
	// Create or compare-and-set: a second instance that raced us on the
	// same key makes this fail, and the redelivery re-reads the winner.
	if rev == 0 {
		_, err = w.kv.Create(ctx, key, data)
	} else {
		_, err = w.kv.Update(ctx, key, data, rev)
	}
	if err != nil {
		return nil, fmt.Errorf("driftwatch: save state %s (env %s, model %s): %w", key, p.Env, p.ModelVersion, err)
	}
	w.metrics.observe(&st)
	for _, old := range superseded {
		if err := w.save(ctx, old); err != nil {
			return nil, err
		}
		w.metrics.observe(&old)
	}
	return outs, nil
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// others returns the states of env's other model versions.
func (w *Watcher) others(ctx context.Context, env, version string) ([]State, error) {
	prefix := "state." + base64.RawURLEncoding.EncodeToString([]byte(env)) + "."
	keys, err := w.kv.Keys(ctx, prefix+">")
	if err != nil {
		return nil, fmt.Errorf("driftwatch: list states of %s: %w", env, err)
	}
	var out []State
	for _, k := range keys {
		if k == StateKey(env, version) {
			continue
		}
		st, _, err := w.load(ctx, k)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// save overwrites a state (a superseded version's: nothing else writes it).
func (w *Watcher) save(ctx context.Context, st State) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := w.kv.Put(ctx, StateKey(st.Env, st.ModelVersion), data); err != nil {
		return fmt.Errorf("driftwatch: save state of %s %s: %w", st.Env, st.ModelVersion, err)
	}
	return nil
}

func replay(saved []SavedOutput) []stage.Output {
	outs := make([]stage.Output, len(saved))
	for i, s := range saved {
		outs[i] = stage.Output{Subject: s.Subject, Key: s.Key, Event: []byte(s.Event)}
	}
	return outs
}

func validPrediction(p schemas.Prediction) error {
	var errs []error
	if p.ModelVersion == "" {
		errs = append(errs, errors.New("model_version is empty"))
	}
	if p.Env == "" {
		errs = append(errs, errors.New("env is empty"))
	}
	if math.IsNaN(p.Confidence) || p.Confidence < 0 || p.Confidence > 1 {
		errs = append(errs, fmt.Errorf("confidence %v is not a probability", p.Confidence))
	}
	for _, c := range p.TopK {
		if math.IsNaN(c.Probability) || c.Probability < 0 || c.Probability > 1 {
			errs = append(errs, fmt.Errorf("top_k %s probability %v is not a probability", c.Class, c.Probability))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("prediction %s: %w", p.ImageID, err)
	}
	return nil
}

// Processor is the stage: one prediction at a time, because the rule is
// about stream order. The topology gives its consumer MaxAckPending 1
// (the catalogue, package pipeline; see the package doc): with more, a
// prediction retried after a transient failure would come back after later
// ones and be skipped as already seen.
func Processor(w *Watcher, log zerolog.Logger, m *stage.Metrics) stage.Processor[schemas.Prediction] {
	return stage.Processor[schemas.Prediction]{
		Stage:       schemas.StageDriftwatch,
		Decode:      schemas.DecodePrediction,
		ImageID:     func(p schemas.Prediction) string { return p.ImageID },
		Handle:      w.Handle,
		Concurrency: 1,
		RetryBase:   200 * time.Millisecond,
		RetryMax:    10 * time.Second,
		Logger:      log,
		Metrics:     m,
	}
}
