package labelsink

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"eyeflow/schemas"
)

// Names in the labelling interface: the task data key of the image, the
// Image tag and the Choices tag. Pre-annotations and exports refer to them.
const (
	DataImage   = "image"
	ImageTag    = "image"
	ChoicesTag  = "diagnosis"
	LabelConfig = "label_config.xml"
)

// Task is one Label Studio import task in its basic JSON format: the data
// to show, the model's answer as a prediction (pre-annotation) and meta.
type Task struct {
	Data        TaskData         `json:"data"`
	Predictions []TaskPrediction `json:"predictions,omitempty"`
	Meta        TaskMeta         `json:"meta"`
}

// TaskData is what the interface shows; fields beyond image are shown in
// the data manager and travel into the export.
type TaskData struct {
	Image        string `json:"image"`
	ImageID      string `json:"image_id"`
	Env          string `json:"env,omitempty"`
	ModelVersion string `json:"model_version,omitempty"`
}

// TaskMeta travels with the task into every export of its annotations.
type TaskMeta struct {
	ImageID      string  `json:"image_id"`
	Env          string  `json:"env,omitempty"`
	ModelVersion string  `json:"model_version,omitempty"`
	AlertID      string  `json:"alert_id,omitempty"`
	EventID      string  `json:"event_id,omitempty"`
	SourceBucket string  `json:"source_bucket"`
	SourceKey    string  `json:"source_key"`
	Predicted    string  `json:"predicted_class,omitempty"`
	Confidence   float64 `json:"confidence,omitempty"`
	// Margin is the model's top probability less its second (from the
	// prediction's top-k; absent without two): the smaller, the more a
	// label can teach. The Label page asks for the smallest first.
	Margin *float64 `json:"margin,omitempty"`
}

// TaskPrediction is a pre-annotation: the model's class with its score.
type TaskPrediction struct {
	ModelVersion string         `json:"model_version"`
	Score        float64        `json:"score"`
	Result       []ChoiceResult `json:"result"`
}

// ChoiceResult is one Choices region, in predictions and in annotations.
type ChoiceResult struct {
	ID       string      `json:"id,omitempty"`
	FromName string      `json:"from_name"`
	ToName   string      `json:"to_name"`
	Type     string      `json:"type"`
	Value    ChoiceValue `json:"value"`
	Score    float64     `json:"score,omitempty"`
	Origin   string      `json:"origin,omitempty"`
}

// ChoiceValue holds the chosen classes.
type ChoiceValue struct {
	Choices []string `json:"choices"`
}

// request is one image to label.
type request struct {
	ImageID    string
	Source     schemas.ObjectRef
	Prediction *schemas.Prediction
	Env        string
	Version    string
	AlertID    string
	EventID    string
}

// buildTask turns a request into its task.
func (c Config) buildTask(r request) Task {
	url := "s3://" + r.Source.Bucket + "/" + r.Source.Key
	if c.ImageURL != nil {
		url = c.ImageURL(r.Source)
	}
	t := Task{
		Data: TaskData{Image: url, ImageID: r.ImageID, Env: r.Env, ModelVersion: r.Version},
		Meta: TaskMeta{ImageID: r.ImageID, Env: r.Env, ModelVersion: r.Version, AlertID: r.AlertID, EventID: r.EventID,
			SourceBucket: r.Source.Bucket, SourceKey: r.Source.Key},
	}
	if p := r.Prediction; p != nil && p.PredictedClass != "" {
		t.Meta.Predicted, t.Meta.Confidence = p.PredictedClass, p.Confidence
		if len(p.TopK) >= 2 {
			m := p.TopK[0].Probability - p.TopK[1].Probability
			t.Meta.Margin = &m
		}
		t.Predictions = []TaskPrediction{{
			ModelVersion: p.ModelName + ":" + p.ModelVersion,
			Score:        p.Confidence,
			Result: []ChoiceResult{{
				FromName: ChoicesTag, ToName: ImageTag, Type: "choices",
				Value: ChoiceValue{Choices: []string{p.PredictedClass}}, Score: p.Confidence,
			}},
		}}
	}
	return t
}

// TaskKey is where an image's task lives: one per image id, so a second
// request for the image finds it and writes nothing.
func (c Config) TaskKey(imageID string) string { return c.TasksPrefix + imageID + ".json" }

// LabelConfigXML is the labelling interface: the image and one required
// single choice among the classes.
func LabelConfigXML(classes []string) []byte {
	var b bytes.Buffer
	b.WriteString("<View>\n")
	fmt.Fprintf(&b, "  <Image name=%q value=\"$%s\" zoom=\"true\"/>\n", ImageTag, DataImage)
	fmt.Fprintf(&b, "  <Choices name=%q toName=%q choice=\"single\" required=\"true\" showInline=\"false\">\n", ChoicesTag, ImageTag)
	for _, c := range classes {
		var esc bytes.Buffer
		_ = xml.EscapeText(&esc, []byte(c))
		fmt.Fprintf(&b, "    <Choice value=\"%s\"/>\n", strings.ReplaceAll(esc.String(), `"`, "&quot;"))
	}
	b.WriteString("  </Choices>\n</View>\n")
	return b.Bytes()
}

// syncStorage asks Label Studio to scan its source storage for new tasks:
// POST /api/storages/<type>/<id>/sync. Label Studio never notices new
// objects by itself.
func (ls LabelStudio) syncStorage(ctx context.Context) error {
	typ := ls.StorageType
	if typ == "" {
		typ = "s3"
	}
	endpoint := fmt.Sprintf("%s/api/storages/%s/%d/sync", strings.TrimRight(ls.URL, "/"), typ, ls.StorageID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
	if err != nil {
		return fmt.Errorf("label studio sync: %w", err)
	}
	req.Header.Set("Authorization", "Token "+ls.Token)
	req.Header.Set("Accept", "application/json")
	client := ls.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("label studio sync %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("label studio sync %s: %s: %s", endpoint, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}
