package labelsink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"eyeflow/internal/machine"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/rs/zerolog"
)

// Sink is the label sink: retrain requests in, labelling tasks out; Label
// Studio exports in, labelled uploads and retrain manifests out.
type Sink struct {
	cfg     Config
	pub     stage.Publisher
	kv      stage.KeyValue
	classes map[string]bool
	log     zerolog.Logger
	now     func() time.Time
}

// eventRecord is a retrain request the sink wrote tasks for, until its
// manifest is written.
type eventRecord struct {
	EventID      string    `json:"event_id"`
	Env          string    `json:"env"`
	ModelVersion string    `json:"model_version"`
	AlertID      string    `json:"alert_id,omitempty"`
	ImageIDs     []string  `json:"image_ids"`
	Requested    time.Time `json:"requested"`
	Synced       bool      `json:"synced"`
	Manifest     string    `json:"manifest,omitempty"`
}

// labelRecord is the outcome of an image's annotation: a class, or the
// reason it was rejected.
type labelRecord struct {
	ImageID  string    `json:"image_id"`
	Class    string    `json:"class,omitempty"`
	Raw      string    `json:"raw,omitempty"` // key in the raw bucket
	Rejected string    `json:"rejected,omitempty"`
	Export   string    `json:"export"`
	Time     time.Time `json:"time"`
}

// taskRecord marks that an image has its task.
type taskRecord struct {
	ImageID string `json:"image_id"`
	Key     string `json:"key"`
	EventID string `json:"event_id,omitempty"`
}

// New returns the sink on its state bucket kv (the topology's KVBucket),
// publishing with pub, and writes the labelling interface
// (label_config.xml) into the labelling bucket.
func New(ctx context.Context, kv stage.KeyValue, pub stage.Publisher, cfg Config, log zerolog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if kv == nil || pub == nil {
		return nil, errors.New("labelsink: a state bucket and a publisher are required")
	}
	s := &Sink{cfg: cfg, pub: pub, kv: kv, classes: map[string]bool{}, log: log.With().Str("stage", schemas.StageLabelsink).Logger(),
		now: func() time.Time { return time.Now().UTC() }}
	for _, c := range cfg.Classes {
		s.classes[c] = true
	}
	for _, b := range []string{cfg.Bucket, cfg.RawBucket} {
		if err := cfg.Store.EnsureBucket(ctx, b); err != nil {
			return nil, fmt.Errorf("labelsink: bucket %s: %w", b, err)
		}
	}
	if err := s.putIfChanged(ctx, LabelConfig, LabelConfigXML(cfg.Classes), "application/xml"); err != nil {
		return nil, err
	}
	return s, nil
}

// putIfChanged writes an object unless it already holds data, so a restart
// does not rewrite (and re-notify) an unchanged file.
func (s *Sink) putIfChanged(ctx context.Context, key string, data []byte, contentType string) error {
	rc, _, err := s.cfg.Store.Get(ctx, s.cfg.Bucket, key)
	if err == nil {
		old, rerr := io.ReadAll(rc)
		rc.Close()
		if rerr == nil && bytes.Equal(old, data) {
			return nil
		}
	} else if !errors.Is(err, objstore.ErrNotFound) {
		return fmt.Errorf("labelsink: read %s/%s: %w", s.cfg.Bucket, key, err)
	}
	if _, err := s.cfg.Store.Put(ctx, s.cfg.Bucket, key, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{ContentType: contentType}); err != nil {
		return fmt.Errorf("labelsink: write %s/%s: %w", s.cfg.Bucket, key, err)
	}
	return nil
}

// kvKey makes a KV key from arbitrary text: KV keys allow only
// [-/_=.a-zA-Z0-9], and image and event ids come from outside.
func kvKey(kind, id string) string {
	return kind + "." + base64.RawURLEncoding.EncodeToString([]byte(id))
}

func (s *Sink) getJSON(ctx context.Context, key string, v any) (uint64, bool, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, stage.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("labelsink: get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value, v); err != nil {
		return 0, false, fmt.Errorf("labelsink: decode %s: %w", key, err)
	}
	return e.Revision, true, nil
}

func (s *Sink) putJSON(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("labelsink: encode %s: %w", key, err)
	}
	if _, err := s.kv.Put(ctx, key, data); err != nil {
		return fmt.Errorf("labelsink: put %s: %w", key, err)
	}
	return nil
}

// writeTask writes an image's task unless it has one: the KV record is
// created only after the object is stored, so a crash in between leaves a
// task that the retry finds by Stat and does not duplicate.
func (s *Sink) writeTask(ctx context.Context, r request) (bool, error) {
	key := kvKey("task", r.ImageID)
	var rec taskRecord
	if _, ok, err := s.getJSON(ctx, key, &rec); err != nil || ok {
		return false, err
	}
	objKey := s.cfg.TaskKey(r.ImageID)
	written := false
	if _, err := s.cfg.Store.Stat(ctx, s.cfg.Bucket, objKey); errors.Is(err, objstore.ErrNotFound) {
		data, err := json.MarshalIndent(s.cfg.buildTask(r), "", "  ")
		if err != nil {
			return false, fmt.Errorf("labelsink: encode task %s: %w", r.ImageID, err)
		}
		if _, err := s.cfg.Store.Put(ctx, s.cfg.Bucket, objKey, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{ContentType: "application/json"}); err != nil {
			return false, fmt.Errorf("labelsink: write task %s/%s: %w", s.cfg.Bucket, objKey, err)
		}
		written = true
	} else if err != nil {
		return false, fmt.Errorf("labelsink: stat task %s/%s: %w", s.cfg.Bucket, objKey, err)
	}
	rec = taskRecord{ImageID: r.ImageID, Key: objKey, EventID: r.EventID}
	data, _ := json.Marshal(rec)
	if _, err := s.kv.Create(ctx, key, data); err != nil && !errors.Is(err, stage.ErrKeyExists) {
		return written, fmt.Errorf("labelsink: record task %s: %w", r.ImageID, err)
	}
	return written, nil
}

// imageIDFromKey names an image known only by its object: the file name
// without extension (the pipeline's own keys are <image-id>.<ext>), else a
// hash of the reference.
func imageIDFromKey(ref schemas.ObjectRef) string {
	base := path.Base(ref.Key)
	if id := base[:len(base)-len(path.Ext(base))]; schemas.ValidImageID(id) {
		return id
	}
	h := sha256.Sum256([]byte(ref.Bucket + "/" + ref.Key))
	return hex.EncodeToString(h[:])
}

// HandleRetrain writes a task per sample of a retrain request, records the
// event for its manifest and syncs Label Studio. manifest_ready events (the
// sink's own follow-ups) are ignored.
func (s *Sink) HandleRetrain(ctx context.Context, ev schemas.Retrain) ([]stage.Output, error) {
	if ev.Kind != schemas.RetrainRequested {
		return nil, nil
	}
	if ev.EventID == "" {
		return nil, stage.Permanentf(schemas.ReasonBadRetrain, "retrain request without event_id")
	}
	if len(ev.Predictions) > 0 && len(ev.Predictions) != len(ev.Samples) {
		return nil, stage.Permanentf(schemas.ReasonBadRetrain, "retrain %s: %d predictions for %d samples", ev.EventID, len(ev.Predictions), len(ev.Samples))
	}
	rec := eventRecord{EventID: ev.EventID, Env: ev.Env, ModelVersion: ev.ModelVersion, AlertID: ev.AlertID, Requested: ev.Time}
	if rec.Requested.IsZero() {
		rec.Requested = s.now()
	}
	ekey := kvKey("event", ev.EventID)
	var existing eventRecord
	_, found, err := s.getJSON(ctx, ekey, &existing)
	if err != nil {
		return nil, err
	}
	if found {
		rec = existing
	}
	wrote := 0
	var ids []string
	for i, src := range ev.Samples {
		if src.Bucket == "" || src.Key == "" {
			return nil, stage.Permanentf(schemas.ReasonBadRetrain, "retrain %s: sample %d has no bucket or key", ev.EventID, i)
		}
		r := request{Source: src, Env: ev.Env, Version: ev.ModelVersion, AlertID: ev.AlertID, EventID: ev.EventID}
		if len(ev.Predictions) > 0 {
			p := ev.Predictions[i]
			r.Prediction, r.ImageID = &p, p.ImageID
		}
		if !schemas.ValidImageID(r.ImageID) {
			r.ImageID = imageIDFromKey(src)
		}
		w, err := s.writeTask(ctx, r)
		if err != nil {
			return nil, err
		}
		if w {
			wrote++
		}
		ids = append(ids, r.ImageID)
	}
	if !found {
		rec.ImageIDs = ids
		if err := s.putJSON(ctx, ekey, rec); err != nil {
			return nil, err
		}
	}
	// Sync until it succeeded once for the event, also on a redelivery
	// that finds every task already written.
	if s.cfg.LabelStudio.URL != "" && !rec.Synced {
		if err := s.cfg.LabelStudio.syncStorage(ctx); err != nil {
			return nil, err
		}
		rec.Synced = true
		if err := s.putJSON(ctx, ekey, rec); err != nil {
			return nil, err
		}
	}
	s.log.Info().Str("event_id", ev.EventID).Int("samples", len(ev.Samples)).Int("tasks_written", wrote).Msg("labelling tasks ready")
	return nil, nil
}

// HandlePrediction writes a task for a prediction below LowConfidence (the
// optional per-prediction feed; retrain requests need no such consumer).
// An image whose class is known (a labelled upload) needs no labeller.
func (s *Sink) HandlePrediction(ctx context.Context, p schemas.Prediction) ([]stage.Output, error) {
	if s.cfg.LowConfidence <= 0 || p.Confidence >= s.cfg.LowConfidence || p.TrueLabel != "" {
		return nil, nil
	}
	if p.Source.Bucket == "" || p.Source.Key == "" {
		return nil, stage.Permanentf(schemas.ReasonBadPrediction, "prediction %s has no source object", p.ImageID)
	}
	r := request{ImageID: p.ImageID, Source: p.Source, Prediction: &p, Env: p.Env, Version: p.ModelVersion}
	if !schemas.ValidImageID(r.ImageID) {
		r.ImageID = imageIDFromKey(p.Source)
	}
	wrote, err := s.writeTask(ctx, r)
	if err != nil {
		return nil, err
	}
	if wrote && s.cfg.LabelStudio.URL != "" {
		if err := s.cfg.LabelStudio.syncStorage(ctx); err != nil {
			// The task is written; the next written task syncs it too.
			s.log.Warn().Err(err).Str("image_id", r.ImageID).Msg("label studio sync failed")
		}
	}
	return nil, nil
}

// Processor is the stage on eye.retrain.
func Processor(s *Sink, log zerolog.Logger, m *stage.Metrics) stage.Processor[schemas.Retrain] {
	return stage.Processor[schemas.Retrain]{
		Stage:     schemas.StageLabelsink,
		Decode:    schemas.DecodeRetrain,
		Identity:  func(r schemas.Retrain) string { return "retrain:" + r.EventID + ":" + r.Kind },
		Handle:    s.HandleRetrain,
		RetryBase: time.Second,
		Logger:    log,
		Metrics:   m,
	}
}

// PredictionProcessor is the optional stage on eye.predictions.* (its stage's
// input pipeline.InputPredictions) for low-confidence predictions.
func PredictionProcessor(s *Sink, log zerolog.Logger, m *stage.Metrics) stage.Processor[schemas.Prediction] {
	return stage.Processor[schemas.Prediction]{
		Stage:   schemas.StageLabelsink,
		Input:   pipeline.InputPredictions,
		Decode:  schemas.DecodePrediction,
		ImageID: func(p schemas.Prediction) string { return p.ImageID },
		Handle:  s.HandlePrediction,
		// Every env's every prediction passes through: keep up with a
		// classifier on many cores (most are only looked at).
		Concurrency: machine.Detect().IOConcurrency(),
		Logger:      log,
		Metrics:     m,
	}
}
