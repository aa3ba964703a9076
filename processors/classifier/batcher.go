package classifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"eyeflow/inference"
	"eyeflow/models"
)

// Batch is the outcome of one Batcher.Predict call.
type Batch struct {
	// Probs has one probability vector per image, in Model.Labels order.
	Probs [][]float64
	// Model is the model that produced them. It stays valid while the
	// caller reads Card, Labels and Provider; it may be closed afterwards.
	Card     models.Card
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
// first request for more, and keeps up to the model's ParallelRuns runs going
// at once (one on a GPU; on the CPU as many as the cores take). A run is
// collected only when a runner is free, so batches fill while every runner
// is busy. It is the single place where the model changes: Swap waits for
// the runs in flight and takes effect before the next one, so a run never
// mixes models and no request is lost in a swap.
type Batcher struct {
	// configured is the MaxBatch asked for (0: automatic); size is
	// MaxBatchFor the serving model, written only by the loop (and read
	// by MaxBatch under mu).
	configured int
	size       int
	maxWait    time.Duration

	jobs    chan *job
	swaps   chan swapReq
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once

	// observe, when set, sees every run (for metrics).
	observe func(b Batch, err error)

	// runners holds one token per run in flight; its capacity is the
	// serving model's ParallelRuns. Only the loop sends, replaces it (when
	// idle) and waits on inflight.
	runners  chan struct{}
	inflight sync.WaitGroup

	mu      sync.RWMutex
	current *inference.Model // read by Current; written only by the loop
}

type swapReq struct {
	m   *inference.Model
	old chan *inference.Model
}

// NewBatcher starts a batcher serving m (which may be nil until Swap), in
// runs of at most maxBatch images (0: MaxBatchFor each model).
func NewBatcher(m *inference.Model, maxBatch int, maxWait time.Duration) *Batcher {
	if maxBatch < 0 {
		maxBatch = 0
	}
	if maxWait <= 0 {
		maxWait = 5 * time.Millisecond
	}
	b := &Batcher{
		configured: maxBatch, size: inference.MaxBatchFor(maxBatch, m), maxWait: maxWait,
		jobs:    make(chan *job),
		swaps:   make(chan swapReq),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
		current: m,
	}
	b.runners = make(chan struct{}, runsOf(m))
	go b.loop()
	return b
}

func runsOf(m *inference.Model) int {
	if m == nil {
		return 1
	}
	return max(m.ParallelRuns, 1)
}

// MaxBatch is the largest session run of the model serving now.
func (b *Batcher) MaxBatch() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.size
}

// Current returns the card and provider of the model serving now.
func (b *Batcher) Current() (models.Card, string, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.current == nil {
		return models.Card{}, "", false
	}
	return b.current.Card, b.current.Provider, true
}

// Swap makes m the model of the next run and returns the previous one once
// no run uses it any more; the caller closes it. A nil m is refused: a
// refused model never gets this far, the old one keeps serving.
func (b *Batcher) Swap(m *inference.Model) (*inference.Model, error) {
	if m == nil {
		return nil, errors.New("classifier: swap to a nil model")
	}
	req := swapReq{m: m, old: make(chan *inference.Model, 1)}
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
		if len(img) != inference.ImageBytes {
			return Batch{}, fmt.Errorf("image %d has %d bytes, want %d (224x224 RGB)", i, len(img), inference.ImageBytes)
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
	var pending *job // a job that did not fit in the previous run
	defer func() {
		if pending != nil {
			pending.reply <- jobResult{err: ErrClosed}
		}
		b.inflight.Wait()
		b.mu.Lock()
		b.current.Close()
		b.current = nil
		b.mu.Unlock()
	}()
	for {
		// A free runner first: requests that arrive meanwhile join this run.
		select {
		case b.runners <- struct{}{}:
		case s := <-b.swaps:
			b.swap(s)
			continue
		case <-b.done:
			return
		}
		first := pending
		pending = nil
		if first == nil {
			select {
			case first = <-b.jobs:
			case s := <-b.swaps:
				<-b.runners
				b.swap(s)
				continue
			case <-b.done:
				<-b.runners
				return
			}
		}
		var run []*job
		run, pending = b.collect(first)
		m, tokens, size := b.current, b.runners, b.size // only this goroutine writes them
		b.inflight.Add(1)
		go func() {
			defer func() { <-tokens; b.inflight.Done() }()
			b.run(m, run, size)
		}()
	}
}

// collect gathers the jobs of one run, starting with first: up to maxBatch
// images, waiting at most maxWait for more unless a job asks to flush. A job
// that does not fit is returned as next, for the following run.
func (b *Batcher) collect(first *job) (run []*job, next *job) {
	run = []*job{first}
	n := len(first.images)
	flush := first.flush
	var (
		t     *time.Timer
		timer <-chan time.Time
	)
	if !flush {
		t = time.NewTimer(b.maxWait)
		timer = t.C
		defer t.Stop()
	}
	for n < b.size {
		var j *job
		if flush {
			// Take only what is already waiting.
			select {
			case j = <-b.jobs:
			default:
				return run, nil
			}
		} else {
			select {
			case j = <-b.jobs:
			case <-timer:
				return run, nil
			}
		}
		if n+len(j.images) > b.size {
			return run, j
		}
		run = append(run, j)
		n += len(j.images)
		if j.flush {
			flush = true
		}
	}
	return run, nil
}

// swap waits for the runs in flight, installs the new model and hands the
// old one back; the runner pool takes the new model's size.
func (b *Batcher) swap(s swapReq) {
	b.inflight.Wait()
	b.mu.Lock()
	old := b.current
	b.current = s.m
	b.size = inference.MaxBatchFor(b.configured, s.m)
	b.mu.Unlock()
	b.runners = make(chan struct{}, runsOf(s.m))
	s.old <- old
}

// run executes the jobs in session runs of at most size images (one job
// larger than that is split) and replies to each.
func (b *Batcher) run(m *inference.Model, jobs []*job, size int) {
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
	for start := 0; start < len(images) && err == nil; start += size {
		chunk := images[start:min(start+size, len(images))]
		t0 := time.Now()
		var p [][]float64
		p, err = m.Run(chunk)
		total += time.Since(t0)
		probs = append(probs, p...)
	}
	batch := Batch{Card: m.Card, Labels: m.Labels, Provider: m.Provider, Size: min(len(images), size), InferenceSeconds: total.Seconds()}
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
