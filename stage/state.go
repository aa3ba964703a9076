package stage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KeyValue is a key-value bucket as processors use it: their state (a
// streak, a task's record), and what the deployment shares (the model each
// env serves). Keys are NATS subject tokens ([-/_=.a-zA-Z0-9]); a filter is
// a key pattern with the subject wildcards "*" (one token) and ">" (the
// rest), and "" means every key. The runtime's caller opens the bucket the
// topology declared and hands it over (KeyValueOf), so a processor never
// creates infrastructure and its logic runs against any implementation.
type KeyValue interface {
	// Get returns key's latest value, or ErrKeyNotFound when it has none
	// (never written, or deleted).
	Get(ctx context.Context, key string) (Entry, error)
	// Put writes value and returns its revision.
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	// Create writes value only when key has no value: ErrKeyExists
	// otherwise.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update writes value only when key's latest revision is revision:
	// ErrWrongRevision otherwise (another writer got there first).
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	// Keys returns the keys with a value that match filter, sorted, each
	// once; an empty slice and no error when there are none.
	Keys(ctx context.Context, filter string) ([]string, error)
	// History returns key's values, deletes included, oldest first, as far
	// back as the bucket keeps them; ErrKeyNotFound when there are none.
	History(ctx context.Context, key string) ([]Entry, error)
	// Watch sends the latest entry of every key that matches filter, then
	// a nil entry (the initial values are done), then every change as it
	// is made. The channel is closed when ctx ends (which stops the
	// watch) or the watch fails.
	Watch(ctx context.Context, filter string) (<-chan *Entry, error)
}

// Entry is one revision of a key.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Created  time.Time
	Op       Op
}

// Op is what a revision did to its key.
type Op uint8

const (
	// OpPut gave the key a value (the zero Op).
	OpPut Op = iota
	// OpDelete removed the key's value (a delete or a purge).
	OpDelete
)

// Errors of a KeyValue, for errors.Is.
var (
	ErrKeyNotFound   = errors.New("key not found")
	ErrKeyExists     = errors.New("key exists")
	ErrWrongRevision = errors.New("key was written since the revision read")
)

// KeyValueOf is a JetStream KV bucket as a KeyValue.
func KeyValueOf(kv jetstream.KeyValue) KeyValue { return natsKV{kv} }

type natsKV struct{ kv jetstream.KeyValue }

// pattern is filter as a NATS key pattern.
func pattern(filter string) string {
	if filter == "" {
		return jetstream.AllKeys
	}
	return filter
}

func entryOf(e jetstream.KeyValueEntry) Entry {
	op := OpPut
	if e.Operation() != jetstream.KeyValuePut {
		op = OpDelete
	}
	return Entry{Key: e.Key(), Value: e.Value(), Revision: e.Revision(), Created: e.Created(), Op: op}
}

// fail names the bucket and what was done, and maps the client's errors to
// this package's: callers test with errors.Is and need not know NATS.
func (k natsKV) fail(op, key string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		err = ErrKeyNotFound
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		err = fmt.Errorf("%w: %w", ErrWrongRevision, err)
	case op == "create" && errors.Is(err, jetstream.ErrKeyExists):
		// Only Create: a wrong revision of Update carries the same
		// server error code, and means something else.
		err = fmt.Errorf("%w: %w", ErrKeyExists, err)
	}
	return fmt.Errorf("kv %s: %s %s: %w", k.kv.Bucket(), op, key, err)
}

func (k natsKV) Get(ctx context.Context, key string) (Entry, error) {
	e, err := k.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, k.fail("get", key, err)
	}
	return entryOf(e), nil
}

func (k natsKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := k.kv.Put(ctx, key, value)
	if err != nil {
		return 0, k.fail("put", key, err)
	}
	return rev, nil
}

func (k natsKV) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := k.kv.Create(ctx, key, value)
	if err != nil {
		return 0, k.fail("create", key, err)
	}
	return rev, nil
}

func (k natsKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	rev, err := k.kv.Update(ctx, key, value, revision)
	if err != nil {
		return 0, k.fail("update", key, err)
	}
	return rev, nil
}

func (k natsKV) Keys(ctx context.Context, filter string) ([]string, error) {
	lister, err := k.kv.ListKeysFiltered(ctx, pattern(filter))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return []string{}, nil
		}
		return nil, k.fail("list", pattern(filter), err)
	}
	defer func() { _ = lister.Stop() }()
	keys := []string{}
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	// The lister also ends when ctx does: that list is not the bucket's.
	if err := ctx.Err(); err != nil {
		return nil, k.fail("list", pattern(filter), err)
	}
	// The lister may report a key twice while the bucket is written.
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

func (k natsKV) History(ctx context.Context, key string) ([]Entry, error) {
	hist, err := k.kv.History(ctx, key)
	if err != nil {
		return nil, k.fail("history", key, err)
	}
	out := make([]Entry, len(hist))
	for i, e := range hist {
		out[i] = entryOf(e)
	}
	return out, nil
}

func (k natsKV) Watch(ctx context.Context, filter string) (<-chan *Entry, error) {
	w, err := k.kv.Watch(ctx, pattern(filter))
	if err != nil {
		return nil, k.fail("watch", pattern(filter), err)
	}
	out := make(chan *Entry)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			var next *Entry
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					v := entryOf(e)
					next = &v
				}
			}
			select {
			case out <- next:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
