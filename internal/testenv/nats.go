package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/pipeline"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// NATSEnv is a running embedded server with the eyeflow topology applied.
type NATSEnv struct {
	Server   *bus.Server
	URL      string
	StoreDir string
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Topology bus.Topology
}

// TopologyOptions are the defaults with timings short enough for tests.
func TopologyOptions() bus.Options {
	o := bus.DefaultOptions()
	o.AckWait = 2 * time.Second
	o.MaxDeliver = 3
	// Streams reserve their byte bound from the server's disk: keep tests
	// runnable on a small disk.
	o.MaxBytes = 256 << 20
	return o
}

// NATS starts an embedded nats-server with JetStream in t.TempDir() on a random
// port, connects, and applies the topology built from opts.
func NATS(t testing.TB, opts bus.Options) *NATSEnv {
	t.Helper()
	dir := t.TempDir()
	srv, err := bus.StartServer(bus.ServerOptions{Name: "test", Listen: "127.0.0.1:0", StoreDir: dir, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("start embedded nats: %v", err)
	}
	t.Cleanup(srv.Stop)
	env := &NATSEnv{Server: srv, URL: srv.ClientURL(), StoreDir: dir}
	env.Conn, env.JS = Connect(t, env.URL)
	env.Topology = pipeline.Topology(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.Apply(ctx, env.JS, env.Topology); err != nil {
		t.Fatalf("apply topology: %v", err)
	}
	return env
}

// Connect opens a client connection closed in t.Cleanup.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Context is a test context cancelled in t.Cleanup.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// FreeAddr returns a loopback address with a port free right now, for a
// server a test starts by address (a process, a script).
func FreeAddr(t testing.TB) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}
