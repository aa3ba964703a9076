package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/schemas"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Reconciler lists a bucket and publishes events for objects that have none.
type Reconciler struct {
	Store  objstore.Store
	Bucket string
	Pub    *Publisher
	// Grace leaves recent objects to their notification, which may still
	// be on its way.
	Grace time.Duration
	// LedgerWait, when positive, makes each pass first wait up to this
	// long for the upload ledger (LedgerProcessor, in this process or
	// another) to record every event already in the stream; a pass whose
	// ledger is still behind fails with ErrLedgerBehind instead of
	// publishing a second event for every object whose first one is
	// still queued (MinIO's, after a restart of the ledger's process).
	LedgerWait time.Duration
	Log        zerolog.Logger
	// Metrics, when set, count passes and what they found.
	Metrics *ReconcileMetrics
	now     func() time.Time
}

// ReconcileMetrics count the reconciler's passes.
type ReconcileMetrics struct {
	passes    *prometheus.CounterVec
	listed    prometheus.Counter
	published prometheus.Counter
	last      prometheus.Gauge
}

// NewReconcileMetrics registers the reconciler's metrics on reg.
func NewReconcileMetrics(reg prometheus.Registerer) *ReconcileMetrics {
	m := &ReconcileMetrics{
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eyeflow_reconcile_passes_total",
			Help: "Reconciler passes over the raw bucket by result (ok, error)."}, []string{"result"}),
		listed: prometheus.NewCounter(prometheus.CounterOpts{Name: "eyeflow_reconcile_listed_objects_total",
			Help: "Objects the reconciler listed, over all passes."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "eyeflow_reconcile_published_events_total",
			Help: "Upload events the reconciler published for objects that had none."}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "eyeflow_reconcile_last_success_timestamp_seconds",
			Help: "Unix time of the last reconciler pass that completed."}),
	}
	reg.MustRegister(m.passes, m.listed, m.published, m.last)
	return m
}

func (m *ReconcileMetrics) record(res ReconcileResult, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.passes.WithLabelValues("error").Inc()
		return
	}
	m.passes.WithLabelValues("ok").Inc()
	m.listed.Add(float64(res.Listed))
	m.published.Add(float64(res.Published))
	m.last.SetToCurrentTime()
}

// ErrLedgerBehind is the error of a pass that did not run because the
// upload ledger had not caught up with the stream.
var ErrLedgerBehind = errors.New("the upload ledger has not recorded every upload event yet")

// Backlog is the number of upload events the ledger has not recorded yet:
// the ledger consumer's pending and unacknowledged messages.
func (l *Ledger) Backlog(ctx context.Context) (uint64, error) {
	if l.streams == nil {
		return 0, errors.New("ledger backlog: the ledger was given no stream reader")
	}
	in, err := pipeline.Bind(schemas.StageIngest, "", "")
	if err != nil {
		return 0, fmt.Errorf("ledger backlog: %w", err)
	}
	n, err := l.streams.Backlog(ctx, in.Stream, in.Consumer)
	if err != nil {
		return 0, fmt.Errorf("ledger backlog: %w", err)
	}
	return n, nil
}

// waitLedger waits until the ledger has recorded every upload event.
func (r *Reconciler) waitLedger(ctx context.Context) error {
	deadline := time.Now().Add(r.LedgerWait)
	for {
		n, err := r.Pub.ledger.Backlog(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d events behind after %s (is `eyeflow ingest` running?)", ErrLedgerBehind, n, r.LedgerWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ReconcileResult counts one pass.
type ReconcileResult struct {
	Listed, Published, Recent int
}

// Once makes one pass over the bucket.
func (r *Reconciler) Once(ctx context.Context) (ReconcileResult, error) {
	now := time.Now
	if r.now != nil {
		now = r.now
	}
	var res ReconcileResult
	if r.LedgerWait > 0 {
		if err := r.waitLedger(ctx); err != nil {
			return res, fmt.Errorf("reconcile %s: %w", r.Bucket, err)
		}
	}
	for info, err := range r.Store.List(ctx, r.Bucket, "") {
		if err != nil {
			return res, fmt.Errorf("reconcile %s: list: %w", r.Bucket, err)
		}
		res.Listed++
		// List does not return user metadata on every backend; Stat does.
		full, err := r.Store.Stat(ctx, r.Bucket, info.Key)
		if err != nil {
			return res, fmt.Errorf("reconcile %s: %w", r.Bucket, err)
		}
		has, err := r.Pub.ledger.Has(ctx, UploadFromInfo(full).ID())
		if err != nil {
			return res, fmt.Errorf("reconcile %s: %w", r.Bucket, err)
		}
		if has {
			continue
		}
		if r.Grace > 0 && !full.Modified.IsZero() && now().Sub(full.Modified) < r.Grace {
			res.Recent++
			continue
		}
		ok, err := r.Pub.Publish(ctx, full)
		if err != nil {
			return res, fmt.Errorf("reconcile %s: %w", r.Bucket, err)
		}
		if ok {
			res.Published++
			r.Log.Info().Str("key", info.Key).Msg("reconciler published a missing upload event")
		}
	}
	return res, nil
}

// Run reconciles every interval until ctx ends, logging one summary line
// per pass.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		res, err := r.Once(ctx)
		if ctx.Err() != nil {
			return
		}
		r.Metrics.record(res, err)
		if err != nil {
			r.Log.Warn().Err(err).Str("bucket", r.Bucket).Str("next_in", interval.String()).Msg("reconcile pass failed")
		} else {
			r.Log.Info().Str("bucket", r.Bucket).Int("listed", res.Listed).Int("published", res.Published).Int("recent", res.Recent).
				Str("took", time.Since(start).Round(time.Millisecond).String()).Str("next_in", interval.String()).Msg("reconcile pass")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
