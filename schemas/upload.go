package schemas

import (
	"errors"
	"fmt"
	"net/textproto"
	"net/url"
	"strings"
)

// SchemaUpload marks upload events that eyeflow's own ingest publishes. MinIO's
// notifications carry no schema field; both decode to the same type.
const SchemaUpload = "eyeflow.upload.v1"

// S3Event is an S3 bucket notification exactly as MinIO (and AWS, through a
// bridge) publishes it on eye.uploads. Object keys in Records are URL-encoded
// (query escaping: a space may arrive as "+", a literal plus as "%2B").
type S3Event struct {
	Schema    string     `json:"schema,omitempty"`
	EventName string     `json:"EventName"`
	Key       string     `json:"Key"`
	Records   []S3Record `json:"Records"`
}

// S3Record is one notification record.
type S3Record struct {
	EventVersion string   `json:"eventVersion,omitempty"`
	EventSource  string   `json:"eventSource,omitempty"`
	EventTime    string   `json:"eventTime,omitempty"`
	EventName    string   `json:"eventName,omitempty"`
	S3           S3Entity `json:"s3"`
}

// S3Entity names the bucket and object of a record.
type S3Entity struct {
	Bucket S3Bucket `json:"bucket"`
	Object S3Object `json:"object"`
}

// S3Bucket is the bucket of a record.
type S3Bucket struct {
	Name string `json:"name"`
}

// S3Object describes the object of a record. Key is URL-encoded.
type S3Object struct {
	Key          string            `json:"key"`
	Size         int64             `json:"size"`
	ETag         string            `json:"eTag,omitempty"`
	ContentType  string            `json:"contentType,omitempty"`
	UserMetadata map[string]string `json:"userMetadata,omitempty"`
	VersionID    string            `json:"versionId,omitempty"`
	Sequencer    string            `json:"sequencer,omitempty"`
}

// Upload is one uploaded object, decoded from an S3Event record: the key is
// URL-decoded and user metadata is indexed by its short, lower-case name
// ("patient-id" for both "X-Amz-Meta-Patient-Id" and "patient-id").
type Upload struct {
	Bucket      string
	Key         string
	Size        int64
	ETag        string
	VersionID   string
	ContentType string
	Metadata    map[string]string
}

// ErrBadEvent marks an event that can never be processed: retrying won't help.
var ErrBadEvent = errors.New("bad event")

// ID is the upload's identity: (bucket, key, eTag, or the version when the
// store gives no eTag). The same upload reported twice (a notification
// replay, the reconciler, a re-run put of the same bytes) has the same ID;
// the same bytes under another key do not. The eTag comes first because a
// store may mint a new version for an identical re-put.
func (u Upload) ID() string {
	v := u.ETag
	if v == "" {
		v = u.VersionID
	}
	return u.Bucket + "/" + u.Key + "@" + v
}

// Uploads decodes the records of the event. It fails with ErrBadEvent when a
// record lacks a bucket or key, or a key is not valid URL encoding.
func (e S3Event) Uploads() ([]Upload, error) {
	if len(e.Records) == 0 {
		return nil, fmt.Errorf("%w: no records", ErrBadEvent)
	}
	out := make([]Upload, 0, len(e.Records))
	for i, r := range e.Records {
		if r.S3.Bucket.Name == "" || r.S3.Object.Key == "" {
			return nil, fmt.Errorf("%w: record %d has no bucket or key", ErrBadEvent, i)
		}
		key, err := url.QueryUnescape(r.S3.Object.Key)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d key %q: %v", ErrBadEvent, i, r.S3.Object.Key, err)
		}
		meta := make(map[string]string, len(r.S3.Object.UserMetadata))
		for k, v := range r.S3.Object.UserMetadata {
			k = strings.ToLower(k)
			k = strings.TrimPrefix(k, "x-amz-meta-")
			meta[k] = v
		}
		out = append(out, Upload{
			Bucket:      r.S3.Bucket.Name,
			Key:         key,
			Size:        r.S3.Object.Size,
			ETag:        strings.Trim(r.S3.Object.ETag, `"`),
			VersionID:   r.S3.Object.VersionID,
			ContentType: r.S3.Object.ContentType,
			Metadata:    meta,
		})
	}
	return out, nil
}

// NewUploadEvent builds the event eyeflow's own ingest publishes for an object,
// in MinIO's shape, so consumers cannot tell the two sources apart: the record
// key is query-escaped, the top-level Key is bucket/key unescaped (as MinIO's
// NATS target writes it) and metadata names are canonical X-Amz-Meta- headers.
func NewUploadEvent(u Upload) S3Event {
	key := url.QueryEscape(u.Key)
	meta := make(map[string]string, len(u.Metadata))
	for k, v := range u.Metadata {
		meta[textproto.CanonicalMIMEHeaderKey("X-Amz-Meta-"+k)] = v
	}
	if len(meta) == 0 {
		meta = nil
	}
	return S3Event{
		Schema:    SchemaUpload,
		EventName: "s3:ObjectCreated:Put",
		Key:       u.Bucket + "/" + u.Key,
		Records: []S3Record{{
			EventVersion: "2.0",
			EventSource:  "eyeflow:ingest",
			EventName:    "s3:ObjectCreated:Put",
			S3: S3Entity{
				Bucket: S3Bucket{Name: u.Bucket},
				Object: S3Object{
					Key:          key,
					Size:         u.Size,
					ETag:         u.ETag,
					ContentType:  u.ContentType,
					UserMetadata: meta,
					VersionID:    u.VersionID,
				},
			},
		}},
	}
}

// DecodeS3Event parses an eye.uploads payload. The "schema" field is optional
// (MinIO does not send it) but, when present, must be SchemaUpload. It fails
// with ErrBadEvent when the payload is not JSON, carries another schema, or
// Uploads would fail.
func DecodeS3Event(data []byte) (S3Event, error) {
	e, err := decode(data, SchemaUpload, true, func(e *S3Event) string { return e.Schema })
	if err != nil {
		return S3Event{}, err
	}
	if _, err := e.Uploads(); err != nil {
		return S3Event{}, err
	}
	return e, nil
}
