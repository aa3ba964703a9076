package dashboard

import "testing"

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
			got := 0
			for range tt.published {
				b.publish([]byte("x"))
				<-fast.ch
				got++
			}
			if got != tt.published || len(slow.ch) != tt.wantQueued || int(slow.dropped.Load()) != tt.published-tt.wantQueued {
				t.Fatalf("fast got %d, slow queued %d dropped %d", got, len(slow.ch), slow.dropped.Load())
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
