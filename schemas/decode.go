package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
)

// SchemaError reports a payload whose "schema" field is missing or names
// another event or version than the decoder reads. It wraps ErrBadEvent:
// redelivering the message will not change its schema.
type SchemaError struct {
	Got  string // "" when the field is missing
	Want string
}

func (e *SchemaError) Error() string {
	switch {
	case e.Got == "":
		return fmt.Sprintf("%v: missing \"schema\" field, want %q", ErrBadEvent, e.Want)
	case schemaFamily(e.Got) == schemaFamily(e.Want):
		return fmt.Sprintf("%v: schema %q is another version of this event; this decoder reads only %q",
			ErrBadEvent, e.Got, e.Want)
	default:
		return fmt.Sprintf("%v: schema %q is not %q: wrong subject or payload type", ErrBadEvent, e.Got, e.Want)
	}
}

func (e *SchemaError) Unwrap() error { return ErrBadEvent }

// schemaFamily strips the version: "eyeflow.resized.v2" -> "eyeflow.resized".
func schemaFamily(id string) string {
	i := strings.LastIndex(id, ".v")
	if i < 0 {
		return id
	}
	return id[:i]
}

// DecodeResized parses an eye.resized payload.
func DecodeResized(data []byte) (Resized, error) {
	return decode(data, SchemaResized, false, func(v *Resized) string { return v.Schema })
}

// DecodeSplit parses an eye.split.<split> payload.
func DecodeSplit(data []byte) (Split, error) {
	return decode(data, SchemaSplit, false, func(v *Split) string { return v.Schema })
}

// DecodePrediction parses an eye.predictions.<env> payload.
func DecodePrediction(data []byte) (Prediction, error) {
	return decode(data, SchemaPrediction, false, func(v *Prediction) string { return v.Schema })
}

// DecodeDriftAlert parses an eye.drift.<env> payload.
func DecodeDriftAlert(data []byte) (DriftAlert, error) {
	return decode(data, SchemaDrift, false, func(v *DriftAlert) string { return v.Schema })
}

// DecodeRetrain parses an eye.retrain payload.
func DecodeRetrain(data []byte) (Retrain, error) {
	return decode(data, SchemaRetrain, false, func(v *Retrain) string { return v.Schema })
}

// DecodeModelEvent parses an eye.models payload.
func DecodeModelEvent(data []byte) (ModelEvent, error) {
	return decode(data, SchemaModel, false, func(v *ModelEvent) string { return v.Schema })
}

// DecodeDeadLetter parses an eye.dlq.<stage> payload.
func DecodeDeadLetter(data []byte) (DeadLetter, error) {
	return decode(data, SchemaDeadLetter, false, func(v *DeadLetter) string { return v.Schema })
}

// decode unmarshals data into a T and checks its schema against want (an
// empty schema passes when optional). Unknown fields are ignored so that
// producers may add fields without breaking consumers. Every error wraps
// ErrBadEvent.
func decode[T any](data []byte, want string, optional bool, schema func(*T) string) (T, error) {
	var v, zero T
	if err := json.Unmarshal(data, &v); err != nil {
		// A newer version may have changed a field's type; say so rather
		// than report the field.
		var probe struct {
			Schema string `json:"schema"`
		}
		if json.Unmarshal(data, &probe) == nil && probe.Schema != "" && probe.Schema != want {
			return zero, &SchemaError{Got: probe.Schema, Want: want}
		}
		return zero, fmt.Errorf("%w: %s payload: %v", ErrBadEvent, want, err)
	}
	if got := schema(&v); got != want && (got != "" || !optional) {
		return zero, &SchemaError{Got: got, Want: want}
	}
	return v, nil
}
