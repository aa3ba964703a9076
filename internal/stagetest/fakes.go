package stagetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"eyeflow/stage"
)

// KeyValue is an in-memory stage.KeyValue for tests of a processor's
// logic: revisions, compare-and-set and the package's errors behave as the
// JetStream bucket's do (stage's tests run one contract over both). It
// keeps every revision (unbounded history).
type KeyValue struct {
	mu       sync.Mutex
	rev      uint64
	entries  map[string][]stage.Entry // by key, oldest first
	watchers []*kvWatcher
	// BeforeWrite, when set, is called (without the lock held) before
	// every Put, Create and Update with the key: a test slips another
	// writer in between a read and a write there.
	BeforeWrite func(key string)
}

// NewKeyValue returns an empty bucket.
func NewKeyValue() *KeyValue { return &KeyValue{entries: map[string][]stage.Entry{}} }

var _ stage.KeyValue = (*KeyValue)(nil)

func (k *KeyValue) latest(key string) (stage.Entry, bool) {
	h := k.entries[key]
	if len(h) == 0 {
		return stage.Entry{}, false
	}
	return h[len(h)-1], true
}

func (k *KeyValue) Get(_ context.Context, key string) (stage.Entry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.latest(key)
	if !ok || e.Op != stage.OpPut {
		return stage.Entry{}, fmt.Errorf("get %s: %w", key, stage.ErrKeyNotFound)
	}
	return e, nil
}

// write stores a revision when check allows it.
func (k *KeyValue) write(key string, value []byte, op stage.Op, check func(latest stage.Entry, ok bool) error) (uint64, error) {
	if !validKey(key) {
		return 0, fmt.Errorf("key %q: not a valid key", key)
	}
	if k.BeforeWrite != nil {
		k.BeforeWrite(key)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if check != nil {
		e, ok := k.latest(key)
		if err := check(e, ok); err != nil {
			return 0, err
		}
	}
	k.rev++
	e := stage.Entry{Key: key, Value: slices.Clone(value), Revision: k.rev, Created: time.Now().UTC(), Op: op}
	k.entries[key] = append(k.entries[key], e)
	for _, w := range k.watchers {
		if match(w.filter, key) {
			w.push(&e)
		}
	}
	return e.Revision, nil
}

func (k *KeyValue) Put(_ context.Context, key string, value []byte) (uint64, error) {
	return k.write(key, value, stage.OpPut, nil)
}

func (k *KeyValue) Create(_ context.Context, key string, value []byte) (uint64, error) {
	return k.write(key, value, stage.OpPut, func(e stage.Entry, ok bool) error {
		if ok && e.Op == stage.OpPut {
			return fmt.Errorf("create %s: %w", key, stage.ErrKeyExists)
		}
		return nil
	})
}

func (k *KeyValue) Update(_ context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return k.write(key, value, stage.OpPut, func(e stage.Entry, ok bool) error {
		if (ok && e.Revision != revision) || (!ok && revision != 0) {
			return fmt.Errorf("update %s at revision %d: %w", key, revision, stage.ErrWrongRevision)
		}
		return nil
	})
}

// Delete removes key's value (a delete revision), as a test's other
// writer or an operator would.
func (k *KeyValue) Delete(key string) {
	if _, err := k.write(key, nil, stage.OpDelete, nil); err != nil {
		panic(err)
	}
}

func (k *KeyValue) Keys(_ context.Context, filter string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := []string{}
	for key := range k.entries {
		if e, _ := k.latest(key); e.Op == stage.OpPut && match(filter, key) {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

func (k *KeyValue) History(_ context.Context, key string) ([]stage.Entry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.entries[key]) == 0 {
		return nil, fmt.Errorf("history %s: %w", key, stage.ErrKeyNotFound)
	}
	return slices.Clone(k.entries[key]), nil
}

func (k *KeyValue) Watch(ctx context.Context, filter string) (<-chan *stage.Entry, error) {
	w := &kvWatcher{filter: filter, wake: make(chan struct{}, 1)}
	k.mu.Lock()
	var initial []stage.Entry
	for key := range k.entries {
		if match(filter, key) {
			e, _ := k.latest(key)
			initial = append(initial, e)
		}
	}
	slices.SortFunc(initial, func(a, b stage.Entry) int { return cmp.Compare(a.Revision, b.Revision) })
	for i := range initial {
		w.queue = append(w.queue, &initial[i])
	}
	w.queue = append(w.queue, nil) // the initial values are done
	k.watchers = append(k.watchers, w)
	k.mu.Unlock()

	out := make(chan *stage.Entry)
	go func() {
		defer close(out)
		defer func() {
			k.mu.Lock()
			k.watchers = slices.DeleteFunc(k.watchers, func(x *kvWatcher) bool { return x == w })
			k.mu.Unlock()
		}()
		for {
			e, ok := w.pop()
			if !ok {
				select {
				case <-w.wake:
					continue
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// kvWatcher queues a watch's entries without bound, so a write never
// waits for a slow reader (nor deadlocks on one).
type kvWatcher struct {
	filter string
	mu     sync.Mutex
	queue  []*stage.Entry
	wake   chan struct{}
}

func (w *kvWatcher) push(e *stage.Entry) {
	w.mu.Lock()
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *kvWatcher) pop() (*stage.Entry, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return nil, false
	}
	e := w.queue[0]
	w.queue = w.queue[1:]
	return e, true
}

// validKey is the JetStream KV key rule: [-/_=.a-zA-Z0-9], no empty
// token, not starting or ending with a dot.
func validKey(key string) bool {
	if key == "" || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, "..") {
		return false
	}
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-/_=.", c)) {
			return false
		}
	}
	return true
}

// match reports whether key matches the NATS pattern filter ("" is every
// key): "*" is one token, a final ">" one or more.
func match(filter, key string) bool {
	if filter == "" || filter == ">" {
		return true
	}
	ft, kt := strings.Split(filter, "."), strings.Split(key, ".")
	for i, f := range ft {
		if f == ">" && i == len(ft)-1 {
			return len(kt) > i
		}
		if i >= len(kt) || (f != "*" && f != kt[i]) {
			return false
		}
	}
	return len(ft) == len(kt)
}

// Publisher is an in-memory stage.Publisher: it records what was
// published, and drops a repeated MsgID as the stream's duplicate window
// does.
type Publisher struct {
	mu   sync.Mutex
	msgs []stage.Message
	ids  map[string]bool
	err  error
}

// SetErr makes every Publish fail with err, storing nothing, until it is
// set back to nil: the stream out of reach.
func (p *Publisher) SetErr(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

var _ stage.Publisher = (*Publisher)(nil)

func (p *Publisher) Publish(_ context.Context, m stage.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.MsgID == "" {
		return fmt.Errorf("publish %s: %w", m.Subject, stage.ErrNoMsgID)
	}
	if p.err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, p.err)
	}
	if p.ids == nil {
		p.ids = map[string]bool{}
	}
	if !p.ids[m.MsgID] {
		p.ids[m.MsgID] = true
		m.Data = slices.Clone(m.Data)
		p.msgs = append(p.msgs, m)
	}
	return nil
}

// Messages returns what was stored, in order.
func (p *Publisher) Messages() []stage.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.msgs)
}
