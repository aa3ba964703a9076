package objstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/notification"
)

// S3Config configures NewS3. Its String and LogValue methods redact the
// secret, so the config can be logged as is.
type S3Config struct {
	// Endpoint is the server URL, e.g. "http://127.0.0.1:9000". The scheme
	// decides TLS ("https") or plain HTTP ("http").
	Endpoint  string
	AccessKey string
	SecretKey string
	// Region is optional; when empty the client asks the server.
	Region string
	// PartSize is the multipart part size of puts of unknown size (-1), also
	// the memory each such put buffers. Default 16 MiB (S3 minimum 5 MiB);
	// the largest object of unknown size is 10,000 parts.
	PartSize uint64
}

// DefaultS3PartSize is the part size used for puts of unknown size. minio-go's
// own default for unknown sizes is ~537 MiB per part, held in memory.
const DefaultS3PartSize = 16 << 20

// String prints the config without the secret key.
func (c S3Config) String() string {
	return fmt.Sprintf("S3Config{Endpoint:%s AccessKey:%s SecretKey:%s Region:%s PartSize:%d}",
		redactURL(c.Endpoint), c.AccessKey, redact(c.SecretKey), c.Region, c.PartSize)
}

// GoString keeps the secret key out of %#v.
func (c S3Config) GoString() string { return "objstore." + c.String() }

// LogValue keeps the secret key out of slog output.
func (c S3Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", redactURL(c.Endpoint)),
		slog.String("access_key", c.AccessKey),
		slog.String("secret_key", redact(c.SecretKey)),
		slog.String("region", c.Region),
	)
}

// redactURL hides a password in the URL's user info; an unparsable URL is
// not shown at all.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<invalid URL>"
	}
	return u.Redacted()
}

func redact(s string) string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// S3Store is a Store on an S3-compatible server (MinIO, AWS S3) through
// minio-go.
//
// Mapping to Info: ETag is the server's ETag without quotes (MD5 hex for
// single-part puts, "<md5>-<parts>" for multipart ones, so it is stable for
// identical bytes put the same way); VersionID is the S3 version ("" when the
// bucket is not versioned); Metadata is the x-amz-meta-* metadata with the
// prefix stripped and lower-case keys. List yields Key, Size, ETag and
// Modified only: S3 listings carry no content type or user metadata.
type S3Store struct {
	client   *minio.Client
	partSize uint64
}

var _ Store = (*S3Store)(nil)

// NewS3 returns a Store on the server at cfg.Endpoint. It does not contact
// the server.
func NewS3(cfg S3Config) (*S3Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		// url errors quote the input, which could hold credentials.
		return nil, errors.New("s3: endpoint is not a valid URL")
	}
	if u.User != nil {
		return nil, errors.New("s3: endpoint must not carry credentials; use AccessKey and SecretKey")
	}
	var secure bool
	switch u.Scheme {
	case "https":
		secure = true
	case "http":
	default:
		return nil, fmt.Errorf("s3: endpoint %s: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("s3: endpoint %s: want scheme://host[:port] only", u.Redacted())
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: client for %s: %w", u.Host, err)
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultS3PartSize
	}
	return &S3Store{client: client, partSize: partSize}, nil
}

// Client exposes the minio-go client for operations Store does not cover.
func (s *S3Store) Client() *minio.Client { return s.client }

// EnsureBucket creates the bucket when it does not exist.
func (s *S3Store) EnsureBucket(ctx context.Context, bucket string) error {
	ok, err := s.client.BucketExists(ctx, bucket)
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", bucket, err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	if err != nil {
		var er minio.ErrorResponse
		if errors.As(err, &er) && er.Code == "BucketAlreadyOwnedByYou" {
			return nil // created concurrently
		}
		return fmt.Errorf("ensure bucket %s: %w", bucket, err)
	}
	return nil
}

// Get streams an object. The first request is sent here so that a missing
// object fails now rather than on the first Read.
func (s *S3Store) Get(ctx context.Context, bucket, key string) (io.ReadCloser, Info, error) {
	obj, err := s.client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, s3Err(err))
	}
	st, err := obj.Stat()
	if err != nil {
		obj.Close()
		return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, s3Err(err))
	}
	return obj, s3Info(bucket, st), nil
}

// Put streams r; with size -1 minio-go uploads parts of PartSize.
func (s *S3Store) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts PutOptions) (Info, error) {
	po := minio.PutObjectOptions{
		ContentType:  opts.ContentType,
		UserMetadata: opts.Metadata,
	}
	if size < 0 {
		size = -1
		po.PartSize = s.partSize
	}
	up, err := s.client.PutObject(ctx, bucket, key, r, size, po)
	if err != nil {
		return Info{}, fmt.Errorf("put %s/%s: %w", bucket, key, s3Err(err))
	}
	mod := up.LastModified
	if mod.IsZero() {
		mod = time.Now().UTC() // PUT responses carry no modification time
	}
	return Info{
		Bucket:      bucket,
		Key:         key,
		Size:        up.Size,
		ETag:        strings.Trim(up.ETag, `"`),
		VersionID:   up.VersionID,
		ContentType: opts.ContentType,
		Metadata:    normalizeMeta(opts.Metadata),
		Modified:    mod,
	}, nil
}

// Stat sends a HEAD request.
func (s *S3Store) Stat(ctx context.Context, bucket, key string) (Info, error) {
	st, err := s.client.StatObject(ctx, bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("stat %s/%s: %w", bucket, key, s3Err(err))
	}
	return s3Info(bucket, st), nil
}

// List yields the objects under prefix, recursively, in the server's key
// order (S3 lists in UTF-8 binary order, the order of Go string comparison).
func (s *S3Store) List(ctx context.Context, bucket, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		// Cancelling stops minio-go's lister goroutine when the caller stops early.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for oi := range s.client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
			if oi.Err != nil {
				yield(Info{}, fmt.Errorf("list %s/%s: %w", bucket, prefix, s3Err(oi.Err)))
				return
			}
			if !yield(s3Info(bucket, oi), nil) {
				return
			}
		}
	}
}

// Copy is a server-side CopyObject; metadata and content type are kept.
// (S3 limits a single copy to 5 GiB.)
func (s *S3Store) Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (Info, error) {
	_, err := s.client.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: dstBucket, Object: dstKey},
		minio.CopySrcOptions{Bucket: srcBucket, Object: srcKey})
	if err != nil {
		return Info{}, fmt.Errorf("copy %s/%s to %s/%s: %w", srcBucket, srcKey, dstBucket, dstKey, s3Err(err))
	}
	// The copy response lacks content type and metadata; read them back.
	info, err := s.Stat(ctx, dstBucket, dstKey)
	if err != nil {
		return Info{}, fmt.Errorf("copy %s/%s: %w", srcBucket, srcKey, err)
	}
	return info, nil
}

// EnableNATSNotifications makes the server publish s3:ObjectCreated:* events
// of bucket to the queue target arn. With MinIO the ARN is
// "arn:minio:sqs:<region>:<ID>:nats" where <ID> is the suffix of
// MINIO_NOTIFY_NATS_ENABLE_<ID> as written (case kept), e.g.
// MINIO_NOTIFY_NATS_ENABLE_EYEFLOW=on gives "arn:minio:sqs::EYEFLOW:nats"
// when no region is configured. It is idempotent: an existing rule for the
// same ARN covering all created events without filters is left alone.
func (s *S3Store) EnableNATSNotifications(ctx context.Context, bucket, arn string) error {
	a, err := notification.NewArnFromString(arn)
	if err != nil {
		return fmt.Errorf("enable notifications on %s: arn %q: %w", bucket, arn, err)
	}
	cfg, err := s.client.GetBucketNotification(ctx, bucket)
	if err != nil {
		return fmt.Errorf("enable notifications on %s: %w", bucket, s3Err(err))
	}
	for _, q := range cfg.QueueConfigs {
		qa, err := notification.NewArnFromString(q.Queue)
		if err == nil && sameARN(qa, a) && hasEvent(q.Events, notification.ObjectCreatedAll) &&
			(q.Filter == nil || len(q.Filter.S3Key.FilterRules) == 0) {
			return nil
		}
	}
	// Not Configuration.AddQueue: it compares filters by pointer and so
	// never detects a duplicate.
	qc := notification.NewConfig(a)
	qc.AddEvents(notification.ObjectCreatedAll)
	cfg.QueueConfigs = append(cfg.QueueConfigs, notification.QueueConfig{Config: qc, Queue: a.String()})
	if err := s.client.SetBucketNotification(ctx, bucket, cfg); err != nil {
		return fmt.Errorf("enable notifications on %s to %s: %w", bucket, arn, s3Err(err))
	}
	return nil
}

// sameARN compares ARNs, where an empty region matches any: MinIO stores a
// regionless ARN with its own region when it has one configured.
func sameARN(a, b notification.Arn) bool {
	return a.Partition == b.Partition && a.Service == b.Service && a.AccountID == b.AccountID &&
		a.Resource == b.Resource && (a.Region == b.Region || a.Region == "" || b.Region == "")
}

func hasEvent(events []notification.EventType, want notification.EventType) bool {
	for _, e := range events {
		if e == want {
			return true
		}
	}
	return false
}

// s3Err wraps S3's not-found errors in ErrNotFound, keeping the original.
func s3Err(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchVersion":
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		if er.StatusCode == http.StatusNotFound && er.Code == "" {
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
	}
	return err
}

// s3Info converts minio-go's object description.
func s3Info(bucket string, oi minio.ObjectInfo) Info {
	return Info{
		Bucket:      bucket,
		Key:         oi.Key,
		Size:        oi.Size,
		ETag:        strings.Trim(oi.ETag, `"`),
		VersionID:   oi.VersionID,
		ContentType: oi.ContentType,
		Metadata:    normalizeMeta(oi.UserMetadata),
		Modified:    oi.LastModified,
	}
}

// normalizeMeta lower-cases keys and strips any "x-amz-meta-" prefix: minio-go
// returns "Patient-Id" from StatObject and prefixed keys from some listings.
func normalizeMeta(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		k = strings.ToLower(k)
		k = strings.TrimPrefix(k, "x-amz-meta-")
		out[k] = v
	}
	return out
}
