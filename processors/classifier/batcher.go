package classifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Batch is the outcome of one Batcher.Predict call.
type Batch struct {
	// Probs has one probability vector per image, in Model.Labels order.
	Probs [][]float64
	// Model is the model that produced them. It stays valid while the
	// caller reads Card, Labels and Provider; it may be closed afterwards.
	Card     Card
	Labels   []string
	Provider string
	// Size is the number of images in the session run (requests of several
	// callers are merged), InferenceSeconds its duration.
	Size             int
	InferenceSeconds float64
}

// ErrNoModel is returned by Predict while a Batcher has no model.
var ErrNoModel = errors.New("classifier: no model loaded")

// ErrClosed is returned by Predict after Close.
var ErrClosed = errors.New("classifier: batcher closed")

type job struct {
	ctx    context.Context
	images [][]byte
	// flush: run without waiting for more requests (the caller already
	// batched, e.g. the JetStream stage).
	flush bool
	reply chan jobResult
}

type jobResult struct {
	b   Batch
	err error
}

// Batcher runs one model for one env: it merges concurrent Predict calls into
// session runs of at most MaxBatch images, waiting at most MaxWait after the
// first request for more, and runs them one at a time (ONNX Runtime already
// uses every core inside a run). It is the single place where the model
// changes: Swap takes effect between two runs, so a run never mixes models
// and no request is lost in a swap.
type Batcher struct {
	maxBatch int
	maxWait  time.Duration

	jobs    chan *job
	swaps   chan swapReq
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once

	// observe, when set, sees every run (for metrics).
	observe func(b Batch, err error)

	mu      sync.RWMutex
	current *Model // read by Current; written only by the loop
}

type swapReq struct {
	m   *Model
	old chan *Model
}

// NewBatcher starts a batcher serving m (which may be nil until Swap).
func NewBatcher(m *Model, maxBatch int, maxWait time.Duration) *Batcher {
	if maxBatch < 1 {
		maxBatch = 1
	}
	if maxWait <= 0 {
		maxWait = 5 * time.Millisecond
	}
	b := &Batcher{
		maxBatch: maxBatch, maxWait: maxWait,
		jobs:    make(chan *job),
		swaps:   make(chan swapReq),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		current: m,
	}
	go b.loop()
	return b
}

// MaxBatch is the largest session run.
func (b *Batcher) MaxBatch() int { return b.maxBatch }

// Current returns the card and provider of the model serving now.
func (b *Batcher) Current() (Card, string, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.current == nil {
		return Card{}, "", false
	}
	return b.current.Card, b.current.Provider, true
}

// Swap makes m the model of the next run and returns the previous one once
// no run uses it any more; the caller closes it. A nil m is refused: a
// refused model never gets this far, the old one keeps serving.
func (b *Batcher) Swap(m *Model) (*Model, error) {
	if m == nil {
		return nil, errors.New("classifier: swap to a nil model")
	}
	req := swapReq{m: m, old: make(chan *Model, 1)}
	select {
	case b.swaps <- req:
		return <-req.old, nil
	case <-b.done:
		return nil, ErrClosed
	}
}

// Predict classifies images (each ImageBytes of 224x224 packed RGB). With
// flush, the images run as soon as the batcher is free (merged only with
// requests already waiting); otherwise the batcher waits up to MaxWait for
// more requests to fill the run.
func (b *Batcher) Predict(ctx context.Context, images [][]byte, flush bool) (Batch, error) {
	if len(images) == 0 {
		return Batch{}, nil
	}
	for i, img := range images {
		if len(img) != ImageBytes {
			return Batch{}, fmt.Errorf("image %d has %d bytes, want %d (224x224 RGB)", i, len(img), ImageBytes)
		}
	}
	j := &job{ctx: ctx, images: images, flush: flush, reply: make(chan jobResult, 1)}
	select {
	case b.jobs <- j:
	case <-ctx.Done():
		return Batch{}, ctx.Err()
	case <-b.done:
		return Batch{}, ErrClosed
	}
	select {
	case r := <-j.reply:
		return r.b, r.err
	case <-ctx.Done():
		// The run may still happen; its reply is dropped (buffered chan).
		return Batch{}, ctx.Err()
	}
}

// Close stops the loop after the current run and closes the model.
func (b *Batcher) Close() {
	b.once.Do(func() { close(b.done) })
	<-b.stopped
}

func (b *Batcher) loop() {
	defer close(b.stopped)
	defer func() {
		b.mu.Lock()
		b.current.Close()
		b.current = nil
		b.mu.Unlock()
	}()
	var pending *job // a job that did not fit in the previous run
	for {
		var first *job
		if pending != nil {
			first, pending = pending, nil
		} else {
			select {
			case first = <-b.jobs:
			case s := <-b.swaps:
				b.swap(s)
				continue
			case <-b.done:
				return
			}
		}
		run := []*job{first}
		n := len(first.images)
		flush := first.flush
		var (
			t     *time.Timer
			timer <-chan time.Time
		)
		if !flush {
			t = time.NewTimer(b.maxWait)
			timer = t.C
		}
	collect:
		for n < b.maxBatch {
			var j *job
			if flush {
				// Take only what is already waiting.
				select {
				case j = <-b.jobs:
				default:
					break collect
				}
			} else {
				select {
				case j = <-b.jobs:
				case <-timer:
					break collect
				}
			}
			if n+len(j.images) > b.maxBatch {
				pending = j
				break
			}
			run = append(run, j)
			n += len(j.images)
			if j.flush {
				flush = true
			}
		}
		if t != nil {
			t.Stop()
		}
		b.run(run)
	}
}

func (b *Batcher) swap(s swapReq) {
	b.mu.Lock()
	old := b.current
	b.current = s.m
	b.mu.Unlock()
	s.old <- old
}

// run executes the jobs in session runs of at most maxBatch images (one job
// larger than that is split) and replies to each.
func (b *Batcher) run(jobs []*job) {
	// Requests whose caller has gone are not worth the compute.
	live := jobs[:0]
	for _, j := range jobs {
		if j.ctx.Err() != nil {
			j.reply <- jobResult{err: j.ctx.Err()}
			continue
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	m := b.current // only this goroutine writes it
	if m == nil {
		for _, j := range live {
			j.reply <- jobResult{err: ErrNoModel}
		}
		return
	}
	var images [][]byte
	for _, j := range live {
		images = append(images, j.images...)
	}
	probs := make([][]float64, 0, len(images))
	var total time.Duration
	var err error
	for start := 0; start < len(images) && err == nil; start += b.maxBatch {
		chunk := images[start:min(start+b.maxBatch, len(images))]
		t0 := time.Now()
		var p [][]float64
		p, err = m.Run(chunk)
		total += time.Since(t0)
		probs = append(probs, p...)
	}
	batch := Batch{Card: m.Card, Labels: m.Labels, Provider: m.Provider, Size: min(len(images), b.maxBatch), InferenceSeconds: total.Seconds()}
	if b.observe != nil {
		b.observe(batch, err)
	}
	off := 0
	for _, j := range live {
		if err != nil {
			j.reply <- jobResult{err: fmt.Errorf("model %s: %w", m.Ref(), err)}
			continue
		}
		r := batch
		r.Probs = probs[off : off+len(j.images)]
		off += len(j.images)
		j.reply <- jobResult{b: r}
	}
}
