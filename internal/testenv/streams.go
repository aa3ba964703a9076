package testenv

import (
	"context"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// StreamMessages returns every message stored on subject in stream, in order.
func StreamMessages(t testing.TB, js natsjs.JetStream, stream, subject string) []natsjs.Msg {
	t.Helper()
	ctx := Context(t, 10*time.Second)
	c, err := js.OrderedConsumer(ctx, stream, natsjs.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatalf("read %s on %s: %v", subject, stream, err)
	}
	var out []natsjs.Msg
	for {
		b, err := c.FetchNoWait(100)
		if err != nil {
			t.Fatalf("read %s on %s: %v", subject, stream, err)
		}
		n := 0
		for m := range b.Messages() {
			out = append(out, m)
			n++
		}
		if n == 0 {
			return out
		}
	}
}

// WaitConsumerIdle waits until the consumer has settled every message the
// stream holds: its ack floor reached the stream's last sequence and
// nothing is pending or unacknowledged. Comparing with the stream's last
// sequence (not only the pending count) keeps a message published just
// before the call from being missed.
func WaitConsumerIdle(t testing.TB, js natsjs.JetStream, stream, consumer string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var info *natsjs.ConsumerInfo
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
