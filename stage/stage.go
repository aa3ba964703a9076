package stage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"eyeflow/pipeline"
	"eyeflow/schemas"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Output is one event a processor emits for an input.
type Output struct {
	Subject string
	// Event is marshalled to JSON; a []byte is published as is.
	Event any
	// Key tells apart several outputs of one input on the same subject; it
	// is part of the deterministic Nats-Msg-Id.
	Key string
}

// Handler processes one input.
type Handler[In any] func(ctx context.Context, in In) ([]Output, error)

// Result is the outcome for one input of a batch.
type Result struct {
	Outputs []Output
	Err     error
}

// BatchHandler processes a batch and returns one Result per input, in order.
type BatchHandler[In any] func(ctx context.Context, in []In) []Result

// Meta describes the delivery of the input being processed. Processors that
// care about stream order or redeliveries read it with MetaFrom.
type Meta struct {
	Stage      string
	Subject    string
	Stream     string
	Sequence   uint64
	Deliveries uint64
	Stored     time.Time
	// Identity is the input's identity, the root of its outputs' Msg-Ids.
	Identity string
}

type metaKey struct{}

// MetaFrom returns the delivery metadata of the input a Handler was called for.
func MetaFrom(ctx context.Context) (Meta, bool) {
	m, ok := ctx.Value(metaKey{}).(Meta)
	return m, ok
}

// WithMeta is ctx carrying m, as the runtime passes it to a Handler: for
// calling a handler outside the runtime (its tests).
func WithMeta(ctx context.Context, m Meta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// Processor configures one stage. Exactly one of Handle and HandleBatch is set.
type Processor[In any] struct {
	// Stage is the catalogue's name of the stage (package pipeline).
	Stage string
	// Input names which of the stage's catalogue inputs the processor
	// reads ("" for the main one); Env, for an input declared per env,
	// which env's consumer. The runtime binds the stream and consumer from
	// the catalogue (pipeline.Bind).
	Input, Env string
	// Stream and Consumer are set only by the runtime's own tests, which
	// run on consumers of their own; a processor leaves them empty.
	Stream   string
	Consumer string
	// Decode turns a payload into the input type; an error dead-letters the
	// message as bad input.
	Decode func([]byte) (In, error)
	// Identity names the input for its outputs' Msg-Ids. When nil, the
	// input's own Nats-Msg-Id is used, else stream and sequence.
	Identity func(In) string
	// ImageID, when set, adds the image id to log lines.
	ImageID     func(In) string
	Handle      Handler[In]
	HandleBatch BatchHandler[In]
	// MaxBatch and MaxWait bound a batch: up to MaxBatch inputs, waiting at
	// most MaxWait after the first, or at most FillWait while the server
	// reports messages pending for the consumer: under a backlog a batch
	// fills rather than leaving with what arrived within MaxWait.
	MaxBatch int
	MaxWait  time.Duration
	// FillWait bounds the wait for pending messages (default
	// DefaultFillWait, never below MaxWait).
	FillWait time.Duration
	// Concurrency is the number of inputs (or batches) processed at once.
	Concurrency int
	// RetryBase is the first retry delay of a transient failure; it doubles
	// per delivery up to RetryMax.
	RetryBase, RetryMax time.Duration
	// ShutdownTimeout bounds how long in-flight work may finish after the
	// context is cancelled.
	ShutdownTimeout time.Duration
	Logger          zerolog.Logger
	Metrics         *Metrics

	// crashAfterPublish, in tests, abandons a message after its outputs are
	// published and before its ack, as a process killed there would.
	crashAfterPublish func(Meta) bool
}

// bind takes the stream and consumer from the catalogue, unless a test
// named its own.
func (p *Processor[In]) bind() error {
	if p.Stream != "" || p.Consumer != "" {
		if p.Input != "" || p.Env != "" {
			return errors.New("a processor names its input or its stream and consumer, not both")
		}
		return nil
	}
	b, err := pipeline.Bind(p.Stage, p.Input, p.Env)
	if err != nil {
		return err
	}
	p.Stream, p.Consumer = b.Stream, b.Consumer
	return nil
}

func (p *Processor[In]) validate() error {
	var errs []error
	if p.Stage == "" {
		errs = append(errs, errors.New("stage is required"))
	} else if err := p.bind(); err != nil {
		errs = append(errs, err)
	}
	if p.Decode == nil {
		errs = append(errs, errors.New("decode is required"))
	}
	if (p.Handle == nil) == (p.HandleBatch == nil) {
		errs = append(errs, errors.New("exactly one of Handle and HandleBatch is required"))
	}
	if p.Metrics == nil {
		errs = append(errs, errors.New("metrics are required"))
	}
	return errors.Join(errs...)
}

func (p *Processor[In]) defaults() {
	if p.Concurrency < 1 {
		p.Concurrency = 1
	}
	if p.MaxBatch < 1 {
		p.MaxBatch = 1
	}
	if p.MaxWait <= 0 {
		p.MaxWait = 5 * time.Millisecond
	}
	if p.FillWait <= 0 {
		p.FillWait = DefaultFillWait
	}
	p.FillWait = max(p.FillWait, p.MaxWait)
	if p.RetryBase <= 0 {
		p.RetryBase = time.Second
	}
	if p.RetryMax <= 0 {
		p.RetryMax = time.Minute
	}
	if p.ShutdownTimeout <= 0 {
		p.ShutdownTimeout = 30 * time.Second
	}
}

// Run consumes until ctx is cancelled, then stops fetching, lets in-flight
// work finish (up to ShutdownTimeout), returns unstarted messages to the
// server, and returns nil. It returns an error only when it cannot start.
func Run[In any](ctx context.Context, js jetstream.JetStream, p Processor[In]) error {
	if err := p.validate(); err != nil {
		return fmt.Errorf("stage %s: %w", p.Stage, err)
	}
	p.defaults()
	cons, err := js.Consumer(ctx, p.Stream, p.Consumer)
	if err != nil && ctx.Err() != nil {
		return nil // shut down before it started
	}
	if err != nil {
		return fmt.Errorf("stage %s: consumer %s on %s: %w", p.Stage, p.Consumer, p.Stream, err)
	}
	info := cons.CachedInfo()
	r := &runner[In]{
		p:          p,
		js:         js,
		log:        p.Logger.With().Str("stage", p.Stage).Logger(),
		maxDeliver: info.Config.MaxDeliver,
		ackWait:    info.Config.AckWait,
	}
	// Prefetch only what the workers can take now: the rest stays on the
	// server, where another instance can have it.
	prefetch := p.Concurrency * p.MaxBatch
	it, err := cons.Messages(jetstream.PullMaxMessages(prefetch))
	if err != nil {
		return fmt.Errorf("stage %s: consume: %w", p.Stage, err)
	}

	// Work runs on a context that survives the shutdown signal, so in-flight
	// messages are published and acknowledged rather than abandoned.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopHard := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.ShutdownTimeout, cancelWork)
		context.AfterFunc(workCtx, func() { t.Stop() })
	})
	defer stopHard()

	ch := make(chan jetstream.Msg)
	var pump sync.WaitGroup
	pump.Go(func() {
		defer close(ch)
		for {
			// No context here: on shutdown the iterator is drained, so
			// messages already prefetched still come out and are handed
			// back (NAK) instead of waiting out their AckWait.
			m, err := it.Next()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				r.log.Warn().Err(err).Msg("fetch")
				continue
			}
			select {
			case ch <- m:
			case <-ctx.Done():
				r.release(m)
			}
		}
	})
	go r.watchConsumer(ctx, cons)

	var workers sync.WaitGroup
	var forming sync.Mutex // one batch takes messages at a time
	for range p.Concurrency {
		workers.Go(func() {
			if p.HandleBatch != nil {
				r.batchLoop(workCtx, ch, &forming)
				return
			}
			for m := range ch {
				r.process(workCtx, []jetstream.Msg{m})
			}
		})
	}
	r.log.Info().Str("consumer", p.Consumer).Int("concurrency", p.Concurrency).Int("max_batch", p.MaxBatch).Msg("stage started")
	<-ctx.Done()
	it.Drain()
	pump.Wait()
	workers.Wait()
	r.log.Info().Msg("stage stopped")
	return nil
}

// Runner runs a processor's stage until ctx ends, as Run does: what a
// processor that starts its own stages (the classifier, one per env once
// its model is loaded) is given instead of the transport.
type Runner[In any] func(ctx context.Context, p Processor[In]) error

// RunnerOf runs stages on a JetStream context.
func RunnerOf[In any](js jetstream.JetStream) Runner[In] {
	return func(ctx context.Context, p Processor[In]) error { return Run(ctx, js, p) }
}

type runner[In any] struct {
	p          Processor[In]
	js         jetstream.JetStream
	log        zerolog.Logger
	maxDeliver int
	ackWait    time.Duration
}

// DefaultFillWait is how long a batch waits at most for messages the server
// reports pending: enough for a pull of MaxBatch small messages on a loaded
// machine, short against the seconds a backlog takes to drain.
const DefaultFillWait = 250 * time.Millisecond

// batchLoop takes the first available message, then waits for more, up to
// MaxBatch: at most MaxWait after the first, or, while the messages received
// say that more are pending on the server (their NumPending), at most
// FillWait after the first for as many as fill the batch. A lone message
// leaves after MaxWait; a backlog leaves in full batches. The workers form
// their batches one at a time (forming), and process them side by side: a
// batch waiting for the messages the server reported must be the one that
// receives them, not share them with idle workers that each wait out
// FillWait with a part.
func (r *runner[In]) batchLoop(ctx context.Context, ch <-chan jetstream.Msg, forming *sync.Mutex) {
	for {
		forming.Lock()
		batch, open := r.collect(ch)
		forming.Unlock()
		if len(batch) > 0 {
			r.process(ctx, batch)
		}
		if !open {
			return
		}
	}
}

// collect forms one batch as batchLoop says; open is false once ch is
// closed.
func (r *runner[In]) collect(ch <-chan jetstream.Msg) (batch []jetstream.Msg, open bool) {
	first, ok := <-ch
	if !ok {
		return nil, false
	}
	start := time.Now()
	batch = []jetstream.Msg{first}
	deadline := start.Add(r.p.MaxWait)
	if r.backlog(first, len(batch)) {
		deadline = start.Add(r.p.FillWait)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for len(batch) < r.p.MaxBatch {
		select {
		case m, ok := <-ch:
			if !ok {
				return batch, false
			}
			batch = append(batch, m)
			// The newest message's view of the backlog decides.
			d := start.Add(r.p.MaxWait)
			if r.backlog(m, len(batch)) {
				d = start.Add(r.p.FillWait)
			}
			if !d.Equal(deadline) {
				deadline = d
				timer.Reset(time.Until(deadline))
			}
		case <-timer.C:
			return batch, true
		}
	}
	return batch, true
}

// backlog reports whether the server had messages pending for the consumer
// when m was delivered, beyond the have already in the batch: more are on
// their way (the pull requests up to Concurrency x MaxBatch at a time).
// The server's count trails messages stored moments ago, so under load a
// batch may leave early with a part, never wait for messages that are not
// there.
func (r *runner[In]) backlog(m jetstream.Msg, have int) bool {
	if have >= r.p.MaxBatch {
		return false
	}
	md, err := m.Metadata()
	return err == nil && md.NumPending > 0
}

// release hands an unstarted message back for immediate redelivery.
func (r *runner[In]) release(m jetstream.Msg) {
	if err := m.Nak(); err != nil {
		r.log.Warn().Err(err).Msg("nak on shutdown")
	}
}

type item[In any] struct {
	msg  jetstream.Msg
	meta Meta
	in   In
	log  zerolog.Logger
}

func (r *runner[In]) process(ctx context.Context, msgs []jetstream.Msg) {
	start := time.Now()
	r.p.Metrics.inFlight.WithLabelValues(r.p.Stage).Add(float64(len(msgs)))
	defer r.p.Metrics.inFlight.WithLabelValues(r.p.Stage).Sub(float64(len(msgs)))

	items := make([]item[In], 0, len(msgs))
	for _, m := range msgs {
		it := item[In]{msg: m, meta: r.meta(m)}
		it.log = r.log.With().Str("subject", m.Subject()).Uint64("stream_seq", it.meta.Sequence).Uint64("deliveries", it.meta.Deliveries).Logger()
		in, err := r.decode(m.Data())
		if err != nil {
			r.deadLetter(ctx, it, schemas.ReasonBadInput, err)
			continue
		}
		it.in = in
		if r.p.Identity != nil {
			it.meta.Identity = r.p.Identity(in)
		}
		if r.p.ImageID != nil {
			it.log = it.log.With().Str("image_id", r.p.ImageID(in)).Logger()
		}
		items = append(items, it)
	}
	if len(items) == 0 {
		return
	}

	stopKeepAlive := r.keepAlive(items)
	results := r.handle(ctx, items)
	stopKeepAlive()

	pubErrs := r.publishBatch(ctx, items, results)
	var acks sync.WaitGroup
	for i, it := range items {
		res := results[i]
		if res.Err != nil {
			r.fail(ctx, it, res.Err)
			continue
		}
		if err := pubErrs[i]; err != nil {
			r.retry(it, "publish", err)
			continue
		}
		if r.p.crashAfterPublish != nil && r.p.crashAfterPublish(it.meta) {
			continue
		}
		// Each ack is a round trip of its own: a batch's go out together.
		acks.Go(func() {
			if err := it.msg.DoubleAck(ctx); err != nil {
				// The outputs are stored; a redelivery republishes them
				// under the same Msg-Ids, which JetStream drops as
				// duplicates.
				it.log.Warn().Err(err).Msg("ack")
				return
			}
			r.p.Metrics.processed.WithLabelValues(r.p.Stage).Inc()
			it.log.Debug().Int("outputs", len(res.Outputs)).Msg("processed")
		})
	}
	acks.Wait()
	r.p.Metrics.duration.WithLabelValues(r.p.Stage).Observe(time.Since(start).Seconds())
}

// publishBatch publishes the outputs of every item that succeeded and
// returns each item's publish error. A lone input publishes its outputs one
// by one, as they are; a batch publishes all of its outputs at once and
// waits for their acks together (publishAll). Either way an item counts as
// published only once every one of its outputs is stored.
func (r *runner[In]) publishBatch(ctx context.Context, items []item[In], results []Result) []error {
	errs := make([]error, len(items))
	if len(items) == 1 {
		if results[0].Err == nil {
			errs[0] = r.publish(ctx, items[0], results[0].Outputs)
		}
		return errs
	}
	var ms []Message
	var owner []int
	for i, it := range items {
		if results[i].Err != nil {
			continue
		}
		for _, o := range results[i].Outputs {
			data, err := marshal(o.Event)
			if err != nil {
				errs[i] = fmt.Errorf("marshal output for %s: %w", o.Subject, err)
				break
			}
			ms = append(ms, Message{Subject: o.Subject, Data: data, MsgID: MsgID(r.p.Stage, it.meta.Identity, o.Subject, o.Key), Stage: r.p.Stage})
			owner = append(owner, i)
		}
	}
	for j, err := range publishAll(ctx, r.js, ms) {
		if err != nil && errs[owner[j]] == nil {
			errs[owner[j]] = err
		}
	}
	return errs
}

func (r *runner[In]) decode(data []byte) (in In, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("decode panicked: %v", v)
		}
	}()
	return r.p.Decode(data)
}

// handle runs the processor, turning a panic into a permanent error so one
// poisonous input cannot take the stage down.
func (r *runner[In]) handle(ctx context.Context, items []item[In]) (results []Result) {
	if r.p.HandleBatch != nil {
		ins := make([]In, len(items))
		for i, it := range items {
			ins[i] = it.in
		}
		// A batch has no single delivery; metadata goes with single handlers.
		func() {
			defer func() {
				if v := recover(); v != nil {
					err := panicError(v)
					results = make([]Result, len(items))
					for i := range results {
						results[i].Err = err
					}
				}
			}()
			results = r.p.HandleBatch(ctx, ins)
		}()
		if len(results) != len(items) {
			err := fmt.Errorf("batch handler returned %d results for %d inputs", len(results), len(items))
			results = make([]Result, len(items))
			for i := range results {
				results[i].Err = err
			}
		}
		return results
	}
	results = make([]Result, len(items))
	for i, it := range items {
		func() {
			defer func() {
				if v := recover(); v != nil {
					results[i].Err = panicError(v)
				}
			}()
			hctx := WithMeta(ctx, it.meta)
			results[i].Outputs, results[i].Err = r.p.Handle(hctx, it.in)
		}()
	}
	return results
}

func panicError(v any) error {
	return Permanent(schemas.ReasonPanic, fmt.Errorf("processor panicked: %v\n%s", v, debug.Stack()))
}

// keepAlive tells the server the messages are being worked on, so slow work
// (a big image, a slow model) is not redelivered to another instance.
func (r *runner[In]) keepAlive(items []item[In]) (stop func()) {
	interval := r.ackWait / 3
	if interval <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, it := range items {
					_ = it.msg.InProgress()
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (r *runner[In]) meta(m jetstream.Msg) Meta {
	meta := Meta{Stage: r.p.Stage, Subject: m.Subject()}
	if md, err := m.Metadata(); err == nil {
		meta.Stream = md.Stream
		meta.Sequence = md.Sequence.Stream
		meta.Deliveries = md.NumDelivered
		meta.Stored = md.Timestamp
	}
	if id := m.Headers().Get(nats.MsgIdHdr); id != "" {
		meta.Identity = id
	} else {
		meta.Identity = meta.Stream + ":" + strconv.FormatUint(meta.Sequence, 10)
	}
	return meta
}

// MsgID is the deterministic Nats-Msg-Id of one output: the same input
// always yields the same ids, so a redelivery's republish is dropped by the
// stream's duplicate window.
func MsgID(stage, identity, subject, key string) string {
	h := sha256.New()
	for _, s := range []string{stage, identity, subject, key} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return stage + ":" + hex.EncodeToString(h.Sum(nil)[:16])
}

// HeaderStage names the stage that published a message.
const HeaderStage = "Eyeflow-Stage"

func (r *runner[In]) publish(ctx context.Context, it item[In], outs []Output) error {
	for _, o := range outs {
		data, err := marshal(o.Event)
		if err != nil {
			return fmt.Errorf("marshal output for %s: %w", o.Subject, err)
		}
		m := Message{Subject: o.Subject, Data: data, MsgID: MsgID(r.p.Stage, it.meta.Identity, o.Subject, o.Key), Stage: r.p.Stage}
		if err := publish(ctx, r.js, m); err != nil {
			return err
		}
	}
	return nil
}

func marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return json.Marshal(v)
}

// fail routes a processing error: bad input and exhausted deliveries go to
// the dead-letter subject, anything else is retried later.
func (r *runner[In]) fail(ctx context.Context, it item[In], err error) {
	if reason, ok := permanentReason(err); ok {
		r.deadLetter(ctx, it, reason, err)
		return
	}
	r.retry(it, schemas.ReasonTransient, err)
}

func (r *runner[In]) retry(it item[In], reason string, err error) {
	r.p.Metrics.failed.WithLabelValues(r.p.Stage, reason).Inc()
	if r.maxDeliver > 0 && it.meta.Deliveries >= uint64(r.maxDeliver) {
		r.deadLetter(context.Background(), it, schemas.ReasonMaxDeliveries, fmt.Errorf("gave up after %d deliveries: %w", it.meta.Deliveries, err))
		return
	}
	delay := r.p.RetryBase << min(it.meta.Deliveries-1, 20)
	delay = min(delay, r.p.RetryMax)
	it.log.Warn().Err(err).Str("reason", reason).Dur("retry_in", delay).Msg("processing failed, will retry")
	r.p.Metrics.retried.WithLabelValues(r.p.Stage).Inc()
	if nerr := it.msg.NakWithDelay(delay); nerr != nil {
		it.log.Warn().Err(nerr).Msg("nak")
	}
}

func (r *runner[In]) deadLetter(ctx context.Context, it item[In], reason string, cause error) {
	if reason != schemas.ReasonMaxDeliveries {
		r.p.Metrics.failed.WithLabelValues(r.p.Stage, reason).Inc()
	}
	dl := schemas.DeadLetter{
		Schema:     schemas.SchemaDeadLetter,
		Stage:      r.p.Stage,
		Subject:    it.msg.Subject(),
		Stream:     it.meta.Stream,
		Sequence:   it.meta.Sequence,
		Deliveries: it.meta.Deliveries,
		Reason:     reason,
		Error:      cause.Error(),
		Permanent:  reason != schemas.ReasonMaxDeliveries,
		MsgID:      it.msg.Headers().Get(nats.MsgIdHdr),
		Payload:    it.msg.Data(),
		Time:       time.Now().UTC(),
	}
	data, err := json.Marshal(dl)
	if err == nil {
		id := "dlq:" + r.p.Stage + ":" + it.meta.Stream + ":" + strconv.FormatUint(it.meta.Sequence, 10)
		err = publish(ctx, r.js, Message{Subject: schemas.DLQSubject(r.p.Stage), Data: data, MsgID: id, Stage: r.p.Stage})
	}
	if err != nil {
		// Not stored in the DLQ, so not terminated: it comes back later.
		it.log.Error().Err(err).Str("reason", reason).Msg("dead-letter publish failed, will retry")
		_ = it.msg.NakWithDelay(r.p.RetryBase)
		return
	}
	r.p.Metrics.deadLettered.WithLabelValues(r.p.Stage, reason).Inc()
	it.log.Error().Err(cause).Str("reason", reason).Msg("dead-lettered")
	if err := it.msg.Term(); err != nil {
		it.log.Warn().Err(err).Msg("term")
	}
}

// watchConsumer exports the consumer's lag until ctx ends.
func (r *runner[In]) watchConsumer(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		info, err := cons.Info(ictx)
		cancel()
		if err == nil {
			l := []string{r.p.Stage, r.p.Consumer}
			r.p.Metrics.pending.WithLabelValues(l...).Set(float64(info.NumPending))
			r.p.Metrics.ackPending.WithLabelValues(l...).Set(float64(info.NumAckPending))
			r.p.Metrics.redelivered.WithLabelValues(l...).Set(float64(info.NumRedelivered))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
