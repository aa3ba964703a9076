package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"eyeflow/bus"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/stage"
)

// Run trains one request and publishes its trained or refused event.
func (t *Trainer) Run(ctx context.Context, req Request) (Outcome, error) {
	out, err := t.Train(ctx, req)
	if err != nil {
		return out, err
	}
	return out, t.emit(ctx, out.Event)
}

// Processor is the stage that trains on every eye.retrain manifest_ready
// event; other kinds (labelling requests) are acknowledged untouched.
func (t *Trainer) Processor(m *stage.Metrics) stage.Processor[schemas.Retrain] {
	return stage.Processor[schemas.Retrain]{
		Stage:    schemas.StageTrainer,
		Decode:   schemas.DecodeRetrain,
		Identity: func(r schemas.Retrain) string { return "retrain:" + r.EventID + ":" + r.Kind },
		Handle:   t.HandleRetrain,
		// One at a time: a run takes every core, and the next request
		// trains on a dataset that includes this one's images.
		Concurrency: 1,
		Logger:      t.log,
		Metrics:     m,
	}
}

// HandleRetrain trains on a manifest. Images it names that never reach the
// dataset are skipped, counted in the model card, and dead-lettered on
// eye.dlq.trainer with the reason; the model event is published before the
// request is acknowledged, so a trainer killed mid-run trains again on
// redelivery and the version's identity makes that the same version.
func (t *Trainer) HandleRetrain(ctx context.Context, r schemas.Retrain) ([]stage.Output, error) {
	if r.Kind != schemas.RetrainManifestReady {
		return nil, nil
	}
	if r.Manifest == nil || r.Manifest.Key == "" {
		return nil, stage.Permanentf(schemas.ReasonBadManifest, "manifest_ready event %s names no manifest", r.EventID)
	}
	items, bad, err := ReadManifest(ctx, t.store, *r.Manifest)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, stage.Permanent(schemas.ReasonObjectMissing, err)
	}
	if err != nil {
		return nil, err
	}
	if len(items) == 0 && len(bad) > 0 {
		return nil, stage.Permanentf(schemas.ReasonBadManifest, "manifest %s/%s: %v", r.Manifest.Bucket, r.Manifest.Key, bad)
	}
	var labelled []schemas.ManifestLine
	for _, it := range items {
		if it.Origin != "train" {
			labelled = append(labelled, it)
		}
	}
	out, err := t.Run(ctx, Request{Trigger: TriggerManifest, Manifest: labelled,
		Reason: fmt.Sprintf("retrain %s: %d newly labelled images (%s)", r.EventID, len(labelled), r.Reason)})
	if err != nil {
		return nil, err
	}
	var outs []stage.Output
	for _, s := range out.Skipped {
		payload, _ := json.Marshal(s.Example)
		dl := schemas.DeadLetter{Schema: schemas.SchemaDeadLetter, Stage: schemas.StageTrainer,
			Subject: "s3://" + s.Example.Bucket + "/" + s.Example.Key, Stream: bus.StreamRetrain,
			Reason: s.Reason, Error: fmt.Sprint(s.Err), Permanent: true, Payload: payload, Time: t.now()}
		outs = append(outs, stage.Output{Subject: schemas.DLQSubject(schemas.StageTrainer), Event: dl, Key: s.Example.ImageID + "/" + s.Example.Key})
	}
	return outs, nil
}

// RunBootstrap trains version 1 once the train split is big enough and
// settled, while prod serves no trained model; it returns when ctx ends.
func (t *Trainer) RunBootstrap(ctx context.Context) error {
	tried := ""
	for {
		wait := t.cfg.Poll
		if t.warm(ctx) > 0 {
			wait = 0 // more may be waiting: no pause between chunks
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		due, digest, why, err := t.bootstrapDue(ctx)
		if err != nil {
			t.log.Warn().Err(err).Msg("bootstrap check")
			continue
		}
		if !due || digest == tried {
			continue
		}
		tried = digest
		t.log.Info().Str("why", why).Msg("bootstrap: training version 1")
		if _, err := t.Run(ctx, Request{Trigger: TriggerBootstrap, Reason: "bootstrap: " + why}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			t.log.Error().Err(err).Msg("bootstrap training failed; trying again")
			tried = ""
		}
	}
}

// warm lets a Warmer engine prepare the dataset's new train and holdout_1
// images, unless a run or a rollout step holds the trainer.
func (t *Trainer) warm(ctx context.Context) int {
	w, ok := t.engine.(Warmer)
	if !ok || !t.mu.TryLock() {
		return 0
	}
	defer t.mu.Unlock()
	ds, err := ListDataset(ctx, t.store, t.cfg.DatasetBucket, t.cfg.DatasetPrefix)
	if err != nil {
		return 0
	}
	exs := append(ds.Splits[schemas.SplitTrain], ds.Splits[SelectHoldout]...)
	n, err := w.Warm(ctx, exs, t.eval.Images)
	if err != nil && ctx.Err() == nil {
		t.log.Warn().Err(err).Msg("warm-up of new images")
	} else if n > 0 {
		t.log.Debug().Int("images", n).Msg("features computed ahead of training")
	}
	return n
}

// bootstrapDue says whether bootstrap should train now, and on which set.
func (t *Trainer) bootstrapDue(ctx context.Context) (bool, string, string, error) {
	if !t.cfg.Bootstrap {
		return false, "", "", nil
	}
	a, ok, err := t.registry.Assigned(ctx, schemas.EnvProd)
	if err != nil || (ok && !models.IsPlaceholder(a.Name)) {
		return false, "", "", err
	}
	recs, err := t.Records(ctx)
	if err != nil {
		return false, "", "", err
	}
	for _, r := range recs {
		if slices.Contains([]string{StageCandidate, StageStaging, StageCanary, StageProd}, r.Stage) {
			return false, "", "", nil // a trained version is on its way
		}
	}
	ds, err := ListDataset(ctx, t.store, t.cfg.DatasetBucket, t.cfg.DatasetPrefix)
	if err != nil {
		return false, "", "", err
	}
	counts := ds.ClassCounts(schemas.SplitTrain)
	if enoughClasses(counts, t.cfg.MinPerClass) < t.cfg.MinClasses {
		return false, "", "", nil
	}
	if quiet := t.now().Sub(ds.Newest); quiet < t.cfg.Settle {
		return false, "", "", nil
	}
	train := ds.Splits[schemas.SplitTrain]
	return true, Digest(train), fmt.Sprintf("prod serves no trained model; %d train images in %d classes, none new for %s",
		len(train), len(counts), t.cfg.Settle), nil
}

// RunRollout moves versions along until ctx ends.
func (t *Trainer) RunRollout(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(t.cfg.Poll):
		}
		if err := t.Step(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn().Err(err).Msg("rollout step")
		}
	}
}

// Step evaluates versions nobody evaluated yet (pushed by a person, or left
// by a crash), stages the newest candidate, and applies the promotion gate,
// the canary's live check and the rollback rule once each.
func (t *Trainer) Step(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ds, err := ListDataset(ctx, t.store, t.cfg.DatasetBucket, t.cfg.DatasetPrefix)
	if err != nil {
		return err
	}
	entries, err := t.registry.List(ctx)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if models.IsPlaceholder(e.Name) {
			continue
		}
		if _, ok, err := t.getRecord(ctx, e.Name, e.Version); err != nil || ok {
			if err != nil {
				return err
			}
			continue
		}
		if err := t.evaluateNew(ctx, e, ds); err != nil {
			return err
		}
	}
	recs, err := t.Records(ctx)
	if err != nil {
		return err
	}
	assigned := map[string]models.Assignment{}
	for _, env := range schemas.Envs() {
		if a, ok, err := t.registry.Assigned(ctx, env); err != nil {
			return err
		} else if ok {
			assigned[env] = a
		}
	}
	serves := func(env string, r Record) bool {
		a, ok := assigned[env]
		return ok && a.Name == r.Name && a.Version == r.Version
	}
	// The newest candidate goes to staging; older ones are superseded.
	var cands []Record
	for _, r := range recs {
		if r.Stage == StageCandidate {
			cands = append(cands, r)
		}
	}
	for i, r := range cands {
		if i < len(cands)-1 {
			newest := cands[len(cands)-1]
			if err := t.refuse(ctx, r, StageSuperseded, "superseded by the newer candidate "+newest.Name+" "+newest.Version); err != nil {
				return err
			}
			continue
		}
		if err := t.promote(ctx, r.Name, r.Version, schemas.EnvStaging, "new candidate: shadows every prediction", schemas.ModelPromoted, "rollout"); err != nil {
			return err
		}
		return nil // one step at a time: the next Step sees the new state
	}
	for _, r := range recs {
		var err error
		switch {
		case r.Stage == StageStaging && serves(schemas.EnvStaging, r):
			err = t.gate(ctx, r, assigned, ds)
		case r.Stage == StageCanary && serves(schemas.EnvCanary, r):
			err = t.canaryCheck(ctx, r, assigned)
		case r.Stage == StageProd && serves(schemas.EnvProd, r) && !r.Judged:
			err = t.rollbackCheck(ctx, r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// evaluateNew scores a registered version that has no record yet.
func (t *Trainer) evaluateNew(ctx context.Context, e models.Entry, ds *Dataset) error {
	engine := EnginePushed
	if e.Card.Training != nil && e.Card.Training.Engine != "" {
		engine = e.Card.Training.Engine
	}
	rec := Record{Name: e.Name, Version: e.Version, Engine: engine, Stage: StageCandidate, Created: t.now(), HoldoutDigest: holdoutDigest(ds)}
	if e.Card.Training != nil {
		rec.TrainImages = e.Card.Training.TrainImages
	}
	// A version served before eyeflow tracked rollouts starts where it is.
	for _, env := range []string{schemas.EnvStaging, schemas.EnvCanary, schemas.EnvProd} {
		if slices.Contains(e.Envs, env) {
			rec.Stage, rec.Judged = env, true
		}
	}
	files, err := t.registry.Fetch(ctx, e.Name, e.Version)
	if err != nil {
		return err
	}
	metrics, err := t.eval.Evaluate(ctx, files, ds)
	if errors.Is(err, ErrCandidate) {
		rec.Stage, rec.Reason = StageRefused, err.Error()
		ev := t.event(schemas.ModelRefused, e.Name, e.Version, engine, err.Error())
		ev.EventID = "refused:" + e.Name + ":" + e.Version + ":evaluation"
		if err := t.emit(ctx, ev); err != nil {
			return err
		}
		return t.putRecord(ctx, rec)
	}
	if err != nil {
		return err
	}
	rec.Metrics = metrics
	if err := t.registry.SetMetrics(ctx, e.Name, e.Version, metrics); err != nil {
		return err
	}
	t.metrics.observe(e.Name, e.Version, metrics)
	ev := t.event(schemas.ModelEvaluated, e.Name, e.Version, engine, "evaluated on the holdouts")
	ev.Metrics, ev.TrainImages = metrics, rec.TrainImages
	ev.EventID = "evaluated:" + e.Name + ":" + e.Version + ":" + rec.HoldoutDigest
	if err := t.emit(ctx, ev); err != nil {
		return err
	}
	return t.putRecord(ctx, rec)
}

// refresh re-evaluates a record whose figures were computed on another
// holdout than ds's, so a comparison is on the same images.
func (t *Trainer) refresh(ctx context.Context, r Record, ds *Dataset) (Record, error) {
	if d := holdoutDigest(ds); r.HoldoutDigest != d || r.Metrics == nil {
		files, err := t.registry.Fetch(ctx, r.Name, r.Version)
		if err != nil {
			return r, err
		}
		m, err := t.eval.Evaluate(ctx, files, ds)
		if err != nil {
			return r, err
		}
		r.Metrics, r.HoldoutDigest = m, d
		if err := t.registry.SetMetrics(ctx, r.Name, r.Version, m); err != nil {
			return r, err
		}
		if err := t.putRecord(ctx, r); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (t *Trainer) refuse(ctx context.Context, r Record, stageName, reason string) error {
	ev := t.event(schemas.ModelRefused, r.Name, r.Version, r.Engine, reason)
	ev.Metrics, ev.TrainImages = r.Metrics, r.TrainImages
	ev.EventID = "refused:" + r.Name + ":" + r.Version + ":" + stageName
	if err := t.emit(ctx, ev); err != nil {
		return err
	}
	r.Stage, r.Reason = stageName, reason
	return t.putRecord(ctx, r)
}

// gate applies the canary gate to the staged candidate.
func (t *Trainer) gate(ctx context.Context, r Record, assigned map[string]models.Assignment, ds *Dataset) error {
	r, err := t.refresh(ctx, r, ds)
	if errors.Is(err, ErrCandidate) {
		return t.refuse(ctx, r, StageRefused, err.Error())
	}
	if err != nil {
		return err
	}
	var prodMetrics *schemas.HoldoutMetrics
	if p, ok := assigned[schemas.EnvProd]; ok && !models.IsPlaceholder(p.Name) {
		pr, ok, err := t.getRecord(ctx, p.Name, p.Version)
		if err != nil {
			return err
		}
		if ok {
			if pr, err = t.refresh(ctx, pr, ds); err != nil && !errors.Is(err, ErrCandidate) {
				return err
			}
			if m, ok := pr.Metrics[GateHoldout]; ok {
				prodMetrics = &m
			}
		}
	}
	pass, reason := t.cfg.Gate.CanaryGate(r.Metrics[GateHoldout], prodMetrics)
	if !pass {
		return t.refuse(ctx, r, StageRefused, reason)
	}
	if err := t.promote(ctx, r.Name, r.Version, schemas.EnvCanary, reason, schemas.ModelPromoted, "rollout"); err != nil {
		return err
	}
	if prodMetrics == nil {
		// Nothing trained to protect: the live canary comparison would be
		// against random weights.
		return t.toProd(ctx, r, reason)
	}
	return nil
}

// toProd promotes to prod, or asks for a sign-off when automatic
// promotion is off.
func (t *Trainer) toProd(ctx context.Context, r Record, reason string) error {
	if t.cfg.AutoPromote {
		return t.promote(ctx, r.Name, r.Version, schemas.EnvProd, reason, schemas.ModelPromoted, "rollout")
	}
	cur, ok, err := t.getRecord(ctx, r.Name, r.Version)
	if err != nil || (ok && cur.SignoffAsked) {
		return err
	}
	ev := t.event(schemas.ModelAwaitingSignoff, r.Name, r.Version, r.Engine,
		reason+"; automatic promotion is off: eyeflow model promote --to prod --reason TEXT "+r.Name+" "+r.Version)
	ev.FromEnv, ev.ToEnv, ev.Metrics = schemas.EnvCanary, schemas.EnvProd, r.Metrics
	ev.EventID = "awaiting_signoff:" + r.Name + ":" + r.Version
	if err := t.emit(ctx, ev); err != nil {
		return err
	}
	if !ok {
		cur = r
	}
	cur.SignoffAsked = true
	return t.putRecord(ctx, cur)
}

// canaryCheck compares the canary's live predictions with prod's over the
// same period.
func (t *Trainer) canaryCheck(ctx context.Context, r Record, assigned map[string]models.Assignment) error {
	if r.SignoffAsked {
		return nil
	}
	since := r.Promoted[schemas.EnvCanary]
	g := t.cfg.Gate
	cs, _, err := liveStats(ctx, t.streams, schemas.EnvCanary, r.Version, since, g.CanaryMin, g.LowConfidence)
	if err != nil {
		return err
	}
	var ps LiveStats
	if p, ok := assigned[schemas.EnvProd]; ok {
		if ps, _, err = liveStats(ctx, t.streams, schemas.EnvProd, p.Version, since, 0, g.LowConfidence); err != nil {
			return err
		}
		f, err := driftFirings(ctx, t.streams, schemas.EnvProd, p.Version, since)
		if err != nil {
			return err
		}
		ps.DriftFiring = len(f)
	}
	f, err := driftFirings(ctx, t.streams, schemas.EnvCanary, r.Version, since)
	if err != nil {
		return err
	}
	cs.DriftFiring = len(f)
	verdict, reason := g.ProdGate(cs, ps)
	switch verdict {
	case VerdictRefuse:
		return t.refuse(ctx, r, StageRefused, reason)
	case VerdictPromote:
		return t.toProd(ctx, r, reason)
	}
	return nil
}

// rollbackCheck applies the rollback rule to a version promoted to prod.
func (t *Trainer) rollbackCheck(ctx context.Context, r Record) error {
	prevRef := r.Previous[schemas.EnvProd]
	var prev models.Assignment
	if _, err := fmt.Sscan(prevRef, &prev.Name, &prev.Version); err != nil || models.IsPlaceholder(prev.Name) {
		// Nothing to go back to but random weights: never better.
		r.Judged = true
		return t.putRecord(ctx, r)
	}
	since := r.Promoted[schemas.EnvProd]
	g := t.cfg.Gate
	cur, lastInWindow, err := liveStats(ctx, t.streams, schemas.EnvProd, r.Version, since, g.RollbackWindow, g.LowConfidence)
	if err != nil {
		return err
	}
	fired, err := driftFirings(ctx, t.streams, schemas.EnvProd, r.Version, since)
	if err != nil {
		return err
	}
	windowFull := cur.Predictions >= g.RollbackWindow
	within := false
	for _, at := range fired {
		if !windowFull || !at.After(lastInWindow) {
			within = true
		}
	}
	prevAcc := -1.0
	if pr, ok, err := t.getRecord(ctx, prev.Name, prev.Version); err != nil {
		return err
	} else if ok {
		if ps, _, err := liveStats(ctx, t.streams, schemas.EnvProd, prev.Version, pr.Promoted[schemas.EnvProd], g.RollbackWindow, g.LowConfidence); err != nil {
			return err
		} else if ps.Labelled > 0 {
			prevAcc = ps.Accuracy()
		} else if m, ok := pr.Metrics[GateHoldout]; ok {
			prevAcc = m.Accuracy
		}
	}
	if prevAcc >= 0 {
		if back, reason := g.ShouldRollback(within, cur, prevAcc); back {
			return t.Rollback(ctx, schemas.EnvProd, reason)
		}
	}
	if windowFull {
		r.Judged = true
		return t.putRecord(ctx, r)
	}
	return nil
}
