package schemas

import (
	"fmt"
	"reflect"
	"strings"
)

// SchemaDir is where the generated JSON Schema files live, relative to this
// package's directory.
const SchemaDir = "jsonschema"

// EventType describes one event of the contract: its payload type and who
// sends it where. It drives the JSON Schema generator, the README check and
// the tests, so a new event is added here and nowhere else.
type EventType struct {
	// Name is the <name> in "eyeflow.<name>.v1".
	Name string
	// SchemaID is the value of the payload's "schema" field.
	SchemaID string
	// Title heads the JSON Schema file.
	Title string
	// Value is the zero value of the Go type.
	Value any
	// Subjects are the subject patterns the event is published on; "<split>",
	// "<env>" and "<stage>" each stand for one token (see ConcreteSubjects).
	Subjects []string
	// Publishers and Consumers say, as text, who sends and who reads the event.
	Publishers string
	Consumers  string
}

// Events lists every event of the contract in pipeline order.
func Events() []EventType {
	return []EventType{
		{
			Name:       "upload",
			SchemaID:   SchemaUpload,
			Title:      "eyeflow upload (S3 notification)",
			Value:      S3Event{},
			Subjects:   []string{SubjectUploads},
			Publishers: "MinIO's NATS notification target, or eyeflow's own ingest (embedded object-store watcher, `eyeflow put`, reconciler)",
			Consumers:  "resize",
		},
		{
			Name:       "resized",
			SchemaID:   SchemaResized,
			Title:      "eyeflow resized image",
			Value:      Resized{},
			Subjects:   []string{SubjectResized},
			Publishers: "resize",
			Consumers:  "splitter",
		},
		{
			Name:       "split",
			SchemaID:   SchemaSplit,
			Title:      "eyeflow split assignment",
			Value:      Split{},
			Subjects:   []string{SplitSubject("<split>")},
			Publishers: "splitter",
			Consumers:  "classifier",
		},
		{
			Name:       "prediction",
			SchemaID:   SchemaPrediction,
			Title:      "eyeflow prediction",
			Value:      Prediction{},
			Subjects:   []string{PredictionSubject("<env>")},
			Publishers: "classifier",
			Consumers:  "driftwatch, labelsink (low-confidence predictions), dashboard, downstream consumers",
		},
		{
			Name:       "drift",
			SchemaID:   SchemaDrift,
			Title:      "eyeflow drift alert",
			Value:      DriftAlert{},
			Subjects:   []string{DriftSubject("<env>")},
			Publishers: "driftwatch",
			Consumers:  "operators, dashboard",
		},
		{
			Name:       "retrain",
			SchemaID:   SchemaRetrain,
			Title:      "eyeflow retrain request",
			Value:      Retrain{},
			Subjects:   []string{SubjectRetrain},
			Publishers: "driftwatch, labelsink",
			Consumers:  "labelsink, training jobs",
		},
		{
			Name:       "model",
			SchemaID:   SchemaModel,
			Title:      "eyeflow model lifecycle event",
			Value:      ModelEvent{},
			Subjects:   []string{SubjectModels},
			Publishers: "trainer (trained, evaluated, promoted, refused, awaiting_signoff, rolled_back), eyeflow model promote/rollback",
			Consumers:  "operators, dashboard (Models timeline)",
		},
		{
			Name:       "deadletter",
			SchemaID:   SchemaDeadLetter,
			Title:      "eyeflow dead letter",
			Value:      DeadLetter{},
			Subjects:   []string{DLQSubject("<stage>")},
			Publishers: "every stage's runtime",
			Consumers:  "operators",
		},
	}
}

// File is the name of the event's JSON Schema file inside SchemaDir.
func (e EventType) File() string { return e.SchemaID + ".json" }

// GoType is the name of the event's Go type, e.g. "Resized".
func (e EventType) GoType() string { return reflect.TypeOf(e.Value).Name() }

// JSONSchema generates the event's JSON Schema document.
func (e EventType) JSONSchema() ([]byte, error) { return JSONSchema(e.Value, e.SchemaID, e.Title) }

// ConcreteSubjects expands the subject patterns into every subject the event
// can be published on.
func (e EventType) ConcreteSubjects() []string {
	var out []string
	for _, p := range e.Subjects {
		out = append(out, expandSubject(p)...)
	}
	return out
}

func expandSubject(pattern string) []string {
	for placeholder, values := range map[string][]string{
		"<split>": Splits(),
		"<env>":   Envs(),
		"<stage>": Stages(),
	} {
		if strings.Contains(pattern, placeholder) {
			out := make([]string, 0, len(values))
			for _, v := range values {
				out = append(out, strings.Replace(pattern, placeholder, v, 1))
			}
			return out
		}
	}
	return []string{pattern}
}

// SchemaFiles generates every JSON Schema file, keyed by file name (see
// EventType.File). The generator writes them; a test compares them with the
// checked-in copies.
func SchemaFiles() (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, e := range Events() {
		b, err := e.JSONSchema()
		if err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", e.SchemaID, err)
		}
		if _, dup := files[e.File()]; dup {
			return nil, fmt.Errorf("schemas: two events use schema id %s", e.SchemaID)
		}
		files[e.File()] = b
	}
	return files, nil
}
