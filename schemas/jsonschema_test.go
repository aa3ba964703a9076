package schemas

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// Types exercising the generator's mapping of encoding/json's rules.
type jsBase struct {
	Schema string `json:"schema"` // hidden by jsOuter.Schema (shallower)
	Name   string `json:"name"`
	Tagged string `json:"Tagged"` // beats jsOther.Tagged, untagged at the same depth
	Amb    string // ties with jsOther.Amb, untagged at the same depth: both dropped
}

type jsOther struct {
	Tagged string
	Amb    string
}

type JSPtrEmbed struct {
	Via string `json:"via"`
}

type jsItem struct {
	A string `json:"a"`
}

type jsOuter struct {
	Schema string `json:"schema"`
	jsBase
	jsOther
	*JSPtrEmbed
	Opt     string         `json:"opt,omitempty"`
	Zero    time.Time      `json:"zero,omitzero"`
	When    time.Time      `json:"when"`
	Blob    []byte         `json:"blob"`
	Tags    map[string]int `json:"tags,omitempty"`
	List    []jsItem       `json:"list"`
	Ptr     *jsItem        `json:"ptr,omitempty"`
	NilPtr  *int           `json:"nilptr"`
	Count   uint32         `json:"count"`
	Ratio   float32        `json:"ratio"`
	OK      bool           `json:"ok"`
	Quoted  int64          `json:"quoted,string"`
	Skip    string         `json:"-"`
	Dash    string         `json:"-,"`
	Any     any            `json:"any,omitempty"`
	Struct  jsItem         `json:"struct,omitempty"` // omitempty never omits a struct
	Arr     [2]int         `json:"arr"`
	Untag   string
	private string
}

// schemaDoc generates and parses the schema of v.
func schemaDoc(t *testing.T, v any, id string) map[string]any {
	t.Helper()
	b, err := JSONSchema(v, id, "test")
	if err != nil {
		t.Fatalf("JSONSchema(%T): %v", v, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("JSONSchema(%T) is not JSON: %v\n%s", v, err, b)
	}
	return doc
}

// jsonEq reports whether got, a decoded JSON value, equals the JSON text want.
func jsonEq(t *testing.T, got any, want string) bool {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	return reflect.DeepEqual(got, w)
}

func TestJSONSchemaMapping(t *testing.T) {
	doc := schemaDoc(t, jsOuter{}, "eyeflow.test.v1")
	props := doc["properties"].(map[string]any)

	tests := []struct {
		prop string
		want string // JSON of the property's schema; "" means absent
	}{
		{"schema", `{"type":"string","const":"eyeflow.test.v1"}`},
		{"name", `{"type":"string"}`},
		{"Tagged", `{"type":"string"}`},
		{"Amb", ""},
		{"via", `{"type":"string"}`},
		{"opt", `{"type":"string"}`},
		{"zero", `{"type":"string","format":"date-time"}`},
		{"when", `{"type":"string","format":"date-time"}`},
		{"blob", `{"type":["string","null"],"contentEncoding":"base64"}`},
		{"tags", `{"type":"object","additionalProperties":{"type":"integer"}}`},
		{"list", `{"type":["array","null"],"items":{"$ref":"#/$defs/jsItem"}}`},
		{"ptr", `{"$ref":"#/$defs/jsItem"}`},
		{"nilptr", `{"type":["integer","null"]}`},
		{"count", `{"type":"integer","minimum":0}`},
		{"ratio", `{"type":"number"}`},
		{"ok", `{"type":"boolean"}`},
		{"quoted", `{"type":"string"}`},
		{"Skip", ""},
		{"-", `{"type":"string"}`},
		{"any", `{}`},
		{"struct", `{"$ref":"#/$defs/jsItem"}`},
		{"arr", `{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":2}`},
		{"Untag", `{"type":"string"}`},
		{"private", ""},
	}
	for _, tt := range tests {
		t.Run(tt.prop, func(t *testing.T) {
			got, ok := props[tt.prop]
			switch {
			case tt.want == "" && ok:
				t.Errorf("property %q present, want absent: %v", tt.prop, got)
			case tt.want != "" && !ok:
				t.Errorf("property %q absent", tt.prop)
			case tt.want != "" && !jsonEq(t, got, tt.want):
				g, _ := json.Marshal(got)
				t.Errorf("property %q = %s, want %s", tt.prop, g, tt.want)
			}
		})
	}

	wantRequired := []string{"schema", "name", "Tagged", "when", "blob", "list", "count", "ratio", "ok", "quoted", "-", "struct", "arr", "Untag"}
	var gotRequired []string
	for _, r := range doc["required"].([]any) {
		gotRequired = append(gotRequired, r.(string))
	}
	if !slices.Equal(gotRequired, wantRequired) {
		t.Errorf("required = %q\nwant       %q", gotRequired, wantRequired)
	}
	if !jsonEq(t, doc["$defs"], `{"jsItem":{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]}}`) {
		t.Errorf("$defs = %v", doc["$defs"])
	}
	for key, want := range map[string]string{"$schema": JSONSchemaDialect, "$id": "eyeflow.test.v1.json", "title": "test", "type": "object"} {
		if doc[key] != want {
			t.Errorf("%s = %v, want %q", key, doc[key], want)
		}
	}

	// The generator must agree with encoding/json itself on which properties
	// exist: a fully populated value must encode to exactly those.
	v := jsOuter{}
	fill(t, reflect.ValueOf(&v).Elem())
	v.Schema = "eyeflow.test.v1"
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var encoded any
	if err := json.Unmarshal(b, &encoded); err != nil {
		t.Fatal(err)
	}
	if errs := validate(doc, doc, encoded, "$", true); len(errs) > 0 {
		t.Errorf("encoding/json output disagrees with the schema:\n%s\n%s", strings.Join(errs, "\n"), b)
	}
}

func TestJSONSchemaErrors(t *testing.T) {
	type pkgRef = ObjectRef            // this package's ObjectRef, before the next line hides it
	type ObjectRef struct{ Other int } // another type with the same name
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"not a struct", 42, "needs a struct"},
		{"nil", nil, "needs a struct"},
		{"time", time.Time{}, "needs a struct"},
		{"channel", struct{ C chan int }{}, "cannot be encoded"},
		{"func", struct{ F func() }{}, "cannot be encoded"},
		{"complex map key", struct{ M map[[2]int]string }{}, "map key"},
		{"custom MarshalJSON", struct{ R jsonRaw }{}, "MarshalJSON"},
		{"name clash", struct {
			A ObjectRef
			B pkgRef
		}{}, "two types named ObjectRef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := JSONSchema(tt.v, "", "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("JSONSchema(%T) error = %v, want one containing %q", tt.v, err, tt.want)
			}
		})
	}
}

// jsonRaw has its own MarshalJSON, so its shape cannot be derived.
type jsonRaw struct{}

func (jsonRaw) MarshalJSON() ([]byte, error) { return []byte(`1`), nil }

func TestJSONSchemaDeterministic(t *testing.T) {
	for _, e := range Events() {
		a, err := e.JSONSchema()
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			b, _ := e.JSONSchema()
			if !bytes.Equal(a, b) {
				t.Fatalf("%s: two generations differ", e.SchemaID)
			}
		}
		if !bytes.HasSuffix(a, []byte("}\n")) || !bytes.HasPrefix(a, []byte("{\n  \"")) {
			t.Errorf("%s: output is not indented JSON ending in a newline", e.SchemaID)
		}
		if bytes.Contains(a, []byte(`\u003c`)) {
			t.Errorf("%s: HTML-escaped output", e.SchemaID)
		}
	}
}

// TestEventSchemasMatchEncoding checks every event's schema against what
// encoding/json really writes: a fully populated value must have exactly the
// schema's properties (so shadowing and tags agree), and a zero value with
// only its schema set must validate too (omitted fields, nulls).
func TestEventSchemasMatchEncoding(t *testing.T) {
	for _, e := range Events() {
		t.Run(e.Name, func(t *testing.T) {
			b, err := e.JSONSchema()
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}

			full := reflect.New(reflect.TypeOf(e.Value)).Elem()
			fill(t, full)
			zero := reflect.New(reflect.TypeOf(e.Value)).Elem()
			for _, v := range []reflect.Value{full, zero} {
				v.FieldByName("Schema").SetString(e.SchemaID)
			}
			wrong := reflect.New(reflect.TypeOf(e.Value)).Elem()
			fill(t, wrong)
			wrong.FieldByName("Schema").SetString(schemaFamily(e.SchemaID) + ".v2")

			cases := []struct {
				name   string
				v      any
				strict bool
				valid  bool
			}{
				{"populated", full.Interface(), true, true},
				{"zero", zero.Interface(), false, true},
				{"other schema version", wrong.Interface(), false, false},
			}
			for _, c := range cases {
				data, err := json.Marshal(c.v)
				if err != nil {
					t.Fatal(err)
				}
				var inst any
				if err := json.Unmarshal(data, &inst); err != nil {
					t.Fatal(err)
				}
				errs := validate(doc, doc, inst, "$", c.strict)
				if c.valid && len(errs) > 0 {
					t.Errorf("%s: %s\n%s", c.name, strings.Join(errs, "\n"), data)
				}
				if !c.valid && len(errs) == 0 {
					t.Errorf("%s: validated, want a failure\n%s", c.name, data)
				}
			}
		})
	}
}

// fill sets every exported field reachable from v to a non-zero value.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(0.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem())
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(t, s.Index(0))
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			fill(t, v.Index(i))
		}
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(t, k)
		e := reflect.New(v.Type().Elem()).Elem()
		fill(t, e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				fill(t, f)
			}
		}
	case reflect.Interface:
		v.Set(reflect.ValueOf("x"))
	default:
		t.Fatalf("fill: unsupported kind %v", v.Kind())
	}
}

// validate checks inst, a decoded JSON value, against s: the subset of JSON
// Schema that JSONSchema emits. With strict, an object must have exactly the
// declared properties, which catches generator/encoder disagreements that the
// open-world schema itself would let through.
func validate(root, s map[string]any, inst any, path string, strict bool) []string {
	var errs []string
	fail := func(format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	if ref, ok := s["$ref"].(string); ok {
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		def, found := root["$defs"].(map[string]any)[name].(map[string]any)
		if !ok || !found {
			fail("unresolvable $ref %q", ref)
			return errs
		}
		errs = append(errs, validate(root, def, inst, path, strict)...)
	}
	if anyOf, ok := s["anyOf"].([]any); ok {
		matched := false
		for _, alt := range anyOf {
			if len(validate(root, alt.(map[string]any), inst, path, strict)) == 0 {
				matched = true
			}
		}
		if !matched {
			fail("matches no anyOf alternative")
		}
	}
	if c, ok := s["const"]; ok && !reflect.DeepEqual(c, inst) {
		fail("= %v, want const %v", inst, c)
	}
	if typ, ok := s["type"]; ok {
		var types []string
		switch typ := typ.(type) {
		case string:
			types = []string{typ}
		case []any:
			for _, x := range typ {
				types = append(types, x.(string))
			}
		}
		if !slices.ContainsFunc(types, func(ty string) bool { return hasType(inst, ty) }) {
			fail("%T %v is not of type %v", inst, inst, types)
			return errs
		}
	}
	if min, ok := s["minimum"].(float64); ok {
		if n, isNum := inst.(float64); isNum && n < min {
			fail("%v < minimum %v", n, min)
		}
	}
	if str, ok := inst.(string); ok {
		if s["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				fail("not a date-time: %v", err)
			}
		}
		if s["contentEncoding"] == "base64" {
			if _, err := base64.StdEncoding.DecodeString(str); err != nil {
				fail("not base64: %v", err)
			}
		}
	}
	switch inst := inst.(type) {
	case map[string]any:
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := inst[r.(string)]; !ok {
				fail("missing required property %q", r)
			}
		}
		keys := make([]string, 0, len(inst))
		for k := range inst {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, validate(root, ps, inst[k], path+"."+k, strict)...)
			} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
				errs = append(errs, validate(root, ap, inst[k], path+"."+k, strict)...)
			} else if strict && props != nil {
				fail("property %q is not in the schema", k)
			}
		}
		if strict {
			for k := range props {
				if _, ok := inst[k]; !ok {
					fail("schema property %q never encoded", k)
				}
			}
		}
	case []any:
		if n, ok := s["minItems"].(float64); ok && float64(len(inst)) < n {
			fail("%d items < minItems %v", len(inst), n)
		}
		if n, ok := s["maxItems"].(float64); ok && float64(len(inst)) > n {
			fail("%d items > maxItems %v", len(inst), n)
		}
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range inst {
				errs = append(errs, validate(root, items, x, fmt.Sprintf("%s[%d]", path, i), strict)...)
			}
		}
	}
	return errs
}

func hasType(inst any, ty string) bool {
	switch ty {
	case "null":
		return inst == nil
	case "boolean":
		_, ok := inst.(bool)
		return ok
	case "string":
		_, ok := inst.(string)
		return ok
	case "number":
		_, ok := inst.(float64)
		return ok
	case "integer":
		n, ok := inst.(float64)
		return ok && n == math.Trunc(n)
	case "array":
		_, ok := inst.([]any)
		return ok
	case "object":
		_, ok := inst.(map[string]any)
		return ok
	}
	return false
}
