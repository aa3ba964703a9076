package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"

	"github.com/rs/zerolog"
)

// ClusterEnv is a JetStream cluster of embedded servers on loopback ports,
// each with its own store, that a test can kill and restart one at a time.
type ClusterEnv struct {
	t       testing.TB
	opts    []bus.ServerOptions
	Servers []*bus.Server
	// URL lists every node's client URL, comma-separated, for clients that
	// must survive the loss of any one node.
	URL string
}

// Cluster starts n servers with routes to each other and waits until
// JetStream has a meta leader.
func Cluster(t testing.TB, n int) *ClusterEnv {
	t.Helper()
	clients, routes := freeAddrs(t, n), freeAddrs(t, n)
	c := &ClusterEnv{t: t, Servers: make([]*bus.Server, n)}
	var urls []string
	for i := range n {
		var peers []string
		for j, r := range routes {
			if j != i {
				peers = append(peers, "nats://"+r)
			}
		}
		c.opts = append(c.opts, bus.ServerOptions{
			Name:          fmt.Sprintf("n%d", i+1),
			Listen:        clients[i],
			StoreDir:      filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i+1)),
			ClusterName:   "eyeflow-test",
			ClusterListen: routes[i],
			Routes:        peers,
			Logger:        zerolog.Nop(),
		})
		urls = append(urls, "nats://"+clients[i])
	}
	c.URL = strings.Join(urls, ",")
	// Start concurrently: each waits for its routes to come up.
	errs := make(chan error, n)
	for i := range n {
		go func() {
			srv, err := bus.StartServer(c.opts[i])
			c.Servers[i] = srv
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("start cluster node: %v", err)
		}
	}
	t.Cleanup(func() {
		for _, s := range c.Servers {
			if s != nil {
				s.Stop()
			}
		}
	})
	c.WaitJetStream()
	return c
}

// Kill stops node i abruptly, as a crash or a lost machine would.
func (c *ClusterEnv) Kill(i int) {
	c.t.Helper()
	c.Servers[i].Stop()
	c.Servers[i] = nil
}

// Restart starts node i again with its old store and addresses.
func (c *ClusterEnv) Restart(i int) {
	c.t.Helper()
	srv, err := bus.StartServer(c.opts[i])
	if err != nil {
		c.t.Fatalf("restart node %d: %v", i+1, err)
	}
	c.Servers[i] = srv
}

// WaitJetStream waits until a client can use JetStream (a meta leader
// exists) and the leader can place replicas on every running node: a
// leader elected before the other nodes' reports reach it refuses an R3
// stream with "no suitable peers for placement".
func (c *ClusterEnv) WaitJetStream() {
	c.t.Helper()
	nc, js := Connect(c.t, c.URL)
	defer nc.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		peers, running := c.placeable()
		if err == nil && peers == running {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster JetStream not ready after 60s: %v; the meta leader can place on %d of %d nodes", err, peers, running)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// placeable counts the nodes the meta leader would place replicas on
// (online, JetStream enabled, reporting) and the nodes running.
func (c *ClusterEnv) placeable() (peers, running int) {
	for _, s := range c.Servers {
		if s == nil {
			continue
		}
		running++
		peers = max(peers, len(s.JetStreamClusterPeers())) // nil except on the leader
	}
	return peers, running
}

func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
