package stage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Message is an event a processor publishes outside a handler's outputs:
// from a poller (labelsink's exports), a background loop (the trainer's
// rollout) or a command.
type Message struct {
	Subject string
	Data    []byte
	// MsgID is the Nats-Msg-Id, derived from what the message reports
	// (an upload's identity, an event id): publishing it again after a
	// crash is dropped by the stream's duplicate window. Required.
	MsgID string
	// Stage, when set, names the publisher in the HeaderStage header.
	Stage string
}

// Publisher publishes messages. Publish returns once the stream has stored
// the message (or dropped it as a duplicate of its MsgID): a caller that
// records "done" after Publish never records an event that was lost.
type Publisher interface {
	Publish(ctx context.Context, m Message) error
}

// ErrNoMsgID is the error of a Message without a MsgID.
var ErrNoMsgID = errors.New("no Msg-Id: a republish would be a second event")

// PublisherOf publishes on a JetStream context.
func PublisherOf(js jetstream.JetStream) Publisher { return jsPublisher{js} }

type jsPublisher struct{ js jetstream.JetStream }

func (p jsPublisher) Publish(ctx context.Context, m Message) error { return publish(ctx, p.js, m) }

// publish is every publish of the package, the runtime's own included: it
// waits for JetStream's ack, which is what lets the runtime acknowledge an
// input only after its outputs are stored.
func publish(ctx context.Context, js jetstream.JetStream, m Message) error {
	if m.MsgID == "" {
		return fmt.Errorf("publish %s: %w", m.Subject, ErrNoMsgID)
	}
	msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
	if m.Stage != "" {
		msg.Header.Set(HeaderStage, m.Stage)
	}
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(m.MsgID)); err != nil {
		return fmt.Errorf("publish %s: %w", m.Subject, err)
	}
	return nil
}

// asyncPublishTimeout bounds the wait for the acks of a batch's outputs.
const asyncPublishTimeout = 30 * time.Second

// publishAll publishes every message at once and then waits for all their
// acks: n messages cost about one round trip to the server rather than n,
// with the same guarantee as publish (nothing counts as done before the
// stream has stored it). errs[i] is ms[i]'s error, nil once stored.
func publishAll(ctx context.Context, js jetstream.JetStream, ms []Message) []error {
	errs := make([]error, len(ms))
	futures := make([]jetstream.PubAckFuture, len(ms))
	for i, m := range ms {
		if m.MsgID == "" {
			errs[i] = fmt.Errorf("publish %s: %w", m.Subject, ErrNoMsgID)
			continue
		}
		msg := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
		if m.Stage != "" {
			msg.Header.Set(HeaderStage, m.Stage)
		}
		f, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(m.MsgID))
		if err != nil {
			errs[i] = fmt.Errorf("publish %s: %w", m.Subject, err)
			continue
		}
		futures[i] = f
	}
	wctx, cancel := context.WithTimeout(ctx, asyncPublishTimeout)
	defer cancel()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("publish %s: %w", ms[i].Subject, err)
		case <-wctx.Done():
			errs[i] = fmt.Errorf("publish %s: no ack: %w", ms[i].Subject, wctx.Err())
		}
	}
	return errs
}
