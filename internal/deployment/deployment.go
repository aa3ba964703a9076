// Package deployment records, once in the cluster, what every process of a
// deployment must agree on, and checks a process against it: the object
// store the stages use (written by `eyeflow buckets init` and `eyeflow up`,
// checked by every command that manages models, splits or uploads and by
// every stage), what each env's classifier serves or refused, and why
// (written by the classifier, shown by `eyeflow status`), and the patient
// pseudonym rule with its secret key (created at the deployment's first
// start by `eyeflow up` or `eyeflow buckets init`, read by resize and the
// splitter). All live in the KV bucket bus.KVDeployment.
package deployment

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"eyeflow/bus"
	"eyeflow/objstore"
	"eyeflow/pipeline"

	"github.com/nats-io/nats.go/jetstream"
)

// KV is the bucket of the records.
const KV = bus.KVDeployment

// StoreKey is the key of the object-store record.
const StoreKey = "objstore"

// ServingKeyPrefix starts the keys of the serving records: "serving.<env>"
// (declared in the catalogue, which grants them to the classifier).
const ServingKeyPrefix = pipeline.ServingKeyPrefix

// ServingKey is env's serving record's key.
func ServingKey(env string) string { return ServingKeyPrefix + env }

// Store kinds.
const (
	KindJetStream = "jetstream"
	KindS3        = "s3"
)

// MarkerBucket and MarkerKey hold an S3 store's marker: its id, written
// once, and recorded with the store. A command reaching the store by
// another URL (minio:9000 inside compose, localhost:9000 outside) is still
// recognised, and a different server is not. Registry listings skip the
// key (it is no model card).
const (
	MarkerBucket = objstore.BucketModels
	MarkerKey    = ".eyeflow/deployment.json"
)

// StoreRecord is the deployment's object store.
type StoreRecord struct {
	Kind string `json:"kind"`
	// Endpoint is the S3 URL as the recording command reached it.
	Endpoint string `json:"endpoint,omitempty"`
	// ID is the S3 store's id, from its marker object.
	ID         string    `json:"id,omitempty"`
	RecordedBy string    `json:"recorded_by"`
	Time       time.Time `json:"time"`
}

// Describe names the store for people.
func (r StoreRecord) Describe() string {
	if r.Kind == KindS3 {
		return "the S3 store at " + redact(r.Endpoint)
	}
	return "the JetStream object store of the NATS cluster"
}

// Target is the store a process is about to use.
type Target struct {
	Store objstore.Store
	// Endpoint is the S3 URL; empty for the JetStream object store.
	Endpoint string
}

func (t Target) kind() string {
	if t.Endpoint == "" {
		return KindJetStream
	}
	return KindS3
}

// Describe names the target for people.
func (t Target) Describe() string {
	if t.Endpoint == "" {
		return "the JetStream object store"
	}
	return "the S3 store at " + redact(t.Endpoint)
}

// ErrWrongStore is the error of a process about to use another object
// store than the deployment's.
var ErrWrongStore = errors.New("not the deployment's object store")

// ReadStore returns the recorded store; ok is false when nothing (not even
// the bucket) is recorded yet.
func ReadStore(ctx context.Context, js jetstream.JetStream) (rec StoreRecord, ok bool, err error) {
	kv, err := js.KeyValue(ctx, KV)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("kv %s: %w", KV, err)
	}
	return readStore(ctx, kv)
}

func readStore(ctx context.Context, kv jetstream.KeyValue) (rec StoreRecord, ok bool, err error) {
	e, err := kv.Get(ctx, StoreKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("kv %s key %s: %w", KV, StoreKey, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, false, fmt.Errorf("kv %s key %s: %w", KV, StoreKey, err)
	}
	return rec, true, nil
}

// Check refuses, with the reason and the remedy, a target that is not the
// recorded store. Nothing recorded passes (a deployment before `eyeflow
// buckets init`); rec is the record checked against, when there is one.
func Check(ctx context.Context, js jetstream.JetStream, t Target) (rec StoreRecord, recorded bool, err error) {
	rec, ok, err := ReadStore(ctx, js)
	if err != nil || !ok {
		return rec, false, err
	}
	return rec, true, check(ctx, rec, t)
}

func check(ctx context.Context, rec StoreRecord, t Target) error {
	switch {
	case rec.Kind == KindS3 && t.kind() == KindJetStream:
		return fmt.Errorf("%w: the stages use %s (recorded by %s); this command would use the JetStream object store: "+
			"pass --s3 (or set $EYEFLOW_S3) and the S3 credentials", ErrWrongStore, rec.Describe(), rec.RecordedBy)
	case rec.Kind == KindJetStream && t.kind() == KindS3:
		return fmt.Errorf("%w: the stages use the JetStream object store of this NATS cluster (recorded by %s); "+
			"this command would use %s: drop --s3 (and $EYEFLOW_S3)", ErrWrongStore, rec.RecordedBy, t.Describe())
	case rec.Kind == KindJetStream:
		return nil // the same cluster holds it
	}
	id, err := readMarker(ctx, t.Store)
	switch {
	case errors.Is(err, objstore.ErrNotFound):
		return fmt.Errorf("%w: %s has no eyeflow deployment marker (%s/%s); the stages use %s (recorded by %s): "+
			"point --s3 at that store", ErrWrongStore, t.Describe(), MarkerBucket, MarkerKey, rec.Describe(), rec.RecordedBy)
	case err != nil:
		return fmt.Errorf("check the object store: %w", err)
	case id != rec.ID:
		return fmt.Errorf("%w: %s is another store (its marker says %s, the deployment's store is %s); the stages use %s: "+
			"point --s3 at that store", ErrWrongStore, t.Describe(), id, rec.ID, rec.Describe())
	}
	return nil
}

type marker struct {
	ID string `json:"id"`
}

func readMarker(ctx context.Context, store objstore.Store) (string, error) {
	rc, _, err := store.Get(ctx, MarkerBucket, MarkerKey)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 4096))
	if err != nil {
		return "", err
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return "", fmt.Errorf("marker %s/%s: %w", MarkerBucket, MarkerKey, err)
	}
	return m.ID, nil
}

// Record makes t the deployment's object store, or confirms it is: the
// first call writes the record (and, for S3, the marker into the store);
// later ones check against it. A different store is refused unless
// replace, which records t instead. It returns what it did, for the log.
func Record(ctx context.Context, kv jetstream.KeyValue, t Target, by string, replace bool) (string, error) {
	rec, ok, err := readStore(ctx, kv)
	if err != nil {
		return "", err
	}
	if ok {
		err := check(ctx, rec, t)
		if err == nil {
			return "the deployment's object store is " + rec.Describe() + " (recorded by " + rec.RecordedBy + ")", nil
		}
		if !errors.Is(err, ErrWrongStore) || !replace {
			if errors.Is(err, ErrWrongStore) {
				err = fmt.Errorf("%w (--replace-store makes %s the deployment's store)", err, t.Describe())
			}
			return "", err
		}
	}
	next := StoreRecord{Kind: t.kind(), Endpoint: t.Endpoint, RecordedBy: by, Time: time.Now().UTC()}
	if next.Kind == KindS3 {
		if next.ID, err = markStore(ctx, t.Store); err != nil {
			return "", err
		}
	}
	b, err := json.Marshal(next)
	if err != nil {
		return "", err
	}
	if _, err := kv.Put(ctx, StoreKey, b); err != nil {
		return "", fmt.Errorf("kv %s: record the object store: %w", KV, err)
	}
	if ok {
		return "the deployment's object store is now " + next.Describe() + ", replacing " + rec.Describe(), nil
	}
	return "recorded " + next.Describe() + " as the deployment's object store", nil
}

// markStore returns the S3 store's id: its marker's, or a new one written
// into a new marker. The id names the store, not a deployment: two
// clusters recording the same store agree on it.
func markStore(ctx context.Context, store objstore.Store) (string, error) {
	id, err := readMarker(ctx, store)
	if err == nil && id != "" {
		return id, nil
	}
	if err != nil && !errors.Is(err, objstore.ErrNotFound) {
		return "", fmt.Errorf("read the store's marker: %w", err)
	}
	if id, err = newID(); err != nil {
		return "", err
	}
	b, _ := json.Marshal(marker{ID: id})
	if err := store.EnsureBucket(ctx, MarkerBucket); err != nil {
		return "", err
	}
	if _, err := store.Put(ctx, MarkerBucket, MarkerKey, bytes.NewReader(b), int64(len(b)), objstore.PutOptions{ContentType: "application/json"}); err != nil {
		return "", fmt.Errorf("write the store's marker: %w", err)
	}
	return id, nil
}

func newID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Serving states.
const (
	StateServing = "serving"
	StateRefused = "refused"
)

// Serving is what an env's classifier did with the model promoted to it.
type Serving struct {
	Env     string `json:"env"`
	Name    string `json:"name"`
	Version string `json:"version"`
	State   string `json:"state"`
	// Reason is why a refused model was refused.
	Reason string `json:"reason,omitempty"`
	// Serves is what the env serves instead after a refusal ("" when nothing).
	Serves string    `json:"serves,omitempty"`
	Time   time.Time `json:"time"`
}

// PutServing records what env's classifier did.
func PutServing(ctx context.Context, kv jetstream.KeyValue, s Serving) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, ServingKey(s.Env), b); err != nil {
		return fmt.Errorf("kv %s key %s: %w", KV, ServingKey(s.Env), err)
	}
	return nil
}

// ReadServing returns env's serving record; ok is false when there is none.
func ReadServing(ctx context.Context, kv jetstream.KeyValue, env string) (s Serving, ok bool, err error) {
	e, err := kv.Get(ctx, ServingKey(env))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("kv %s key %s: %w", KV, ServingKey(env), err)
	}
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return s, false, fmt.Errorf("kv %s key %s: %w", KV, ServingKey(env), err)
	}
	return s, true, nil
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}
