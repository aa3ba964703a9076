package trainer

import (
	"context"
	"errors"
	"fmt"
	"time"

	ejs "eyeflow/jetstream"
	"eyeflow/schemas"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// scan reads subject's messages stored since since, in order, until fn
// returns false or the stream has nothing more. Scans are bounded by the
// caller's counts (canary-min, the rollback window), not by the stream's
// size, so reading the stream again is cheaper than keeping counters in step
// with it, and exact: the stream is the record.
func scan(ctx context.Context, js natsjs.JetStream, stream, subject string, since time.Time, fn func(natsjs.Msg) bool) error {
	cfg := natsjs.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: natsjs.DeliverByStartTimePolicy, OptStartTime: &since}
	if since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = natsjs.DeliverAllPolicy, nil
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("scan %s: %w", subject, err)
	}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("scan %s: %w", subject, err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			// Ordered consumers have no acks; NumPending is what is left.
			return nil
		}
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("scan %s: %w", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if !fn(m) {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, natsjs.ErrNoMessages) {
			return fmt.Errorf("scan %s: %w", subject, err)
		}
		if n == 0 {
			// Pending but not yet delivered: ask again with a wait.
			b, err := cons.Fetch(256, natsjs.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				return fmt.Errorf("scan %s: %w", subject, err)
			}
			got := 0
			for m := range b.Messages() {
				got++
				if !fn(m) {
					return nil
				}
			}
			if got == 0 {
				return nil
			}
		}
	}
}

// liveStats counts env's predictions by version since since, reading at
// most limit predictions of that version (limit 0: all).
func liveStats(ctx context.Context, js natsjs.JetStream, env, version string, since time.Time, limit int, lowConf float64) (LiveStats, time.Time, error) {
	var st LiveStats
	var last time.Time
	err := scan(ctx, js, ejs.StreamPredictions, schemas.PredictionSubject(env), since, func(m natsjs.Msg) bool {
		p, err := schemas.DecodePrediction(m.Data())
		if err != nil || p.ModelVersion != version {
			return true
		}
		st.Predictions++
		if p.Confidence < lowConf {
			st.LowConfidence++
		}
		if p.TrueLabel != "" {
			st.Labelled++
			if p.TrueLabel == p.PredictedClass {
				st.Correct++
			}
		}
		last = p.Time
		return limit <= 0 || st.Predictions < limit
	})
	return st, last, err
}

// driftFirings returns the times of env's firing drift alerts for version
// since since.
func driftFirings(ctx context.Context, js natsjs.JetStream, env, version string, since time.Time) ([]time.Time, error) {
	var out []time.Time
	err := scan(ctx, js, ejs.StreamDrift, schemas.DriftSubject(env), since, func(m natsjs.Msg) bool {
		a, err := schemas.DecodeDriftAlert(m.Data())
		if err == nil && a.ModelVersion == version && a.State == "firing" {
			out = append(out, a.Time)
		}
		return true
	})
	return out, err
}

// Timeline returns every model event stored on eye.models, oldest first.
func Timeline(ctx context.Context, js natsjs.JetStream) ([]schemas.ModelEvent, error) {
	var out []schemas.ModelEvent
	err := scan(ctx, js, ejs.StreamModels, schemas.SubjectModels, time.Time{}, func(m natsjs.Msg) bool {
		if ev, err := schemas.DecodeModelEvent(m.Data()); err == nil {
			out = append(out, ev)
		}
		return true
	})
	return out, err
}

// Live summarises env's predictions by version since since: how many, how
// many below lowConf, and how the labelled ones fared.
func Live(ctx context.Context, js natsjs.JetStream, env, version string, since time.Time, lowConf float64) (LiveStats, error) {
	st, _, err := liveStats(ctx, js, env, version, since, 0, lowConf)
	return st, err
}
