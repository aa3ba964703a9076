package dashboard

import (
	"fmt"
	"testing"
)

// TestBrokerDropsForSlowClients: a client that does not read loses events
// beyond its buffer, and the others still get every one.
func TestBrokerDropsForSlowClients(t *testing.T) {
	tests := []struct {
		name       string
		buffer     int
		published  int
		wantQueued int
	}{
		{"within the buffer", 4, 3, 3},
		{"beyond the buffer", 4, 10, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(tt.buffer, 2)
			slow, ok := b.subscribe()
			if !ok {
				t.Fatal("subscribe refused")
			}
			fast, _ := b.subscribe()
			if _, ok := b.subscribe(); ok {
				t.Fatal("a third client was accepted beyond the limit of 2")
			}
			for i := range tt.published {
				b.publish([]byte(fmt.Sprint("event-", i)))
				// publish never blocks: the event is already in the
				// fast client's channel, or it was dropped.
				select {
				case got := <-fast.ch:
					if want := fmt.Sprint("event-", i); string(got) != want {
						t.Fatalf("fast client got %q, want %q", got, want)
					}
				default:
					t.Fatalf("fast client got nothing for event %d", i)
				}
			}
			if fast.dropped.Load() != 0 {
				t.Fatalf("fast client dropped %d events", fast.dropped.Load())
			}
			wantDropped := uint64(tt.published - tt.wantQueued)
			if len(slow.ch) != tt.wantQueued || slow.dropped.Load() != wantDropped || b.dropped.Load() != wantDropped {
				t.Fatalf("slow queued %d, dropped %d (broker %d); want %d queued, %d dropped",
					len(slow.ch), slow.dropped.Load(), b.dropped.Load(), tt.wantQueued, wantDropped)
			}
			// The slow client keeps the oldest events, in order.
			for i := range tt.wantQueued {
				if got, want := string(<-slow.ch), fmt.Sprint("event-", i); got != want {
					t.Fatalf("slow client's event %d is %q, want %q", i, got, want)
				}
			}
			b.unsubscribe(slow)
			b.close()
			if _, open := <-fast.ch; open {
				t.Fatal("close left a client's channel open")
			}
			if _, ok := b.subscribe(); ok {
				t.Fatal("subscribe after close")
			}
		})
	}
}
