package objstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// headerContentType is the object header that carries the content type. It is
// kept out of Metadata so that Info.Metadata holds only user metadata.
const headerContentType = "Content-Type"

// JetStreamStore is a Store backed by the NATS JetStream Object Store: each
// eyeflow bucket is one object-store bucket (stream OBJ_<bucket>).
//
// Mapping to Info:
//   - ETag is the object's SHA-256 digest as lowercase hex (64 characters),
//     decoded from ObjectInfo.Digest ("SHA-256=<base64url>"). It depends only
//     on the bytes, so identical content always has the same ETag.
//   - VersionID is the object's NUID, new on every put.
//   - ContentType is stored in the object's "Content-Type" header.
//   - Metadata is ObjectMeta.Metadata with lower-case keys.
//   - Modified is the server time of the meta message (on Stat, Get, List);
//     Put and Copy report the client's clock since the client does not
//     return the server time without another round trip.
type JetStreamStore struct {
	js  jetstream.JetStream
	cfg jsConfig

	mu      sync.Mutex
	stores  map[string]jetstream.ObjectStore // handles looked up so far
	streams map[string]jetstream.Stream      // their streams, for direct gets
}

var _ Store = (*JetStreamStore)(nil)

type jsConfig struct {
	replicas  int
	storage   jetstream.StorageType
	chunkSize uint32
}

// JetStreamOption configures NewJetStream.
type JetStreamOption func(*jsConfig)

// WithReplicas sets the replica count of buckets created by EnsureBucket
// (default 1; a clustered JetStream allows up to 5).
func WithReplicas(n int) JetStreamOption {
	return func(c *jsConfig) { c.replicas = n }
}

// WithStorage sets the storage of buckets created by EnsureBucket (default
// jetstream.FileStorage; jetstream.MemoryStorage is for tests and caches).
func WithStorage(st jetstream.StorageType) JetStreamOption {
	return func(c *jsConfig) { c.storage = st }
}

// WithChunkSize sets the chunk size of objects put (default: the client's
// 128 KiB). Larger chunks mean fewer messages for big images; a chunk must
// fit in the server's max_payload (1 MiB by default) with its headers.
func WithChunkSize(n uint32) JetStreamOption {
	return func(c *jsConfig) { c.chunkSize = n }
}

// NewJetStream returns a Store on the object stores of js.
func NewJetStream(js jetstream.JetStream, opts ...JetStreamOption) *JetStreamStore {
	cfg := jsConfig{replicas: 1, storage: jetstream.FileStorage}
	for _, o := range opts {
		o(&cfg)
	}
	return &JetStreamStore{js: js, cfg: cfg, stores: make(map[string]jetstream.ObjectStore), streams: make(map[string]jetstream.Stream)}
}

// EnsureBucket creates the object-store bucket when it does not exist. An
// existing bucket is left as it is, whatever its configuration.
func (s *JetStreamStore) EnsureBucket(ctx context.Context, bucket string) error {
	if _, err := s.store(ctx, bucket); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("ensure bucket %s: %w", bucket, err)
	}
	obs, err := s.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:   bucket,
		Replicas: s.cfg.replicas,
		Storage:  s.cfg.storage,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Created concurrently (or exists with another configuration): use it.
		obs, err = s.js.ObjectStore(ctx, bucket)
	}
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", bucket, err)
	}
	s.mu.Lock()
	s.stores[bucket] = obs
	s.mu.Unlock()
	return nil
}

// store returns the cached handle of bucket, looking it up on first use.
func (s *JetStreamStore) store(ctx context.Context, bucket string) (jetstream.ObjectStore, error) {
	return cached(&s.mu, s.stores, bucket, func() (jetstream.ObjectStore, error) {
		obs, err := s.js.ObjectStore(ctx, bucket)
		if err != nil {
			return nil, s.mapErr(ctx, bucket, err)
		}
		return obs, nil
	})
}

// cached returns m[key], looked up with look on first use; mu guards m.
// Two first uses may both look: the handles are equal.
func cached[T any](mu *sync.Mutex, m map[string]T, key string, look func() (T, error)) (T, error) {
	mu.Lock()
	v, ok := m[key]
	mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := look()
	if err != nil {
		return v, err
	}
	mu.Lock()
	m[key] = v
	mu.Unlock()
	return v, nil
}

// mapErr wraps JetStream's not-found errors in ErrNotFound (keeping the
// original in the chain) and forgets a cached handle whose bucket is gone, so
// that a recreated bucket is found again.
func (s *JetStreamStore) mapErr(ctx context.Context, bucket string, err error) error {
	if errors.Is(err, nats.ErrNoResponders) {
		// Direct gets on a deleted stream find no responder rather than a
		// "stream not found": ask whether the bucket still exists.
		if _, lerr := s.js.ObjectStore(ctx, bucket); errors.Is(lerr, jetstream.ErrBucketNotFound) {
			err = errors.Join(lerr, err)
		}
	}
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		s.mu.Lock()
		delete(s.stores, bucket)
		delete(s.streams, bucket)
		s.mu.Unlock()
		return fmt.Errorf("%w: bucket %s: %w", ErrNotFound, bucket, err)
	case errors.Is(err, jetstream.ErrObjectNotFound):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Get reads an object, following a link. An object of up to
// directChunks chunks is read whole with a direct get per chunk, its size
// and digest checked; a larger one is streamed and its reader verifies the
// digest at EOF.
func (s *JetStreamStore) Get(ctx context.Context, bucket, key string) (io.ReadCloser, Info, error) {
	obs, err := s.store(ctx, bucket)
	if err != nil {
		return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	oi, err := obs.GetInfo(ctx, key)
	if err != nil {
		return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, s.mapErr(ctx, bucket, err))
	}
	if isLink(oi) {
		if oi, err = s.target(ctx, oi); err != nil {
			return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, err)
		}
	}
	info, err := jsInfo(oi)
	if err != nil {
		return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	// Links are followed; report the name asked for.
	info.Bucket, info.Key = bucket, key
	if oi.Chunks > directChunks {
		return s.stream(ctx, obs, bucket, key, info)
	}
	data, err := s.chunks(ctx, oi)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Replaced or deleted since its meta was read: the client's read
		// finds what is there now.
		return s.stream(ctx, obs, bucket, key, Info{})
	}
	if err != nil {
		return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	return io.NopCloser(bytes.NewReader(data)), info, nil
}

// directChunks is the most chunks Get reads with direct gets, one round
// trip each, instead of an ordered consumer (created and deleted through
// the JetStream API per read): 512 KiB at the default 128 KiB chunks, which
// covers processed PNGs (one chunk) and the demo's fundus JPEGs (three).
// BenchmarkJetStreamGet*: one chunk 156 against 314 µs; three chunks 806
// against 950 µs (medians of three alternated runs), and 336 against 424 µs
// read by 8 goroutines at once; eight chunks 2.55 against 2.05 ms, where
// the streamed read wins.
const directChunks = 4

// stream reads an object with the client, which creates an ordered consumer
// for its chunks: two JetStream API calls and a consumer on the server per
// read, worth it for objects of many chunks only. info is the object's as
// Get read it; empty, it is taken from the read.
func (s *JetStreamStore) stream(ctx context.Context, obs jetstream.ObjectStore, bucket, key string, info Info) (io.ReadCloser, Info, error) {
	res, err := obs.Get(ctx, key)
	if err != nil {
		return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, s.mapErr(ctx, bucket, err))
	}
	if info.ETag == "" && info.VersionID == "" {
		oi, err := res.Info()
		if err == nil {
			info, err = jsInfo(oi)
		}
		if err != nil {
			res.Close()
			return nil, Info{}, fmt.Errorf("get %s/%s: %w", bucket, key, err)
		}
		info.Bucket, info.Key = bucket, key
	}
	return res, info, nil
}

// chunks reads an object of at most directChunks chunks with direct gets of
// its chunk subject ($O.<bucket>.C.<nuid>, ADR-20): the last message for
// one chunk, the next after the previous for several. Its size and digest
// are checked as the client's reader does.
func (s *JetStreamStore) chunks(ctx context.Context, oi *jetstream.ObjectInfo) ([]byte, error) {
	if oi.Chunks == 0 {
		if oi.Size != 0 {
			return nil, fmt.Errorf("object %s/%s: %d bytes in no chunk", oi.Bucket, oi.Name, oi.Size)
		}
		return []byte{}, nil
	}
	st, err := s.objectStream(ctx, oi.Bucket)
	if err != nil {
		return nil, err
	}
	subject := "$O." + oi.Bucket + ".C." + oi.NUID
	var data []byte
	if oi.Chunks == 1 {
		msg, err := st.GetLastMsgForSubject(ctx, subject)
		if err != nil {
			return nil, fmt.Errorf("chunk of %s/%s: %w", oi.Bucket, oi.Name, s.mapErr(ctx, oi.Bucket, err))
		}
		data = msg.Data
	} else {
		data = make([]byte, 0, oi.Size)
		seq := uint64(1)
		for i := range oi.Chunks {
			msg, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
			if err != nil {
				return nil, fmt.Errorf("chunk %d of %s/%s: %w", i, oi.Bucket, oi.Name, s.mapErr(ctx, oi.Bucket, err))
			}
			data = append(data, msg.Data...)
			seq = msg.Sequence + 1
		}
	}
	if uint64(len(data)) != oi.Size {
		return nil, fmt.Errorf("object %s/%s: chunks of %d bytes, meta says %d", oi.Bucket, oi.Name, len(data), oi.Size)
	}
	want, err := jetstream.DecodeObjectDigest(oi.Digest)
	if err != nil {
		return nil, fmt.Errorf("object %s/%s: digest %q: %w", oi.Bucket, oi.Name, oi.Digest, err)
	}
	if sum := sha256.Sum256(data); !bytes.Equal(sum[:], want) {
		return nil, fmt.Errorf("object %s/%s: %w", oi.Bucket, oi.Name, jetstream.ErrDigestMismatch)
	}
	return data, nil
}

// objectStream returns the cached handle of the stream behind bucket
// (OBJ_<bucket>), for direct gets of its chunks.
func (s *JetStreamStore) objectStream(ctx context.Context, bucket string) (jetstream.Stream, error) {
	return cached(&s.mu, s.streams, bucket, func() (jetstream.Stream, error) {
		st, err := s.js.Stream(ctx, "OBJ_"+bucket)
		if err != nil {
			return nil, fmt.Errorf("object stream of %s: %w", bucket, s.mapErr(ctx, bucket, err))
		}
		return st, nil
	})
}

// Put streams r into the bucket in chunks. size is not needed: the object
// store reads until EOF.
func (s *JetStreamStore) Put(ctx context.Context, bucket, key string, r io.Reader, size int64, opts PutOptions) (Info, error) {
	obs, err := s.store(ctx, bucket)
	if err != nil {
		return Info{}, fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	meta := jetstream.ObjectMeta{Name: key, Metadata: lowerKeys(opts.Metadata)}
	if opts.ContentType != "" {
		meta.Headers = nats.Header{}
		meta.Headers.Set(headerContentType, opts.ContentType)
	}
	return s.put(ctx, obs, bucket, key, meta, r, size)
}

func (s *JetStreamStore) put(ctx context.Context, obs jetstream.ObjectStore, bucket, key string, meta jetstream.ObjectMeta, r io.Reader, size int64) (Info, error) {
	if s.cfg.chunkSize > 0 {
		meta.Opts = &jetstream.ObjectMetaOptions{ChunkSize: s.cfg.chunkSize}
	}
	if size >= 0 {
		// Store exactly size bytes like S3 does; a short reader fails the put
		// (the client then purges the chunks sent and keeps the old object).
		r = &exactReader{r: r, left: size}
	}
	oi, err := obs.Put(ctx, meta, r)
	if err != nil {
		return Info{}, fmt.Errorf("put %s/%s: %w", bucket, key, s.mapErr(ctx, bucket, err))
	}
	info, err := jsInfo(oi)
	if err != nil {
		return Info{}, fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return info, nil
}

// Stat reads the object's meta message only.
func (s *JetStreamStore) Stat(ctx context.Context, bucket, key string) (Info, error) {
	obs, err := s.store(ctx, bucket)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s/%s: %w", bucket, key, err)
	}
	oi, err := obs.GetInfo(ctx, key)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s/%s: %w", bucket, key, s.mapErr(ctx, bucket, err))
	}
	var placed time.Time // a link's own time: when it was placed
	if isLink(oi) {
		placed = oi.ModTime
		if oi, err = s.target(ctx, oi); err != nil {
			return Info{}, fmt.Errorf("stat %s/%s: %w", bucket, key, err)
		}
	}
	info, err := jsInfo(oi)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s/%s: %w", bucket, key, err)
	}
	info.Bucket, info.Key = bucket, key
	if !placed.IsZero() {
		info.Modified = placed
	}
	return info, nil
}

func isLink(oi *jetstream.ObjectInfo) bool {
	return oi.Opts != nil && oi.Opts.Link != nil
}

// target is the object a link points at. Links to whole buckets are not
// objects; a link whose target is gone is not found.
func (s *JetStreamStore) target(ctx context.Context, link *jetstream.ObjectInfo) (*jetstream.ObjectInfo, error) {
	l := link.Opts.Link
	if l.Name == "" {
		return nil, fmt.Errorf("%w: %s is a link to bucket %s, not to an object", ErrNotFound, link.Name, l.Bucket)
	}
	obs, err := s.store(ctx, l.Bucket)
	if err != nil {
		return nil, fmt.Errorf("link target %s/%s: %w", l.Bucket, l.Name, err)
	}
	oi, err := obs.GetInfo(ctx, l.Name)
	if err != nil {
		return nil, fmt.Errorf("link target %s/%s: %w", l.Bucket, l.Name, s.mapErr(ctx, l.Bucket, err))
	}
	return oi, nil
}

// Link adds a link dstBucket/dstKey -> srcBucket/srcKey: one small meta
// message, where Copy reads and writes every byte (BENCHMARKS.md, "Pixels
// carried once"). The source must exist; a link to a link points at its
// target. A destination that holds or held an object of its own cannot
// become a link (the object store refuses it): ErrNotLinkable.
func (s *JetStreamStore) Link(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (Info, error) {
	fail := func(err error) (Info, error) {
		return Info{}, fmt.Errorf("link %s/%s to %s/%s: %w", dstBucket, dstKey, srcBucket, srcKey, err)
	}
	src, err := s.store(ctx, srcBucket)
	if err != nil {
		return fail(err)
	}
	dst, err := s.store(ctx, dstBucket)
	if err != nil {
		return fail(err)
	}
	oi, err := src.GetInfo(ctx, srcKey)
	if err != nil {
		return fail(s.mapErr(ctx, srcBucket, err))
	}
	if isLink(oi) {
		if oi, err = s.target(ctx, oi); err != nil {
			return fail(err)
		}
	}
	li, err := dst.AddLink(ctx, dstKey, oi)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectAlreadyExists) {
			err = fmt.Errorf("%w: %w", ErrNotLinkable, err)
		}
		return fail(s.mapErr(ctx, dstBucket, err))
	}
	info, err := jsInfo(oi)
	if err != nil {
		return fail(err)
	}
	info.Bucket, info.Key, info.Modified = dstBucket, dstKey, li.ModTime
	return info, nil
}

// LinkNew publishes the link's meta message ($O.<bucket>.M.<base64url key>,
// as the client's AddLink writes it: ADR-20) on the condition that its
// subject holds no message yet, so that placing a new link costs one
// publish instead of reading the source and the destination first.
func (s *JetStreamStore) LinkNew(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) error {
	fail := func(err error) error {
		return fmt.Errorf("link %s/%s to %s/%s: %w", dstBucket, dstKey, srcBucket, srcKey, err)
	}
	if srcKey == "" || dstKey == "" {
		return fail(jetstream.ErrNameRequired)
	}
	if _, err := s.store(ctx, dstBucket); err != nil {
		return fail(err)
	}
	meta, err := json.Marshal(jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{
			Name: dstKey,
			Opts: &jetstream.ObjectMetaOptions{Link: &jetstream.ObjectLink{Bucket: srcBucket, Name: srcKey}},
		},
		Bucket: dstBucket,
		NUID:   nuid.Next(),
	})
	if err != nil {
		return fail(err)
	}
	msg := nats.NewMsg("$O." + dstBucket + ".M." + base64.URLEncoding.EncodeToString([]byte(dstKey)))
	msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	msg.Data = meta
	_, err = s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(0))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fail(fmt.Errorf("%w: %w", ErrExists, err))
	}
	if err != nil {
		return fail(s.mapErr(ctx, dstBucket, err))
	}
	return nil
}

// List yields the live objects whose key starts with prefix, sorted by key.
// The object store has no server-side prefix filter or order, so the meta
// entries (not the data) of the whole bucket are read and sorted.
func (s *JetStreamStore) List(ctx context.Context, bucket, prefix string) iter.Seq2[Info, error] {
	return func(yield func(Info, error) bool) {
		obs, err := s.store(ctx, bucket)
		if err != nil {
			yield(Info{}, fmt.Errorf("list %s/%s: %w", bucket, prefix, err))
			return
		}
		objs, err := obs.List(ctx) // deleted objects are excluded by default
		if errors.Is(err, jetstream.ErrNoObjectsFound) {
			return
		}
		if err != nil {
			yield(Info{}, fmt.Errorf("list %s/%s: %w", bucket, prefix, s.mapErr(ctx, bucket, err)))
			return
		}
		infos := make([]Info, 0, len(objs))
		var byName map[string]*jetstream.ObjectInfo // for links within the bucket
		for _, oi := range objs {
			if !strings.HasPrefix(oi.Name, prefix) {
				continue
			}
			name := oi.Name
			var placed time.Time
			if isLink(oi) {
				placed = oi.ModTime
				l := oi.Opts.Link
				if byName == nil {
					byName = make(map[string]*jetstream.ObjectInfo, len(objs))
					for _, o := range objs {
						byName[o.Name] = o
					}
				}
				t, ok := byName[l.Name]
				if l.Bucket != bucket || !ok || isLink(t) {
					var err error
					if t, err = s.target(ctx, oi); errors.Is(err, ErrNotFound) {
						continue // a broken link lists as nothing, as it reads
					} else if err != nil {
						if !yield(Info{}, fmt.Errorf("list %s/%s: %w", bucket, name, err)) {
							return
						}
						continue
					}
				}
				oi = t
			}
			info, err := jsInfo(oi)
			if err != nil {
				if !yield(Info{}, fmt.Errorf("list %s/%s: %w", bucket, oi.Name, err)) {
					return
				}
				continue
			}
			info.Bucket, info.Key = bucket, name
			if !placed.IsZero() {
				info.Modified = placed
			}
			infos = append(infos, info)
		}
		slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
		for _, info := range infos {
			if !yield(info, nil) {
				return
			}
		}
	}
}

// Copy streams the source object into the destination, keeping its content
// type and metadata. The object store has no server-side copy.
func (s *JetStreamStore) Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (Info, error) {
	src, err := s.store(ctx, srcBucket)
	if err != nil {
		return Info{}, fmt.Errorf("copy %s/%s to %s/%s: %w", srcBucket, srcKey, dstBucket, dstKey, err)
	}
	dst, err := s.store(ctx, dstBucket)
	if err != nil {
		return Info{}, fmt.Errorf("copy %s/%s to %s/%s: %w", srcBucket, srcKey, dstBucket, dstKey, err)
	}
	res, err := src.Get(ctx, srcKey)
	if err != nil {
		return Info{}, fmt.Errorf("copy %s/%s to %s/%s: %w", srcBucket, srcKey, dstBucket, dstKey, s.mapErr(ctx, srcBucket, err))
	}
	defer res.Close()
	oi, err := res.Info()
	if err != nil {
		return Info{}, fmt.Errorf("copy %s/%s to %s/%s: %w", srcBucket, srcKey, dstBucket, dstKey, err)
	}
	meta := jetstream.ObjectMeta{
		Name:        dstKey,
		Description: oi.Description,
		Headers:     oi.Headers,
		Metadata:    oi.Metadata,
	}
	info, err := s.put(ctx, dst, dstBucket, dstKey, meta, res, int64(oi.Size))
	if err != nil {
		return Info{}, fmt.Errorf("copy %s/%s: %w", srcBucket, srcKey, err)
	}
	return info, nil
}

// exactReader reads exactly left bytes from r: it stops there and turns an
// early EOF into io.ErrUnexpectedEOF.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, fmt.Errorf("%d bytes short of the declared size: %w", e.left, io.ErrUnexpectedEOF)
		}
		return n, io.EOF
	}
	return n, err
}

// jsInfo converts the object store's description of an object.
func jsInfo(oi *jetstream.ObjectInfo) (Info, error) {
	etag, err := digestHex(oi.Digest)
	if err != nil {
		return Info{}, fmt.Errorf("object %s/%s: %w", oi.Bucket, oi.Name, err)
	}
	info := Info{
		Bucket:    oi.Bucket,
		Key:       oi.Name,
		Size:      int64(oi.Size),
		ETag:      etag,
		VersionID: oi.NUID,
		Metadata:  lowerKeys(oi.Metadata),
		Modified:  oi.ModTime,
	}
	if oi.Headers != nil {
		info.ContentType = oi.Headers.Get(headerContentType)
	}
	return info, nil
}

// digestHex turns "SHA-256=<base64url>" into lowercase hex.
func digestHex(digest string) (string, error) {
	if digest == "" {
		return "", nil // links and delete markers carry no digest
	}
	sum, err := jetstream.DecodeObjectDigest(digest)
	if err != nil {
		return "", fmt.Errorf("digest %q: %w", digest, err)
	}
	return hex.EncodeToString(sum), nil
}

// lowerKeys copies m with lower-case keys; empty gives nil, as on S3.
func lowerKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) { // sorted: deterministic on case clashes
		out[strings.ToLower(k)] = m[k]
	}
	return out
}
