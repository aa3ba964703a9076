package schemas

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameUpload compares uploads treating nil and empty metadata alike: a
// decoder always returns a map, NewUploadEvent drops an empty one.
func sameUpload(t *testing.T, got, want Upload) {
	t.Helper()
	if !maps.Equal(got.Metadata, want.Metadata) {
		t.Errorf("Metadata = %v, want %v", got.Metadata, want.Metadata)
	}
	got.Metadata, want.Metadata = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Upload = %+v\nwant     %+v", got, want)
	}
}

// TestDecodeMinIOEvent decodes a notification exactly as MinIO's NATS target
// publishes it (no "schema" field, URL-encoded key, unprefixed and prefixed
// metadata names, fields eyeflow ignores).
func TestDecodeMinIOEvent(t *testing.T) {
	e, err := DecodeS3Event(readFixture(t, "minio_put_event.json"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Schema != "" || e.EventName != "s3:ObjectCreated:Put" || e.Key != "raw/cataract/img 1.jpg" {
		t.Errorf("event header = %q %q %q", e.Schema, e.EventName, e.Key)
	}
	ups, err := e.Uploads()
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 1 {
		t.Fatalf("got %d uploads, want 1", len(ups))
	}
	want := Upload{
		Bucket:      "raw",
		Key:         "cataract/img 1.jpg",
		Size:        1234,
		ETag:        "d41d8cd98f00b204e9800998ecf8427e",
		ContentType: "image/jpeg",
		Metadata:    map[string]string{"patient-id": "p-17", "content-type": "image/jpeg"},
	}
	sameUpload(t, ups[0], want)
	if got, want := ups[0].ID(), "raw/cataract/img 1.jpg@d41d8cd98f00b204e9800998ecf8427e"; got != want {
		t.Errorf("ID() = %q, want %q", got, want)
	}
}

// s3EventJSON is a one-record event whose object fields are given raw.
func s3EventJSON(t *testing.T, bucket, rawKey string, obj S3Object) []byte {
	t.Helper()
	obj.Key = rawKey
	return marshal(t, S3Event{
		EventName: "s3:ObjectCreated:Put",
		Key:       bucket + "/whatever",
		Records:   []S3Record{{EventName: "s3:ObjectCreated:Put", S3: S3Entity{Bucket: S3Bucket{Name: bucket}, Object: obj}}},
	})
}

func TestUploadKeyDecoding(t *testing.T) {
	tests := []struct {
		name   string
		rawKey string // as it appears in the notification
		want   string
	}{
		{"plain", "img.jpg", "img.jpg"},
		{"escaped folder and space", "cataract%2Fimg+1.jpg", "cataract/img 1.jpg"},
		{"space as %20", "img%201.jpg", "img 1.jpg"},
		{"literal plus", "a%2Bb.jpg", "a+b.jpg"},
		{"literal percent", "100%25.jpg", "100%.jpg"},
		{"unicode", "glaucoma%2F%C3%A9t%C3%A9+%E7%9C%BC.png", "glaucoma/été 眼.png"},
		{"nested folders", "raw%2F2025%2F03%2Fdiabetic_retinopathy%2Fimg.png", "raw/2025/03/diabetic_retinopathy/img.png"},
		{"unescaped slashes (AWS style)", "a/b/c.jpg", "a/b/c.jpg"},
		{"query characters", "x%3Fy%3D1%26z%23.jpg", "x?y=1&z#.jpg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := DecodeS3Event(s3EventJSON(t, "raw", tt.rawKey, S3Object{Size: 1, ETag: `"e"`}))
			if err != nil {
				t.Fatal(err)
			}
			ups, err := e.Uploads()
			if err != nil {
				t.Fatal(err)
			}
			if ups[0].Key != tt.want {
				t.Errorf("Key = %q, want %q", ups[0].Key, tt.want)
			}
			if ups[0].ETag != "e" {
				t.Errorf("ETag = %q, want quotes trimmed", ups[0].ETag)
			}
		})
	}
}

func TestUploadEventRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		up   Upload
	}{
		{"minimal", Upload{Bucket: "raw", Key: "img.jpg", Size: 1, ETag: "e1"}},
		{"spaces and folders", Upload{Bucket: "raw", Key: "cataract/img 1.jpg", Size: 1234, ETag: "d41d8cd98f00b204e9800998ecf8427e", ContentType: "image/jpeg"}},
		{"plus", Upload{Bucket: "raw", Key: "normal/a+b.jpg", Size: 2, ETag: "e2"}},
		{"literal %2B", Upload{Bucket: "raw", Key: "normal/a%2Bb.jpg", Size: 2, ETag: "e3"}},
		{"unicode", Upload{Bucket: "raw", Key: "glaucoma/été 眼.png", Size: 3, ETag: "e4"}},
		{"deeply nested", Upload{Bucket: "raw", Key: "a/b/c/d/e/f.png", Size: 4, ETag: "e5"}},
		{"query characters", Upload{Bucket: "raw", Key: "x?y=1&z#.jpg", Size: 5, ETag: "e6"}},
		{"versioned", Upload{Bucket: "raw", Key: "v.jpg", Size: 6, ETag: "e7", VersionID: "3f1b-9a"}},
		{"metadata", Upload{Bucket: "raw", Key: "m.jpg", Size: 7, ETag: "e8", ContentType: "image/png",
			Metadata: map[string]string{"patient-id": "p-17", "eye": "left", "content-type": "image/png"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := NewUploadEvent(tt.up)
			data := marshal(t, ev)
			got, err := DecodeS3Event(data)
			if err != nil {
				t.Fatalf("DecodeS3Event(%s): %v", data, err)
			}
			if got.Schema != SchemaUpload {
				t.Errorf("Schema = %q, want %q", got.Schema, SchemaUpload)
			}
			// MinIO's NATS target writes the top-level Key unescaped.
			if want := tt.up.Bucket + "/" + tt.up.Key; got.Key != want {
				t.Errorf("Key = %q, want %q", got.Key, want)
			}
			ups, err := got.Uploads()
			if err != nil {
				t.Fatal(err)
			}
			if len(ups) != 1 {
				t.Fatalf("got %d uploads, want 1", len(ups))
			}
			sameUpload(t, ups[0], tt.up)
			if ups[0].ID() != tt.up.ID() {
				t.Errorf("ID() = %q, want %q", ups[0].ID(), tt.up.ID())
			}
			for k := range got.Records[0].S3.Object.UserMetadata {
				if !strings.HasPrefix(k, "X-Amz-Meta-") {
					t.Errorf("metadata name %q lacks the canonical X-Amz-Meta- prefix", k)
				}
			}
		})
	}
}

func TestUploadID(t *testing.T) {
	tests := []struct {
		up   Upload
		want string
	}{
		{Upload{Bucket: "raw", Key: "a.jpg", ETag: "e"}, "raw/a.jpg@e"},
		// A new version of identical bytes is the same upload: a re-run put.
		{Upload{Bucket: "raw", Key: "a.jpg", ETag: "e", VersionID: "v1"}, "raw/a.jpg@e"},
		{Upload{Bucket: "raw", Key: "a.jpg", VersionID: "v1"}, "raw/a.jpg@v1"},
		{Upload{Bucket: "raw", Key: "b.jpg", ETag: "e"}, "raw/b.jpg@e"},
	}
	for _, tt := range tests {
		if got := tt.up.ID(); got != tt.want {
			t.Errorf("%+v.ID() = %q, want %q", tt.up, got, tt.want)
		}
	}
}

func TestDecodeS3EventRejects(t *testing.T) {
	minio := readFixture(t, "minio_put_event.json")
	withKey := func(raw string) []byte {
		return s3EventJSON(t, "raw", raw, S3Object{Size: 1})
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"not JSON", []byte("EventName=put"), "invalid character"},
		{"truncated", minio[:100], "unexpected end"},
		{"empty", nil, "unexpected end"},
		{"JSON null", []byte("null"), "no records"},
		{"empty object", []byte("{}"), "no records"},
		{"no records", []byte(`{"EventName":"s3:ObjectCreated:Put","Key":"raw/a","Records":[]}`), "no records"},
		{"records not a list", []byte(`{"Records":{"s3":{}}}`), "cannot unmarshal"},
		{"empty key", withKey(""), "no bucket or key"},
		{"no bucket", s3EventJSON(t, "", "a.jpg", S3Object{}), "no bucket or key"},
		{"bad percent-encoding", withKey("img%zz.jpg"), "invalid URL escape"},
		{"truncated percent-encoding", withKey("img%2"), "invalid URL escape"},
		{"newer upload schema", withField(t, minio, "schema", `"eyeflow.upload.v2"`), "another version"},
		{"another event's schema", withField(t, minio, "schema", `"`+SchemaResized+`"`), "wrong subject"},
		{"size of wrong type", []byte(strings.Replace(string(minio), `"size": 1234`, `"size": "big"`, 1)), "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := DecodeS3Event(tt.data)
			if !errors.Is(err, ErrBadEvent) {
				t.Fatalf("error = %v, want one wrapping ErrBadEvent", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", err, tt.wantErr)
			}
			if e.Records != nil || e.Key != "" {
				t.Errorf("returned a non-zero event with the error: %+v", e)
			}
		})
	}
}

// TestS3EventSchemaOptional: MinIO's events carry no schema; eyeflow's carry
// SchemaUpload. Both must decode.
func TestS3EventSchemaOptional(t *testing.T) {
	minio := readFixture(t, "minio_put_event.json")
	for _, data := range [][]byte{minio, withField(t, minio, "schema", `"`+SchemaUpload+`"`)} {
		if _, err := DecodeS3Event(data); err != nil {
			t.Errorf("DecodeS3Event: %v", err)
		}
	}
	var raw map[string]any
	if err := json.Unmarshal(marshal(t, NewUploadEvent(Upload{Bucket: "b", Key: "k"})), &raw); err != nil {
		t.Fatal(err)
	}
	if raw["schema"] != SchemaUpload {
		t.Errorf("NewUploadEvent schema = %v, want %q", raw["schema"], SchemaUpload)
	}
}
