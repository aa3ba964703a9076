package trainer

import (
	"context"
	"time"

	"eyeflow/bus"
	"eyeflow/schemas"
	"eyeflow/stage"
)

// The rollout's judgements read the streams again (stage.StreamReader's
// Scan) rather than keep counters in step with them: scans are bounded by
// the caller's counts (canary-min, the rollback window), not by the
// stream's size, and exact, since the stream is the record.

// liveStats counts env's predictions by version since since, reading at
// most limit predictions of that version (limit 0: all).
func liveStats(ctx context.Context, streams stage.StreamReader, env, version string, since time.Time, limit int, lowConf float64) (LiveStats, time.Time, error) {
	var st LiveStats
	var last time.Time
	err := streams.Scan(ctx, bus.StreamPredictions, schemas.PredictionSubject(env), since, func(m stage.StoredMsg) bool {
		p, err := schemas.DecodePrediction(m.Data)
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
func driftFirings(ctx context.Context, streams stage.StreamReader, env, version string, since time.Time) ([]time.Time, error) {
	var out []time.Time
	err := streams.Scan(ctx, bus.StreamDrift, schemas.DriftSubject(env), since, func(m stage.StoredMsg) bool {
		a, err := schemas.DecodeDriftAlert(m.Data)
		if err == nil && a.ModelVersion == version && a.State == "firing" {
			out = append(out, a.Time)
		}
		return true
	})
	return out, err
}

// Timeline returns every model event stored on eye.models, oldest first.
func Timeline(ctx context.Context, streams stage.StreamReader) ([]schemas.ModelEvent, error) {
	var out []schemas.ModelEvent
	err := streams.Scan(ctx, bus.StreamModels, schemas.SubjectModels, time.Time{}, func(m stage.StoredMsg) bool {
		if ev, err := schemas.DecodeModelEvent(m.Data); err == nil {
			out = append(out, ev)
		}
		return true
	})
	return out, err
}

// Live summarises env's predictions by version since since: how many, how
// many below lowConf, and how the labelled ones fared.
func Live(ctx context.Context, streams stage.StreamReader, env, version string, since time.Time, lowConf float64) (LiveStats, error) {
	st, _, err := liveStats(ctx, streams, env, version, since, 0, lowConf)
	return st, err
}
