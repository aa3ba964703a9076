package stage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamReader reads what streams hold and how far their consumers are
// behind, for processors that decide from the record rather than from one
// message (the trainer's canary and rollback judgements, the reconciler's
// wait for the upload ledger).
type StreamReader interface {
	// Scan calls fn with subject's messages stored since since (zero:
	// all), in stream order, until fn returns false or the stream holds
	// no more.
	Scan(ctx context.Context, stream, subject string, since time.Time, fn func(StoredMsg) bool) error
	// Backlog is the number of messages consumer has not acknowledged
	// yet: those still pending and those delivered and in flight.
	Backlog(ctx context.Context, stream, consumer string) (uint64, error)
}

// StoredMsg is a message as its stream stored it.
type StoredMsg struct {
	Subject  string
	Data     []byte
	Header   map[string][]string
	Sequence uint64
	Time     time.Time
}

// StreamReaderOf reads the streams of a JetStream context.
func StreamReaderOf(js jetstream.JetStream) StreamReader { return jsStreams{js} }

type jsStreams struct{ js jetstream.JetStream }

// Scan reads with an ordered consumer: nothing durable is left behind, and
// reading the stream again is exact where counters kept beside it could
// drift (scans are bounded by their callers' counts, not the stream's size).
func (s jsStreams) Scan(ctx context.Context, stream, subject string, since time.Time, fn func(StoredMsg) bool) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since}
	if since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverAllPolicy, nil
	}
	cons, err := s.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("scan %s: %w", subject, err)
	}
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("scan %s: %w", subject, err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			// Ordered consumers have no acks; NumPending is what is left.
			return nil
		}
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("scan %s: %w", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if !fn(storedMsg(m)) {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return fmt.Errorf("scan %s: %w", subject, err)
		}
		if n == 0 {
			// Pending but not yet delivered: ask again with a wait.
			b, err := cons.Fetch(256, jetstream.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				return fmt.Errorf("scan %s: %w", subject, err)
			}
			got := 0
			for m := range b.Messages() {
				got++
				if !fn(storedMsg(m)) {
					return nil
				}
			}
			if got == 0 {
				return nil
			}
		}
	}
}

func storedMsg(m jetstream.Msg) StoredMsg {
	sm := StoredMsg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()}
	if md, err := m.Metadata(); err == nil {
		sm.Sequence, sm.Time = md.Sequence.Stream, md.Timestamp
	}
	return sm
}

func (s jsStreams) Backlog(ctx context.Context, stream, consumer string) (uint64, error) {
	c, err := s.js.Consumer(ctx, stream, consumer)
	if err != nil {
		return 0, fmt.Errorf("consumer %s on %s: %w", consumer, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("consumer %s on %s: %w", consumer, stream, err)
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}
