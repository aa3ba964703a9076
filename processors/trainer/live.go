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

// livePairs pairs the labelled live predictions the candidate made
// shadowing in staging with prod's predictions of the same images since
// since: +1 the candidate right and prod wrong, -1 the opposite, 0 alike,
// in the order prod answered them. Images of the train split are left
// out: the candidate may have been trained on them.
func livePairs(ctx context.Context, streams stage.StreamReader, candidate, prodVersion string, since time.Time) ([]float64, error) {
	cand := map[string]bool{}
	err := streams.Scan(ctx, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvStaging), since, func(m stage.StoredMsg) bool {
		p, err := schemas.DecodePrediction(m.Data)
		if err == nil && p.ModelVersion == candidate && p.TrueLabel != "" && p.Split != schemas.SplitTrain {
			cand[p.ImageID] = p.PredictedClass == p.TrueLabel
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	var out []float64
	done := map[string]bool{}
	err = streams.Scan(ctx, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvProd), since, func(m stage.StoredMsg) bool {
		p, err := schemas.DecodePrediction(m.Data)
		if err != nil || p.ModelVersion != prodVersion || p.TrueLabel == "" || done[p.ImageID] {
			return true
		}
		c, ok := cand[p.ImageID]
		if !ok {
			return true
		}
		done[p.ImageID] = true
		b := p.PredictedClass == p.TrueLabel
		switch {
		case c && !b:
			out = append(out, 1)
		case b && !c:
			out = append(out, -1)
		default:
			out = append(out, 0)
		}
		return true
	})
	return out, err
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
