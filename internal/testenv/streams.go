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

// WaitConsumerIdle waits until the consumer has delivered and settled every
// message: nothing pending, unacknowledged or awaiting redelivery.
func WaitConsumerIdle(t testing.TB, js natsjs.JetStream, stream, consumer string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		c, err := js.Consumer(context.Background(), stream, consumer)
		if err != nil {
			t.Fatalf("consumer %s: %v", consumer, err)
		}
		info, err := c.Info(context.Background())
		if err != nil {
			t.Fatalf("consumer %s: %v", consumer, err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("consumer %s did not settle within 60s", consumer)
}
