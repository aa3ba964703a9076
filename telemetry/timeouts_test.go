package telemetry

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestServerTimeouts: the one HTTP server of every eyeflow process (metrics,
// health, /predict, the dashboard) bounds every phase of a request, so a
// slow or stalled client (slowloris) cannot hold connections forever.
func TestServerTimeouts(t *testing.T) {
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	for name, d := range map[string]int64{
		"ReadHeaderTimeout": int64(s.srv.ReadHeaderTimeout),
		"ReadTimeout":       int64(s.srv.ReadTimeout),
		"WriteTimeout":      int64(s.srv.WriteTimeout),
		"IdleTimeout":       int64(s.srv.IdleTimeout),
	} {
		if d <= 0 {
			t.Errorf("%s is not set", name)
		}
	}
}
