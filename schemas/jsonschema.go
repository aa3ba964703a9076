package schemas

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// This generator is hand-written rather than built on
// github.com/invopop/jsonschema; README.md ("Why the generator is
// hand-written") lists the differences that decided it.

// JSONSchemaDialect is the JSON Schema draft the generated files declare.
const JSONSchemaDialect = "https://json-schema.org/draft/2020-12/schema"

var (
	timeType          = reflect.TypeFor[time.Time]()
	rawMessageType    = reflect.TypeFor[json.RawMessage]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// JSONSchema describes the JSON encoding/json produces for v, a struct or a
// pointer to one, as a draft 2020-12 schema. id is the event's schema id
// ("eyeflow.resized.v1"): the document's $id is id+".json" (the file name, so
// it resolves next to its siblings) and a top-level "schema" string property
// is pinned to id with "const". An empty id leaves both out.
//
// The output is deterministic (object keys sorted, "required" in field order)
// because the files are checked in and compared byte for byte.
//
// The mapping follows encoding/json: fields promoted from embedded structs are
// flattened with its shadowing rules; omitempty/omitzero fields, pointers and
// fields reached through an embedded pointer are optional; slices, maps and
// pointers that are not omitted may be null; []byte is a base64 string;
// time.Time is a date-time string. Named struct types go to $defs. Extra
// properties are allowed everywhere so that adding a field stays compatible.
func JSONSchema(v any, id, title string) ([]byte, error) {
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct || t == timeType {
		return nil, fmt.Errorf("schemas: JSONSchema needs a struct, got %v", t)
	}
	g := &schemaGen{defs: map[string]any{}, defTypes: map[string]reflect.Type{}}
	root, err := g.object(t)
	if err != nil {
		return nil, err
	}
	root["$schema"] = JSONSchemaDialect
	if id != "" {
		root["$id"] = id + ".json"
		if props, ok := root["properties"].(map[string]any); ok {
			if p, ok := props["schema"].(map[string]any); ok && p["type"] == "string" {
				p["const"] = id
			}
		}
	}
	if title != "" {
		root["title"] = title
	}
	if d := descriptions[t.Name()]; d != "" {
		root["description"] = d
	}
	if len(g.defs) > 0 {
		root["$defs"] = g.defs
	}

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep "<split>" readable in descriptions
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type schemaGen struct {
	defs     map[string]any
	defTypes map[string]reflect.Type // detects two distinct types with one name
}

// object is the inline schema of struct type t.
func (g *schemaGen) object(t reflect.Type) (map[string]any, error) {
	props := map[string]any{}
	var required []string
	for _, f := range jsonFields(t) {
		s, err := g.schema(f.typ, f.quoted)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t, f.goName, err)
		}
		if f.nullable() {
			s = nullable(s)
		}
		if d := descriptions[f.owner.Name()+"."+f.name]; d != "" {
			s = withDescription(s, d)
		}
		props[f.name] = s
		if f.required() {
			required = append(required, f.name)
		}
	}
	obj := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		obj["required"] = required
	}
	return obj, nil
}

// schema is the schema of a value of type t.
func (g *schemaGen) schema(t reflect.Type, quoted bool) (map[string]any, error) {
	if t.Kind() == reflect.Pointer {
		return g.schema(t.Elem(), quoted) // *T marshals as T (or null)
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}, nil
	case t == rawMessageType:
		return map[string]any{}, nil // any JSON value
	case t.Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(jsonMarshalerType):
		return nil, fmt.Errorf("type %v has a custom MarshalJSON; its shape is unknown", t)
	case t.Implements(textMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType):
		return map[string]any{"type": "string"}, nil
	}
	switch t.Kind() {
	case reflect.Bool:
		if quoted {
			return map[string]any{"type": "string"}, nil
		}
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if quoted {
			return map[string]any{"type": "string"}, nil
		}
		return map[string]any{"type": "integer"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if quoted {
			return map[string]any{"type": "string"}, nil
		}
		return map[string]any{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		if quoted {
			return map[string]any{"type": "string"}, nil
		}
		return map[string]any{"type": "number"}, nil
	case reflect.String:
		return map[string]any{"type": "string"}, nil
	case reflect.Interface:
		return map[string]any{}, nil
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "contentEncoding": "base64"}, nil
		}
		items, err := g.schema(t.Elem(), false)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Array:
		items, err := g.schema(t.Elem(), false)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items, "minItems": t.Len(), "maxItems": t.Len()}, nil
	case reflect.Map:
		switch t.Key().Kind() {
		case reflect.String,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		default:
			if !t.Key().Implements(textMarshalerType) {
				return nil, fmt.Errorf("map key type %v is not supported by encoding/json", t.Key())
			}
		}
		vals, err := g.schema(t.Elem(), false)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": vals}, nil
	case reflect.Struct:
		if t.Name() == "" {
			return g.object(t)
		}
		return g.ref(t)
	}
	return nil, fmt.Errorf("type %v cannot be encoded as JSON", t)
}

// ref puts named struct type t into $defs and points at it.
func (g *schemaGen) ref(t reflect.Type) (map[string]any, error) {
	name := t.Name()
	ref := map[string]any{"$ref": "#/$defs/" + name}
	if prev, ok := g.defTypes[name]; ok {
		if prev != t {
			return nil, fmt.Errorf("two types named %s (%v and %v) would share $defs/%s", name, prev, t, name)
		}
		return ref, nil // done, or in progress for a recursive type
	}
	g.defTypes[name] = t
	obj, err := g.object(t)
	if err != nil {
		return nil, err
	}
	if d := descriptions[name]; d != "" {
		obj["description"] = d
	}
	g.defs[name] = obj
	return ref, nil
}

// nullable lets s also match null, which is what encoding/json writes for a
// nil slice, map or pointer that is not omitted.
func nullable(s map[string]any) map[string]any {
	switch typ := s["type"].(type) {
	case nil:
		if _, isRef := s["$ref"]; !isRef {
			return s // no type constraint: already matches null
		}
		return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
	case string:
		s["type"] = []string{typ, "null"}
	}
	return s
}

// withDescription annotates s. Draft 2020-12 allows annotations beside $ref,
// so a reference needs no wrapper.
func withDescription(s map[string]any, d string) map[string]any {
	s["description"] = d
	return s
}

// jsonField is one property of a struct's JSON encoding.
type jsonField struct {
	name       string
	goName     string
	tagged     bool // name came from a json tag: wins ties between equal depths
	index      []int
	typ        reflect.Type
	owner      reflect.Type // struct that declares the field, for descriptions
	omitEmpty  bool
	omitZero   bool
	quoted     bool // ",string"
	viaPointer bool // promoted through an embedded pointer: absent when it is nil
}

// required reports whether encoding/json always writes the field.
func (f jsonField) required() bool {
	if f.viaPointer || f.omitZero {
		return false
	}
	switch f.typ.Kind() {
	case reflect.Pointer, reflect.Interface:
		return false // treated as optional: nil is "not given"
	}
	if f.omitEmpty {
		switch f.typ.Kind() {
		case reflect.Struct:
			return true // omitempty never omits a struct
		case reflect.Array:
			return f.typ.Len() > 0
		default:
			return false
		}
	}
	return true
}

// nullable reports whether the field, when written, may be null.
func (f jsonField) nullable() bool {
	if f.omitEmpty || f.omitZero {
		return false // nil is empty and zero: omitted rather than null
	}
	switch f.typ.Kind() {
	case reflect.Slice, reflect.Map, reflect.Pointer:
		return true
	}
	return false
}

// jsonFields lists the fields encoding/json writes for struct type t, in its
// order, applying its rules for embedded structs: breadth first, a shallower
// field hides deeper ones with the same name, and at equal depth a tagged
// field beats untagged ones; any other tie hides all of them.
func jsonFields(t reflect.Type) []jsonField {
	type queued struct {
		typ        reflect.Type
		index      []int
		viaPointer bool
	}
	var all []jsonField
	visited := map[reflect.Type]bool{}
	next := []queued{{typ: t}}
	for len(next) > 0 {
		current := next
		next = nil
		for _, q := range current {
			if visited[q.typ] {
				continue
			}
			visited[q.typ] = true
			for i := range q.typ.NumField() {
				sf := q.typ.Field(i)
				ft := sf.Type
				if sf.Anonymous {
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					// Unexported embedded structs still promote exported fields.
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				index := append(slices.Clone(q.index), i)
				viaPointer := q.viaPointer
				if name == "" && sf.Anonymous && ft.Kind() == reflect.Struct && ft != timeType {
					next = append(next, queued{typ: ft, index: index, viaPointer: viaPointer || sf.Type.Kind() == reflect.Pointer})
					continue
				}
				f := jsonField{
					name:       name,
					goName:     sf.Name,
					tagged:     name != "",
					index:      index,
					typ:        sf.Type,
					owner:      q.typ,
					viaPointer: viaPointer,
				}
				if f.name == "" {
					f.name = sf.Name
				}
				for o := range strings.SplitSeq(opts, ",") {
					switch o {
					case "omitempty":
						f.omitEmpty = true
					case "omitzero":
						f.omitZero = true
					case "string":
						f.quoted = true
					}
				}
				all = append(all, f)
			}
		}
	}

	byName := map[string][]jsonField{}
	for _, f := range all {
		byName[f.name] = append(byName[f.name], f)
	}
	var out []jsonField
	for _, fs := range byName {
		if f, ok := dominant(fs); ok {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b jsonField) int { return slices.Compare(a.index, b.index) })
	return out
}

// dominant picks the field that encoding/json writes among fields sharing a name.
func dominant(fs []jsonField) (jsonField, bool) {
	depth := len(fs[0].index)
	for _, f := range fs {
		depth = min(depth, len(f.index))
	}
	var shallow, tagged []jsonField
	for _, f := range fs {
		if len(f.index) == depth {
			shallow = append(shallow, f)
			if f.tagged {
				tagged = append(tagged, f)
			}
		}
	}
	switch {
	case len(shallow) == 1:
		return shallow[0], true
	case len(tagged) == 1:
		return tagged[0], true
	}
	return jsonField{}, false
}
