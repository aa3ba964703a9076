package stage

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the runtime's Prometheus metrics, shared by every stage in a
// process and told apart by the stage label.
type Metrics struct {
	processed    *prometheus.CounterVec
	failed       *prometheus.CounterVec
	retried      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	inFlight     *prometheus.GaugeVec
	pending      *prometheus.GaugeVec
	ackPending   *prometheus.GaugeVec
	redelivered  *prometheus.GaugeVec
}

// NewMetrics registers the runtime metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eyeflow_messages_processed_total",
			Help: "Messages a stage processed and acknowledged after publishing its outputs.",
		}, []string{"stage"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eyeflow_messages_failed_total",
			Help: "Failed processing attempts by reason (transient ones are retried).",
		}, []string{"stage", "reason"}),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eyeflow_messages_retried_total",
			Help: "Messages negatively acknowledged for a later retry.",
		}, []string{"stage"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eyeflow_dead_letters_total",
			Help: "Messages published to eye.dlq.<stage> and terminated, by reason.",
		}, []string{"stage", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eyeflow_processing_seconds",
			Help:    "Time from taking a message (or batch) to acknowledging it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"stage"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eyeflow_messages_in_flight",
			Help: "Messages a stage holds and has not yet acknowledged.",
		}, []string{"stage"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eyeflow_consumer_pending_messages",
			Help: "Messages in the stream not yet delivered to the stage's consumer (lag).",
		}, []string{"stage", "consumer"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eyeflow_consumer_ack_pending_messages",
			Help: "Messages delivered to the stage's consumer and not yet acknowledged.",
		}, []string{"stage", "consumer"}),
		redelivered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eyeflow_consumer_redelivered_messages",
			Help: "Messages currently redelivered at least once on the stage's consumer.",
		}, []string{"stage", "consumer"}),
	}
	reg.MustRegister(m.processed, m.failed, m.retried, m.deadLettered, m.duration, m.inFlight, m.pending, m.ackPending, m.redelivered)
	return m
}
