package labelsink

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"eyeflow/schemas"
)

// TestPageExportParsesLikeLabelStudios holds the Label page's export and
// the shapes Label Studio writes side by side: each goes through
// ParseExport (the sink's own parseExport) to the same image, source and
// class.
func TestPageExportParsesLikeLabelStudios(t *testing.T) {
	cfg := DefaultConfig()
	h := sha256.Sum256([]byte("side by side"))
	id := hex.EncodeToString(h[:])
	src := schemas.ObjectRef{Bucket: cfg.RawBucket, Key: "uploads/" + id + ".jpg"}
	task := cfg.buildTask(request{ImageID: id, Source: src, Env: "prod", Version: "3", AlertID: "a1", EventID: "e1",
		Prediction: &schemas.Prediction{ImageID: id, ModelName: "eyenet", ModelVersion: "3", PredictedClass: cfg.Classes[0], Confidence: 0.4}})
	class := cfg.Classes[2]
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	page, err := PageExport(task, PageAnnotation{Annotator: "alice", Shown: now.Add(-7 * time.Second), Submitted: now, ModelVersion: "eyenet:3",
		Result: []ChoiceResult{{FromName: ChoicesTag, ToName: ImageTag, Type: "choices", Value: ChoiceValue{Choices: []string{class}}}}})
	if err != nil {
		t.Fatal(err)
	}
	taskJSON := fmt.Sprintf(`{"id": 17, "data": {"image": "s3://%s/%s", "image_id": "%s"}, "meta": {"image_id": "%s", "source_bucket": "%s", "source_key": "%s"}}`,
		src.Bucket, src.Key, id, id, src.Bucket, src.Key)
	result := fmt.Sprintf(`[{"id": "x1", "from_name": "diagnosis", "to_name": "image", "type": "choices", "origin": "prediction", "value": {"choices": ["%s"]}}]`, class)
	shapes := map[string]string{
		"page": string(page),
		// Label Studio's target storage: one annotation, its task nested.
		"target storage": fmt.Sprintf(`{"id": 5, "result": %s, "was_cancelled": false, "completed_by": 3, "lead_time": 4.2, "task": %s}`, result, taskJSON),
		// A project's JSON export: tasks with their annotations.
		"project export": fmt.Sprintf(`[{"id": 17, "data": {"image": "s3://%s/%s", "image_id": "%s"}, "meta": {"image_id": "%s", "source_bucket": "%s", "source_key": "%s"}, "annotations": [{"id": 5, "completed_by": {"id": 3, "email": "bob@clinic"}, "result": %s}]}]`,
			src.Bucket, src.Key, id, id, src.Bucket, src.Key, result),
	}
	who := map[string]string{"page": "alice", "target storage": "user 3", "project export": "bob@clinic"}
	for name, data := range shapes {
		ps, rs := ParseExport(cfg, []byte(data))
		if len(rs) > 0 || len(ps) != 1 {
			t.Errorf("%s: parsed %+v, refused %v", name, ps, rs)
			continue
		}
		p := ps[0]
		if p.ImageID != id || p.Source != src || p.Class != class || p.Annotator != who[name] {
			t.Errorf("%s: %+v, want image %s, source %v, class %s, annotator %s", name, p, id, src, class, who[name])
		}
	}
	for _, want := range []string{`"completed_by": {`, `"username": "alice"`, `"lead_time": 7`, `"model_version_shown": "eyenet:3"`, `"task": {`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("page export lacks %s:\n%s", want, page)
		}
	}
}

// TestTaskCarriesMargin: a task records prod's margin (top probability
// less the second) for the Label page's order.
func TestTaskCarriesMargin(t *testing.T) {
	cfg := DefaultConfig()
	p := &schemas.Prediction{ModelName: "eyenet", ModelVersion: "3", PredictedClass: "amd", Confidence: 0.5,
		TopK: []schemas.ClassProb{{Class: "amd", Probability: 0.5}, {Class: "glaucoma", Probability: 0.375}}}
	task := cfg.buildTask(request{ImageID: "x", Source: schemas.ObjectRef{Bucket: "raw", Key: "x.jpg"}, Prediction: p})
	if task.Meta.Margin == nil || *task.Meta.Margin != 0.125 {
		t.Fatalf("margin %v, want 0.125", task.Meta.Margin)
	}
	p.TopK = p.TopK[:1]
	if task := cfg.buildTask(request{ImageID: "x", Source: schemas.ObjectRef{Bucket: "raw", Key: "x.jpg"}, Prediction: p}); task.Meta.Margin != nil {
		t.Fatalf("margin %v from one class", *task.Meta.Margin)
	}
}
