package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamMessages returns every message stored on subject in stream, in
// order. It reads until it has as many as the stream holds for the subject:
// an empty fetch is no proof of the end on a busy or clustered server.
func StreamMessages(t testing.TB, js jetstream.JetStream, stream, subject string) []jetstream.Msg {
	t.Helper()
	ctx := Context(t, time.Minute)
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("read %s on %s: %v", subject, stream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatalf("read %s on %s: %v", subject, stream, err)
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	out := make([]jetstream.Msg, 0, want)
	var c jetstream.Consumer
	var lastSeq uint64
	for uint64(len(out)) < want {
		if ctx.Err() != nil {
			t.Fatalf("read %s on %s: %d of %d messages in a minute", subject, stream, len(out), want)
		}
		if c == nil {
			// (Re)start after the last message read: on a cluster an
			// ordered consumer can be lost with a node or a leader.
			cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}
			if lastSeq > 0 {
				cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
				cfg.OptStartSeq = lastSeq + 1
			}
			if c, err = js.OrderedConsumer(ctx, stream, cfg); err != nil {
				c = nil
				time.Sleep(200 * time.Millisecond)
				continue
			}
		}
		b, err := c.Fetch(int(min(want-uint64(len(out)), 500)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			c = nil
			time.Sleep(200 * time.Millisecond)
			continue
		}
		n := 0
		for m := range b.Messages() {
			out = append(out, m)
			if md, err := m.Metadata(); err == nil {
				lastSeq = md.Sequence.Stream
			}
			n++
		}
		if b.Error() != nil && n == 0 {
			c = nil
			time.Sleep(200 * time.Millisecond)
		}
	}
	return out
}

// WaitConsumerIdle waits until the consumer has settled every message the
// stream holds: its ack floor reached the stream's last sequence and
// nothing is pending or unacknowledged. Comparing with the stream's last
// sequence (not only the pending count) keeps a message published just
// before the call from being missed.
func WaitConsumerIdle(t testing.TB, js jetstream.JetStream, stream, consumer string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var info *jetstream.ConsumerInfo
	var last uint64
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := js.Stream(ctx, stream)
		if err != nil {
			cancel()
			t.Fatalf("stream %s: %v", stream, err)
		}
		last = s.CachedInfo().State.LastSeq
		c, err := js.Consumer(ctx, stream, consumer)
		if err == nil {
			info, err = c.Info(ctx)
		}
		cancel()
		if err != nil {
			t.Fatalf("consumer %s: %v", consumer, err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("consumer %s did not settle within 60s: stream last seq %d, ack floor %d, pending %d, ack pending %d, redelivered %d",
		consumer, last, info.AckFloor.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered)
}
