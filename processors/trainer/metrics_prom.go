package trainer

import (
	"eyeflow/schemas"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the trainer's Prometheus metrics.
type Metrics struct {
	runs     *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	holdout  *prometheus.GaugeVec
	steps    *prometheus.CounterVec
	features prometheus.Counter
}

// NewMetrics registers the trainer's metrics with reg (once per process).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eyeflow_trainer_runs_total", Help: "Training requests by engine and outcome (trained, refused).",
		}, []string{"engine", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eyeflow_trainer_run_seconds", Help: "Wall time of a training run, evaluation included.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}, []string{"engine"}),
		holdout: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eyeflow_model_holdout_accuracy", Help: "Holdout accuracy of a model version, by holdout split.",
		}, []string{"model", "model_version", "holdout"}),
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eyeflow_model_events_total", Help: "Model lifecycle events published on eye.models, by kind.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.runs, m.seconds, m.holdout, m.steps)
	return m
}

func (m *Metrics) observe(name, version string, metrics map[string]schemas.HoldoutMetrics) {
	for split, hm := range metrics {
		m.holdout.WithLabelValues(name, version, split).Set(hm.Accuracy)
	}
}
