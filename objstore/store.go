package objstore

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"
)

// Well-known buckets.
const (
	BucketRaw       = "raw"
	BucketProcessed = "processed"
	BucketLabeling  = "labeling"
	BucketModels    = "models"
	// BucketFeatures caches the trainer's backbone features per image.
	BucketFeatures = "features"
)

// Buckets lists every bucket eyeflow uses.
func Buckets() []string {
	return []string{BucketRaw, BucketProcessed, BucketLabeling, BucketModels, BucketFeatures}
}

// ErrNotFound is returned (wrapped) when a bucket or object does not exist.
var ErrNotFound = errors.New("object not found")

// ErrNotLinkable is returned (wrapped) by Link when the destination cannot
// become a link (it holds, or held, an object of its own): Copy instead.
var ErrNotLinkable = errors.New("destination cannot be a link")

// ErrExists is returned (wrapped) by LinkNew when the destination holds, or
// held, something: look at it (Stat) before deciding what to do.
var ErrExists = errors.New("destination exists")

// Linker is implemented by stores that can show an object under a second
// name without storing its bytes again (the JetStream object store's
// links). Get, Stat and List of the link see the target's content, size,
// ETag, content type and metadata under the link's own bucket and key (Stat
// and List: with the time the link was placed as Modified, as a copy's
// would be); a link whose target is gone reads as not found. Put or Copy onto a link
// replace it with an object; deleting the target breaks the link.
type Linker interface {
	// Link makes dstBucket/dstKey show srcBucket/srcKey (a link to a link
	// points at its target). It returns the target's Info under the
	// link's name.
	Link(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (Info, error)
	// LinkNew places the link only where dstBucket/dstKey has never held
	// anything, in one round trip: the source is not read (the caller
	// knows it is an object, e.g. from the event that named it; a link to
	// a missing source reads as not found) and an existing destination is
	// left as it is: ErrExists.
	LinkNew(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) error
}

// Info describes a stored object.
type Info struct {
	Bucket      string
	Key         string
	Size        int64
	ETag        string
	VersionID   string
	ContentType string
	// Metadata is user metadata with lower-case keys without any
	// "x-amz-meta-" prefix (e.g. "patient-id").
	Metadata map[string]string
	Modified time.Time
}

// PutOptions are optional attributes of a put.
type PutOptions struct {
	ContentType string
	Metadata    map[string]string
}

// Store is an object store. Keys are plain (not URL-encoded) strings.
type Store interface {
	// Get streams an object. The caller closes the reader.
	Get(ctx context.Context, bucket, key string) (io.ReadCloser, Info, error)
	// Put stores r under key; size is the length of r or -1 when unknown.
	Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts PutOptions) (Info, error)
	// Stat describes an object without reading it.
	Stat(ctx context.Context, bucket, key string) (Info, error)
	// List yields the objects whose key starts with prefix, in key order
	// where the backend orders them.
	List(ctx context.Context, bucket, prefix string) iter.Seq2[Info, error]
	// Copy copies an object, within or across buckets.
	Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (Info, error)
	// EnsureBucket creates the bucket when it does not exist.
	EnsureBucket(ctx context.Context, bucket string) error
}
