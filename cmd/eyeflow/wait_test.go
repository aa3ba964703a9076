package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The errors a process meets while its JetStream cluster forms are waited
// out; the ones waiting does not fix end the start with the error.
func TestJetStreamUnavailable(t *testing.T) {
	placement := func(desc string) error {
		return fmt.Errorf("apply stream EYE_UPLOADS: %w", &jetstream.APIError{Code: 400, ErrorCode: 10005, Description: desc})
	}
	tests := []struct {
		name string
		err  error
		wait bool
	}{
		{"no server yet", nats.ErrNoResponders, true},
		{"request timed out", fmt.Errorf("apply: %w", context.DeadlineExceeded), true},
		{"no meta leader", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		// A leader elected before the other nodes reported (seen in a
		// three-node cluster seconds after start).
		{"new leader, peers not reported", placement("no suitable peers for placement"), true},
		{"peer offline", placement("no suitable peers for placement, peer offline"), true},
		{"placement tags match no server", placement("no suitable peers for placement, tags not matched ['ssd']"), false},
		{"bad config", &jetstream.APIError{Code: 400, ErrorCode: 10052, Description: "stream name is required"}, false},
		{"other", errors.New("disk full"), false},
	}
	for _, tt := range tests {
		if got := jetStreamUnavailable(tt.err); got != tt.wait {
			t.Errorf("%s: jetStreamUnavailable(%v) = %v, want %v", tt.name, tt.err, got, tt.wait)
		}
	}
}
