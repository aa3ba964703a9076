package schemas

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// fuzzSeeds are payloads every decoder target starts from: valid events of
// each schema (so the fuzzer mutates real shapes), MinIO's notification and
// the malformed inputs the unit tests already know about.
func fuzzSeeds(f *testing.F) {
	f.Helper()
	up := NewUploadEvent(Upload{Bucket: "raw", Key: "amd/scan 1+2.jpg", Size: 10, ETag: "abc",
		Metadata: map[string]string{"patient-id": "p1"}})
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	res := Resized{Schema: SchemaResized, ImageID: "ab", UploadID: "raw/k@e", Width: 2, Height: 3, Time: now, RGB: []byte{1, 2, 3}}
	for _, v := range []any{
		up,
		res,
		Split{Schema: SchemaSplit, Resized: res, Split: SplitTrain},
		Prediction{Schema: SchemaPrediction, ImageID: "ab", Env: EnvProd, Time: now},
		DriftAlert{Schema: SchemaDrift, Env: EnvProd, Time: now},
		Retrain{Schema: SchemaRetrain, EventID: "e1", Time: now},
		DeadLetter{Schema: SchemaDeadLetter, Stage: StageResize, Reason: "bad_key", Payload: []byte("{}"), Time: now},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"EventName":"s3:ObjectCreated:Put","Key":"raw/a.jpg","Records":[{"s3":{"bucket":{"name":"raw"},"object":{"key":"a%2Fb.jpg","size":1,"eTag":"\"x\""}}}]}`,
		`{"Records":[{"s3":{"bucket":{"name":"raw"},"object":{"key":"%zz"}}}]}`,
		`{"Records":[{"s3":{"bucket":{"name":"raw"},"object":{"key":"..%2F..%2Fetc%2Fpasswd"}}}]}`,
		`{"schema":"eyeflow.upload.v2","Records":"x"}`,
		`{"schema":"eyeflow.resized.v1","width":"1e999"}`,
		`{"schema":null}`, `[]`, `null`, ``, `{`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
}

// checkBadEvent fails unless err is nil or wraps ErrBadEvent: the runtime
// dead-letters only errors it can classify as bad input.
func checkBadEvent(t *testing.T, name string, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, ErrBadEvent) {
		t.Fatalf("%s: error %v does not wrap ErrBadEvent", name, err)
	}
}

// FuzzDecodeS3Event: no panic, only ErrBadEvent errors, and a decoded event
// has uploads with a bucket and key and survives a JSON round trip (a
// consumer re-encoding it for a dead letter must not turn it invalid).
func FuzzDecodeS3Event(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeS3Event(data)
		checkBadEvent(t, "DecodeS3Event", err)
		if err != nil {
			return
		}
		ups, err := ev.Uploads()
		if err != nil || len(ups) != len(ev.Records) {
			t.Fatalf("decoded event: Uploads() = %d, %v for %d records", len(ups), err, len(ev.Records))
		}
		for _, u := range ups {
			if u.Bucket == "" || u.Key == "" {
				t.Fatalf("upload without bucket or key: %+v", u)
			}
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if _, err := DecodeS3Event(b); err != nil {
			t.Fatalf("round trip of %q: %v", b, err)
		}
	})
}

// FuzzDecoders runs every other schema decoder on the same input: no
// panic, errors wrap ErrBadEvent, and at most one decoder accepts a payload
// that carries a schema field (the schema names exactly one event type).
func FuzzDecoders(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		decoders := map[string]func([]byte) error{
			SchemaResized:    func(b []byte) error { _, err := DecodeResized(b); return err },
			SchemaSplit:      func(b []byte) error { _, err := DecodeSplit(b); return err },
			SchemaPrediction: func(b []byte) error { _, err := DecodePrediction(b); return err },
			SchemaDrift:      func(b []byte) error { _, err := DecodeDriftAlert(b); return err },
			SchemaRetrain:    func(b []byte) error { _, err := DecodeRetrain(b); return err },
			SchemaModel:      func(b []byte) error { _, err := DecodeModelEvent(b); return err },
			SchemaDeadLetter: func(b []byte) error { _, err := DecodeDeadLetter(b); return err },
		}
		accepted := 0
		for name, dec := range decoders {
			err := dec(data)
			checkBadEvent(t, name, err)
			if err == nil {
				accepted++
			}
		}
		if accepted > 1 {
			t.Fatalf("%d decoders accept %q: schemas must be exclusive", accepted, data)
		}
	})
}
