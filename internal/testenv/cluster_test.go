package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A cluster Cluster returns takes a three-replica stream at once: the
// tests that apply an R3 topology right after start rely on it.
func TestClusterPlacesReplicasAtOnce(t *testing.T) {
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := Cluster(t, 3)
			_, js := Connect(t, c.URL)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
				t.Fatalf("R3 stream on a new cluster: %v", err)
			}
		})
	}
}
