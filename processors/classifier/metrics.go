package classifier

import (
	"github.com/prometheus/client_golang/prometheus"

	"eyeflow/inference"
	"eyeflow/models"
)

// Metrics are the classifier's Prometheus metrics. The first four names are
// the old FastAPI service's, which existing dashboards query; every series
// is labelled env and model_version.
//
//   - predictions_total: predictions produced (stream and /predict).
//   - prediction_errors_total: images that got no prediction: bad image,
//     missing object, failed session run.
//   - inference_latency_seconds: histogram of session run durations, one
//     observation per run (a run is a batch; eyeflow_classifier_batch_size
//     has its size).
//   - model_confidence_score: a gauge, as in the old service, holding the
//     confidence of the latest prediction (dashboards read it as a gauge;
//     a histogram would rename its series). The distribution is
//     eyeflow_classifier_confidence.
type Metrics struct {
	predictions *prometheus.CounterVec
	errors      *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	confidence  *prometheus.GaugeVec
	confHist    *prometheus.HistogramVec
	batchSize   *prometheus.HistogramVec
	info        *prometheus.GaugeVec
	loads       *prometheus.CounterVec
	skipped     *prometheus.CounterVec
}

// NewMetrics registers the classifier metrics with reg (once per process).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	l := []string{"env", "model_version"}
	m := &Metrics{
		predictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "predictions_total", Help: "Predictions produced, by env and model version.",
		}, l),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "prediction_errors_total", Help: "Images that got no prediction (bad image, missing object, failed run).",
		}, l),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "inference_latency_seconds", Help: "Duration of one ONNX Runtime session run (one batch).",
			Buckets: prometheus.ExponentialBuckets(0.002, 2, 14),
		}, l),
		confidence: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "model_confidence_score", Help: "Confidence of the latest prediction.",
		}, l),
		confHist: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eyeflow_classifier_confidence", Help: "Distribution of prediction confidences (top-1 probability).",
			Buckets: prometheus.LinearBuckets(0.1, 0.1, 10),
		}, l),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eyeflow_classifier_batch_size", Help: "Images per session run.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		}, l),
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eyeflow_classifier_info",
			Help: "1 for the model serving each env, with the execution provider it actually runs on and, on WebGPU, the GPU adapter (empty on the CPU).",
		}, []string{"env", "model_name", "model_version", "provider", "adapter", "adapter_vendor", "adapter_backend", "adapter_driver"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eyeflow_classifier_model_loads_total", Help: "Model loads by env and result (ok, refused).",
		}, []string{"env", "result"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eyeflow_classifier_skipped_total", Help: "Images acknowledged without a prediction (outside the canary share).",
		}, []string{"env"}),
	}
	reg.MustRegister(m.predictions, m.errors, m.latency, m.confidence, m.confHist, m.batchSize, m.info, m.loads, m.skipped)
	return m
}

// infoLabels are eyeflow_classifier_info's label values for env serving a
// (loaded as m).
func infoLabels(env string, a models.Assignment, m *inference.Model) []string {
	ad := m.Adapter
	return []string{env, a.Name, a.Version, m.Provider, ad.Name, ad.Vendor, ad.Backend, ad.Driver}
}

// observe returns the Batcher hook for env.
func (m *Metrics) observe(env string) func(Batch, error) {
	return func(b Batch, err error) {
		v := b.Card.Version
		if err != nil {
			return // callers count failed images in prediction_errors_total
		}
		m.latency.WithLabelValues(env, v).Observe(b.InferenceSeconds)
		m.batchSize.WithLabelValues(env, v).Observe(float64(b.Size))
	}
}

// predicted records one prediction.
func (m *Metrics) predicted(env, version string, confidence float64) {
	m.predictions.WithLabelValues(env, version).Inc()
	m.confidence.WithLabelValues(env, version).Set(confidence)
	m.confHist.WithLabelValues(env, version).Observe(confidence)
}

func (m *Metrics) failed(env, version string) { m.errors.WithLabelValues(env, version).Inc() }
