package labelsink

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"eyeflow/schemas"
	"eyeflow/stage"
)

// What the dashboard's Label page needs of the sink: where tasks and
// answers live, whether an image is answered, and the export it writes in
// Label Studio's own shape, which the sink reads through the same code as a
// real Label Studio's (parseExport).

// Outcome is what the sink recorded for an image's annotation: a class, or
// the reason it was refused.
type Outcome struct {
	ImageID  string    `json:"image_id"`
	Class    string    `json:"class,omitempty"`
	Raw      string    `json:"raw,omitempty"`
	Rejected string    `json:"rejected,omitempty"`
	Export   string    `json:"export"`
	Time     time.Time `json:"time"`
}

// ReadOutcome returns the image's outcome from the sink's state bucket
// (KVBucket); ok is false while the image has none.
func ReadOutcome(ctx context.Context, kv stage.KeyValue, imageID string) (Outcome, bool, error) {
	e, err := kv.Get(ctx, kvKey("label", imageID))
	if errors.Is(err, stage.ErrKeyNotFound) {
		return Outcome{}, false, nil
	}
	if err != nil {
		return Outcome{}, false, fmt.Errorf("labelsink: outcome of %s: %w", imageID, err)
	}
	var o Outcome
	if err := json.Unmarshal(e.Value, &o); err != nil {
		return Outcome{}, false, fmt.Errorf("labelsink: decode outcome of %s: %w", imageID, err)
	}
	return o, true, nil
}

// PageExportKey is where the dashboard's Label page writes an image's
// annotation: in the exports folder, beside what Label Studio's target
// storage writes (exports/<annotation id>), one file per image.
func (c Config) PageExportKey(imageID string) string {
	return c.ExportsPrefix + "eyeflow-" + imageID + ".json"
}

// PageAnnotation is one answer given on the Label page.
type PageAnnotation struct {
	Annotator string
	// Shown is when the task was shown to the annotator, Submitted when
	// the answer came back: their difference is Label Studio's lead_time.
	Shown, Submitted time.Time
	// ModelVersion is the prediction the annotator was shown ("" without one).
	ModelVersion string
	Result       []ChoiceResult
}

// pageAnnotation is Label Studio's annotation as its target storage writes
// it (the task nested under "task"), with what the page records.
type pageAnnotation struct {
	ID              int64           `json:"id"`
	Result          []ChoiceResult  `json:"result"`
	WasCancelled    bool            `json:"was_cancelled"`
	GroundTruth     bool            `json:"ground_truth"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	LeadTime        float64         `json:"lead_time"`
	CompletedBy     pageUser        `json:"completed_by"`
	CreatedUsername string          `json:"created_username"`
	Prediction      *TaskPrediction `json:"prediction,omitempty"`
	Task            pageTask        `json:"task"`
	Eyeflow         pageProvenance  `json:"eyeflow"`
}

type pageUser struct {
	Username string `json:"username"`
}

type pageTask struct {
	ID          int64            `json:"id"`
	Data        TaskData         `json:"data"`
	Meta        TaskMeta         `json:"meta"`
	Predictions []TaskPrediction `json:"predictions,omitempty"`
}

type pageProvenance struct {
	Source       string `json:"source"`
	Annotator    string `json:"annotator"`
	ModelVersion string `json:"model_version_shown,omitempty"`
	LeadSeconds  int64  `json:"time_spent_seconds"`
}

// TaskNumber is a task's number for Label Studio's editor (which wants an
// integer id): derived from the image id, stable across restarts.
func TaskNumber(imageID string) int64 {
	h := sha256.Sum256([]byte("task:" + imageID))
	return int64(binary.BigEndian.Uint64(h[:8]) >> 12) // < 2^52: exact in JavaScript
}

// PageExport is an answer from the Label page in Label Studio's export
// format: one annotation with its task nested, as Label Studio's target
// storage writes it.
func PageExport(t Task, a PageAnnotation) ([]byte, error) {
	lead := a.Submitted.Sub(a.Shown)
	if lead < 0 {
		lead = 0
	}
	pa := pageAnnotation{
		Result: a.Result, CreatedAt: a.Submitted.UTC(), UpdatedAt: a.Submitted.UTC(),
		LeadTime:    lead.Seconds(),
		CompletedBy: pageUser{Username: a.Annotator}, CreatedUsername: a.Annotator,
		Task:    pageTask{ID: TaskNumber(t.Meta.ImageID), Data: t.Data, Meta: t.Meta, Predictions: t.Predictions},
		Eyeflow: pageProvenance{Source: "eyeflow-dashboard", Annotator: a.Annotator, ModelVersion: a.ModelVersion, LeadSeconds: int64(lead.Seconds())},
	}
	h := sha256.Sum256([]byte("annotation:" + t.Meta.ImageID + "|" + a.Annotator))
	pa.ID = int64(binary.BigEndian.Uint64(h[:8]) >> 12)
	if len(t.Predictions) > 0 {
		p := t.Predictions[0]
		pa.Prediction = &p
	}
	return json.MarshalIndent(pa, "", "  ")
}

// annotatorName reads Label Studio's completed_by: a user id, or an object
// with a username, email or name.
func annotatorName(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var id json.Number
	if err := json.Unmarshal(raw, &id); err == nil {
		return "user " + id.String()
	}
	var u struct {
		ID        json.Number `json:"id"`
		Username  string      `json:"username"`
		Email     string      `json:"email"`
		FirstName string      `json:"first_name"`
		LastName  string      `json:"last_name"`
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		return ""
	}
	for _, s := range []string{u.Username, u.Email, u.FirstName + " " + u.LastName} {
		if s != "" && s != " " {
			return s
		}
	}
	if u.ID != "" {
		return "user " + u.ID.String()
	}
	return ""
}

// Parsed is an export item that names an image and its class.
type Parsed struct {
	ImageID   string
	Source    schemas.ObjectRef
	Class     string
	Annotator string
}

// Refused is an export item the sink dead-letters, with its reason.
type Refused struct {
	Reason  string
	ImageID string
	Err     error
}

func (r Refused) Error() string { return r.Reason + ": " + r.Err.Error() }

// ParseExport reads an export file with cfg's classes and buckets exactly
// as the running sink does, so a writer can check its export before
// writing it.
func ParseExport(cfg Config, data []byte) ([]Parsed, []Refused) {
	s := &Sink{cfg: cfg, classes: map[string]bool{}}
	for _, c := range cfg.Classes {
		s.classes[c] = true
	}
	good, bad := s.parseExport(data)
	var ps []Parsed
	for _, l := range good {
		ps = append(ps, Parsed{ImageID: l.ImageID, Source: l.Source, Class: l.Class, Annotator: l.Annotator})
	}
	var rs []Refused
	for _, b := range bad {
		rs = append(rs, Refused{Reason: b.reason, ImageID: b.imageID, Err: b.err})
	}
	return ps, rs
}
