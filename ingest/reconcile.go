package ingest

import (
	"context"
	"fmt"
	"time"

	"eyeflow/objstore"

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
	Log   zerolog.Logger
	now   func() time.Time
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

// Run reconciles every interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := r.Once(ctx)
		if err != nil && ctx.Err() == nil {
			r.Log.Warn().Err(err).Msg("reconcile")
		} else if err == nil {
			r.Log.Debug().Int("listed", res.Listed).Int("published", res.Published).Msg("reconciled")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
