package schemas

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decoders maps each schema id to its typed decoder, as a func returning any
// so that one table covers them all.
var decoders = map[string]func([]byte) (any, error){
	SchemaUpload:     func(b []byte) (any, error) { return DecodeS3Event(b) },
	SchemaResized:    func(b []byte) (any, error) { return DecodeResized(b) },
	SchemaSplit:      func(b []byte) (any, error) { return DecodeSplit(b) },
	SchemaPrediction: func(b []byte) (any, error) { return DecodePrediction(b) },
	SchemaDrift:      func(b []byte) (any, error) { return DecodeDriftAlert(b) },
	SchemaRetrain:    func(b []byte) (any, error) { return DecodeRetrain(b) },
	SchemaModel:      func(b []byte) (any, error) { return DecodeModelEvent(b) },
	SchemaDeadLetter: func(b []byte) (any, error) { return DecodeDeadLetter(b) },
}

// sample is a fully populated event of e's type carrying schema id.
func sample(t *testing.T, e EventType, id string) any {
	t.Helper()
	v := reflect.New(reflect.TypeOf(e.Value)).Elem()
	fill(t, v)
	v.FieldByName("Schema").SetString(id)
	return v.Interface()
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withField returns the JSON object data with key set to the JSON value raw
// (or removed when raw is "").
func withField(t *testing.T, data []byte, key, raw string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if raw == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(raw)
	}
	return marshal(t, m)
}

func TestDecodersCoverEvents(t *testing.T) {
	for _, e := range Events() {
		if decoders[e.SchemaID] == nil {
			t.Errorf("no decoder for %s", e.SchemaID)
		}
	}
}

func TestTypedDecoders(t *testing.T) {
	events := Events()
	for i, e := range events {
		if e.Name == "upload" {
			continue // S3 events have their own tests: schema is optional there
		}
		decode := decoders[e.SchemaID]
		other := events[(i+1)%len(events)].SchemaID
		if other == SchemaUpload {
			other = SchemaResized
		}
		good := marshal(t, sample(t, e, e.SchemaID))
		next := schemaFamily(e.SchemaID) + ".v2"

		t.Run(e.Name, func(t *testing.T) {
			tests := []struct {
				name      string
				data      []byte
				wantErr   string // "" means accepted
				schemaErr bool   // rejected for its schema: a *SchemaError
				got       string // SchemaError.Got
			}{
				{"own schema", good, "", false, ""},
				{"unknown fields ignored", withField(t, good, "added_in_v1_1", `{"x":[1,2]}`), "", false, ""},
				{"another event", withField(t, good, "schema", `"`+other+`"`), "wrong subject or payload type", true, other},
				{"newer version", withField(t, good, "schema", `"`+next+`"`), "another version of this event", true, next},
				{"newer version with changed field type", withField(t, withField(t, good, "schema", `"`+next+`"`), "time", `{"unix":1}`), "another version", true, next},
				{"missing schema", withField(t, good, "schema", ""), `missing "schema"`, true, ""},
				{"null schema", withField(t, good, "schema", "null"), `missing "schema"`, true, ""},
				{"empty schema", withField(t, good, "schema", `""`), `missing "schema"`, true, ""},
				{"schema of wrong type", withField(t, good, "schema", "1"), "cannot unmarshal", false, ""},
				{"JSON null", []byte("null"), `missing "schema"`, true, ""},
				{"not JSON", []byte("\x89PNG\r\n"), "invalid character", false, ""},
				{"truncated", good[:len(good)/2], "unexpected end", false, ""},
				{"array", []byte(`[{"schema":"` + e.SchemaID + `"}]`), "cannot unmarshal array", false, ""},
				{"empty", nil, "unexpected end", false, ""},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					got, err := decode(tt.data)
					if tt.wantErr == "" {
						if err != nil {
							t.Fatalf("decode: %v", err)
						}
						// Compare on the wire: fields hidden from JSON (Split's
						// embedded Resized.Schema) cannot round-trip.
						if back := marshal(t, got); string(back) != string(good) {
							t.Errorf("decoded value re-encodes as\n%s\nwant\n%s", back, good)
						}
						if reflect.TypeOf(got) != reflect.TypeOf(e.Value) {
							t.Errorf("decoded a %T, want %T", got, e.Value)
						}
						return
					}
					if !errors.Is(err, ErrBadEvent) {
						t.Fatalf("error = %v, want one wrapping ErrBadEvent", err)
					}
					if !strings.Contains(err.Error(), tt.wantErr) {
						t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
					}
					if !reflect.ValueOf(got).IsZero() {
						t.Errorf("returned non-zero value with error: %+v", got)
					}
					var se *SchemaError
					if errors.As(err, &se) != tt.schemaErr {
						t.Fatalf("error = %#v, SchemaError wanted: %v", err, tt.schemaErr)
					}
					if tt.schemaErr && (se.Got != tt.got || se.Want != e.SchemaID) {
						t.Errorf("error = %#v, want SchemaError{Got: %q, Want: %q}", se, tt.got, e.SchemaID)
					}
				})
			}
		})
	}
}

// TestDecodeSplitShadowsResizedSchema: Split embeds Resized, and both have a
// "schema" field; the wire carries Split's.
func TestDecodeSplitShadowsResizedSchema(t *testing.T) {
	in := Split{
		Schema: SchemaSplit,
		Resized: Resized{
			Schema:  SchemaResized, // hidden by Split.Schema when encoded
			ImageID: "abc",
			Time:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		},
		Split: SplitHoldout2,
	}
	data := marshal(t, in)
	if strings.Count(string(data), `"schema"`) != 1 || !strings.Contains(string(data), `"schema":"eyeflow.split.v1"`) {
		t.Fatalf("encoded split: %s", data)
	}
	got, err := DecodeSplit(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Schema != SchemaSplit || got.ImageID != "abc" || got.Split != SplitHoldout2 || !got.Time.Equal(in.Time) {
		t.Errorf("DecodeSplit = %+v", got)
	}
	// A resized payload is not a split payload, and vice versa.
	if _, err := DecodeResized(data); !errors.Is(err, ErrBadEvent) {
		t.Errorf("DecodeResized(split) error = %v, want ErrBadEvent", err)
	}
	if _, err := DecodeSplit(marshal(t, in.Resized)); !errors.Is(err, ErrBadEvent) {
		t.Errorf("DecodeSplit(resized) error = %v, want ErrBadEvent", err)
	}
}

func TestSchemaErrorMessages(t *testing.T) {
	tests := []struct {
		err  SchemaError
		want string
	}{
		{SchemaError{Got: "", Want: SchemaResized}, `bad event: missing "schema" field, want "eyeflow.resized.v1"`},
		{SchemaError{Got: "eyeflow.resized.v2", Want: SchemaResized}, `bad event: schema "eyeflow.resized.v2" is another version of this event; this decoder reads only "eyeflow.resized.v1"`},
		{SchemaError{Got: SchemaSplit, Want: SchemaResized}, `bad event: schema "eyeflow.split.v1" is not "eyeflow.resized.v1": wrong subject or payload type`},
		{SchemaError{Got: "garbage", Want: SchemaResized}, `bad event: schema "garbage" is not "eyeflow.resized.v1": wrong subject or payload type`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q\nwant      %q", got, tt.want)
		}
		if !errors.Is(&tt.err, ErrBadEvent) {
			t.Errorf("%v does not wrap ErrBadEvent", &tt.err)
		}
	}
}
