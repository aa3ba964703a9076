package dashboard

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"

	"eyeflow/schemas"
)

// broker fans predictions out to the live feed's clients. Every client has
// a bounded buffer; a client that does not keep up loses messages (counted)
// instead of slowing the subscription or growing memory: the feed is a view,
// the stream keeps everything.
type broker struct {
	buffer     int
	maxClients int

	mu      sync.Mutex
	clients map[*feedClient]struct{}
	closed  bool

	dropped atomic.Uint64
}

type feedClient struct {
	ch      chan []byte
	dropped atomic.Uint64
}

func newBroker(buffer, maxClients int) *broker {
	return &broker{buffer: buffer, maxClients: maxClients, clients: map[*feedClient]struct{}{}}
}

// subscribe adds a client; false when the broker is full or closed.
func (b *broker) subscribe() (*feedClient, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || len(b.clients) >= b.maxClients {
		return nil, false
	}
	c := &feedClient{ch: make(chan []byte, b.buffer)}
	b.clients[c] = struct{}{}
	return c, true
}

func (b *broker) unsubscribe(c *feedClient) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.clients[c]; ok {
		delete(b.clients, c)
		close(c.ch)
	}
}

// publish hands one event to every client without blocking.
func (b *broker) publish(data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.clients {
		select {
		case c.ch <- data:
		default:
			c.dropped.Add(1)
			b.dropped.Add(1)
		}
	}
}

// close ends every client's stream (their channels close) and refuses new ones.
func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for c := range b.clients {
		delete(b.clients, c)
		close(c.ch)
	}
}

// predictionEvent turns a message on eye.predictions.<env> into the feed's
// JSON; false for a message that is not a prediction.
func predictionEvent(subject string, data []byte) ([]byte, bool) {
	p, err := schemas.DecodePrediction(data)
	if err != nil {
		return nil, false
	}
	if p.Env == "" {
		p.Env = strings.TrimPrefix(subject, strings.TrimSuffix(schemas.SubjectPredictionsAll, "*"))
	}
	out, err := json.Marshal(feedItem(p))
	return out, err == nil
}
