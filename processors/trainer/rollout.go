package trainer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"eyeflow/models"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Stages of a version's rollout record.
const (
	StageCandidate  = "candidate"
	StageStaging    = "staging"
	StageCanary     = "canary"
	StageProd       = "prod"
	StageRefused    = "refused"
	StageSuperseded = "superseded"
	StageRolledBack = "rolled_back"
	// StageRetired: replaced in its env by a newer version.
	StageRetired = "retired"
)

// Record is one version's rollout state, in the KVTrainer bucket.
type Record struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Engine  string `json:"engine"`
	Stage   string `json:"stage"`
	// Metrics are the latest holdout figures, computed on the holdout whose
	// digest is HoldoutDigest.
	Metrics       map[string]schemas.HoldoutMetrics `json:"metrics,omitempty"`
	HoldoutDigest string                            `json:"holdout_digest,omitempty"`
	TrainImages   int                               `json:"train_images,omitempty"`
	Reason        string                            `json:"reason,omitempty"`
	Created       time.Time                         `json:"created"`
	// Promoted says when the version started serving each env; Previous
	// what that env served before ("name version").
	Promoted map[string]time.Time `json:"promoted,omitempty"`
	Previous map[string]string    `json:"previous,omitempty"`
	// SignoffAsked is set once the awaiting_signoff event went out.
	SignoffAsked bool `json:"signoff_asked,omitempty"`
	// Judged is set once the rollback window after its prod promotion passed.
	Judged bool `json:"judged,omitempty"`
}

func recordKey(name, version string) string {
	return "v." + hex.EncodeToString([]byte(name+"\x00"+version))
}

func (t *Trainer) putRecord(ctx context.Context, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := t.kv.Put(ctx, recordKey(r.Name, r.Version), b); err != nil {
		return fmt.Errorf("trainer: record %s %s: %w", r.Name, r.Version, err)
	}
	return nil
}

func (t *Trainer) getRecord(ctx context.Context, name, version string) (Record, bool, error) {
	e, err := t.kv.Get(ctx, recordKey(name, version))
	if errors.Is(err, stage.ErrKeyNotFound) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("trainer: record %s %s: %w", name, version, err)
	}
	var r Record
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return Record{}, false, fmt.Errorf("trainer: record %s %s: %w", name, version, err)
	}
	return r, true, nil
}

// Records returns every version's rollout record.
func (t *Trainer) Records(ctx context.Context) ([]Record, error) { return ListRecords(ctx, t.kv) }

// ListRecords reads every rollout record from the KVTrainer bucket, oldest first.
func ListRecords(ctx context.Context, kv stage.KeyValue) ([]Record, error) {
	keys, err := kv.Keys(ctx, "v.>")
	if err != nil {
		return nil, fmt.Errorf("trainer: list records: %w", err)
	}
	var out []Record
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var r Record
		if json.Unmarshal(e.Value, &r) == nil {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b Record) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// publish sends a model event with its EventID as Msg-Id: a step redone
// after a crash is dropped by the duplicate window.
func (t *Trainer) publish(ctx context.Context, ev schemas.ModelEvent) error {
	return PublishEvent(ctx, t.pub, ev)
}

// PublishEvent publishes ev on eye.models, deduplicated by its EventID.
func PublishEvent(ctx context.Context, pub stage.Publisher, ev schemas.ModelEvent) error {
	if ev.Schema == "" {
		ev.Schema = schemas.SchemaModel
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	msg := stage.Message{Subject: schemas.SubjectModels, Data: data, MsgID: "models:" + ev.EventID, Stage: schemas.StageTrainer}
	if err := pub.Publish(ctx, msg); err != nil {
		return fmt.Errorf("publish %s event of %s %s: %w", ev.Kind, ev.Name, ev.Version, err)
	}
	return nil
}

func (t *Trainer) emit(ctx context.Context, ev schemas.ModelEvent) error {
	if err := t.publish(ctx, ev); err != nil {
		return err
	}
	t.metrics.steps.WithLabelValues(ev.Kind).Inc()
	t.log.Info().Str("kind", ev.Kind).Str("model", ev.Name).Str("version", ev.Version).Str("from", ev.FromEnv).Str("to", ev.ToEnv).Str("reason", ev.Reason).Msg("model event")
	return nil
}

// ForRegistry returns a Trainer that only promotes and rolls back (the
// model commands): no engine, no evaluator, no stream reader.
func ForRegistry(registry *models.Registry, kv stage.KeyValue, pub stage.Publisher, log zerolog.Logger) *Trainer {
	return &Trainer{cfg: DefaultConfig(), registry: registry, kv: kv, pub: pub, log: log,
		metrics: NewMetrics(prometheus.NewRegistry()), now: func() time.Time { return time.Now().UTC() }}
}

// Promote moves a version to env, records it and publishes the event.
// Manual promotions (eyeflow model promote) and the rollout use it alike.
func (t *Trainer) Promote(ctx context.Context, name, version, env, reason string) error {
	return t.promote(ctx, name, version, env, reason, schemas.ModelPromoted, fmt.Sprint(t.now().UnixNano()))
}

// promote: nonce tells apart repeated promotions of one version to one env
// (after a rollback); the rollout passes a stable one so a redone step is
// the same event.
func (t *Trainer) promote(ctx context.Context, name, version, env, reason, kind, nonce string) error {
	prev, hadPrev, err := t.registry.Assigned(ctx, env)
	if err != nil {
		return err
	}
	if err := t.registry.Promote(ctx, env, name, version); err != nil {
		return err
	}
	if hadPrev && (prev.Name != name || prev.Version != version) {
		if pr, ok, err := t.getRecord(ctx, prev.Name, prev.Version); err == nil && ok && pr.Stage == env {
			pr.Stage = StageRetired
			if err := t.putRecord(ctx, pr); err != nil {
				return err
			}
		}
	}
	rec, ok, err := t.getRecord(ctx, name, version)
	if err != nil {
		return err
	}
	if !ok {
		rec = Record{Name: name, Version: version, Engine: EnginePushed, Created: t.now()}
	}
	from := ""
	for _, e := range []string{schemas.EnvStaging, schemas.EnvCanary, schemas.EnvProd} {
		if rec.Stage == e {
			from = e
		}
	}
	ev := t.event(kind, name, version, rec.Engine, reason)
	ev.FromEnv, ev.ToEnv, ev.Metrics, ev.TrainImages = from, env, rec.Metrics, rec.TrainImages
	if hadPrev {
		ev.PreviousVersion = prev.Version
	}
	ev.EventID = kind + ":" + name + ":" + version + ":" + env + ":" + nonce
	if err := t.emit(ctx, ev); err != nil {
		return err
	}
	if rec.Promoted == nil {
		rec.Promoted = map[string]time.Time{}
	}
	if rec.Previous == nil {
		rec.Previous = map[string]string{}
	}
	rec.Promoted[env] = t.now()
	if hadPrev && prev.Version != version {
		rec.Previous[env] = prev.String()
	}
	rec.Stage, rec.Reason = env, reason
	if env == schemas.EnvProd {
		rec.Judged = false
	}
	return t.putRecord(ctx, rec)
}

// Rollback points env back at what it served before its current version,
// marks the current one rolled back and publishes the event.
func (t *Trainer) Rollback(ctx context.Context, env, reason string) error {
	cur, ok, err := t.registry.Assigned(ctx, env)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("rollback: %s serves no model", env)
	}
	prev, err := t.previous(ctx, env, cur)
	if err != nil {
		return err
	}
	if err := t.registry.Promote(ctx, env, prev.Name, prev.Version); err != nil {
		return err
	}
	rec, ok, err := t.getRecord(ctx, cur.Name, cur.Version)
	if err != nil {
		return err
	}
	if !ok {
		rec = Record{Name: cur.Name, Version: cur.Version, Engine: EnginePushed, Created: t.now()}
	}
	ev := t.event(schemas.ModelRolledBack, cur.Name, cur.Version, rec.Engine, reason)
	ev.FromEnv, ev.ToEnv, ev.PreviousVersion = env, env, prev.Version
	ev.EventID = "rolled_back:" + cur.Name + ":" + cur.Version + ":" + env + ":" + prev.Version
	if err := t.emit(ctx, ev); err != nil {
		return err
	}
	rec.Stage, rec.Reason = StageRolledBack, reason
	if err := t.putRecord(ctx, rec); err != nil {
		return err
	}
	if pr, ok, err := t.getRecord(ctx, prev.Name, prev.Version); err == nil && ok {
		pr.Stage = env
		if pr.Promoted == nil {
			pr.Promoted = map[string]time.Time{}
		}
		pr.Promoted[env] = t.now()
		pr.Judged = true
		return t.putRecord(ctx, pr)
	}
	return nil
}

// previous is what env served before cur: the record's own note, else the
// registry's promotion history.
func (t *Trainer) previous(ctx context.Context, env string, cur models.Assignment) (models.Assignment, error) {
	if rec, ok, err := t.getRecord(ctx, cur.Name, cur.Version); err == nil && ok && rec.Previous[env] != "" {
		var a models.Assignment
		if _, err := fmt.Sscan(rec.Previous[env], &a.Name, &a.Version); err == nil {
			return a, nil
		}
	}
	hist, err := t.registry.History(ctx, env)
	if err != nil {
		return models.Assignment{}, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Name != cur.Name || hist[i].Version != cur.Version {
			return hist[i], nil
		}
	}
	return models.Assignment{}, fmt.Errorf("rollback: %s has served nothing before %s", env, cur)
}
