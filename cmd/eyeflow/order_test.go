package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
)

// background runs an eyeflow command in-process without waiting for it to
// be ready; stop ends it and returns its error.
func background(t *testing.T, args ...string) (logs *syncBuffer, done <-chan struct{}, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	ch := make(chan struct{})
	var result error
	go func() {
		result = run(ctx, args, io.Discard, logs)
		close(ch)
	}()
	stop = func() error {
		cancel()
		<-ch
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return logs, ch, stop
}

// readyz returns /readyz's status code and body (0 when nothing answers).
func readyz(addr string) (int, string) {
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReadyz waits until /readyz answers code with a body containing want.
func waitReadyz(t *testing.T, addr string, code int, want string, done <-chan struct{}, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, body := readyz(addr)
		if got == code && strings.Contains(body, want) {
			return
		}
		select {
		case <-done:
			t.Fatalf("the process exited while /readyz should answer %d %q\n%s", code, want, lastBytes(logs.String(), 4<<10))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz answers %d %q, want %d with %q\n%s", got, body, code, want, lastBytes(logs.String(), 4<<10))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStartInAnyOrder: a stage started before NATS, before the topology,
// and `eyeflow up` started before its S3 store, wait (saying for what in
// the log and on /readyz, not ready meanwhile) instead of exiting, and
// become ready once what they wait for is there. A configuration error
// still ends a process at once.
func TestStartInAnyOrder(t *testing.T) {
	clearEyeflowEnv(t)
	t.Run("stage before NATS and the topology", func(t *testing.T) {
		natsAddr, httpAddr := freeAddr(t), freeAddr(t)
		logs, done, stop := background(t, "resize", "--nats", "nats://"+natsAddr, "--http", httpAddr, "--log-format", "json")
		waitReadyz(t, httpAddr, http.StatusServiceUnavailable, "waiting for NATS at nats://"+natsAddr, done, logs)
		first, _, _ := strings.Cut(logs.String(), "\n")
		if !strings.Contains(first, "HTTP on http://"+httpAddr) || !strings.Contains(first, "curl http://"+httpAddr+"/readyz") {
			t.Errorf("first log line does not say where resize listens and how to reach it: %s", first)
		}
		if !strings.Contains(logs.String(), `"message":"waiting for NATS"`) {
			t.Errorf("resize does not log that it waits for NATS:\n%s", logs.String())
		}

		srv, err := bus.StartServer(bus.ServerOptions{Name: "late", Listen: natsAddr, StoreDir: t.TempDir(), Logger: nopLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Stop()
		waitReadyz(t, httpAddr, http.StatusServiceUnavailable, "waiting for consumer resize on stream EYE_UPLOADS", done, logs)
		// The deployment's first start (compose's init) gives it its
		// pseudonym key, which resize reads once its consumer is there.
		if err := run(context.Background(), []string{"buckets", "init", "--nats", "nats://" + natsAddr}, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
		if err := run(context.Background(), []string{"topology", "apply", "--nats", "nats://" + natsAddr}, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
		waitReadyz(t, httpAddr, http.StatusOK, "ready", done, logs)
		if err := stop(); err != nil {
			t.Fatalf("resize: %v\n%s", err, logs.String())
		}
	})

	t.Run("topology apply and buckets init before NATS", func(t *testing.T) {
		natsAddr := freeAddr(t)
		url := "nats://" + natsAddr
		type result struct {
			err  error
			logs *syncBuffer
		}
		results := make(chan result, 2)
		for _, args := range [][]string{{"topology", "apply", "--nats", url, "--wait", "60s"}, {"buckets", "init", "--nats", url, "--wait", "60s"}} {
			go func() {
				logs := &syncBuffer{}
				err := run(context.Background(), append(args, "--log-format", "json"), io.Discard, logs)
				results <- result{err, logs}
			}()
		}
		time.Sleep(time.Second)
		srv, err := bus.StartServer(bus.ServerOptions{Name: "late", Listen: natsAddr, StoreDir: t.TempDir(), Logger: nopLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Stop()
		for range 2 {
			r := <-results
			if r.err != nil || !strings.Contains(r.logs.String(), "waiting for NATS") {
				t.Errorf("%v\n%s", r.err, r.logs.String())
			}
		}
	})

	t.Run("up before S3", func(t *testing.T) {
		minio := testenv.MinIO(t, testenv.MinIOOptions{})
		minio.Stop()
		t.Setenv("EYEFLOW_S3_ACCESS_KEY", minio.AccessKey)
		t.Setenv("EYEFLOW_S3_SECRET_KEY", minio.SecretKey)
		t.Setenv("EYEFLOW_S3", minio.Endpoint)
		httpAddr := freeAddr(t)
		logs, done, stop := background(t, "up", "--data", t.TempDir(), "--nats-listen", freeAddr(t), "--http", httpAddr,
			"--processors", "resize", "--log-format", "json")
		waitReadyz(t, httpAddr, http.StatusServiceUnavailable, "waiting for S3 at "+minio.Endpoint, done, logs)
		time.Sleep(time.Second) // still waiting, not exited
		waitReadyz(t, httpAddr, http.StatusServiceUnavailable, "waiting for S3", done, logs)
		minio.Start()
		waitReadyz(t, httpAddr, http.StatusOK, "ready", done, logs)
		if !strings.Contains(logs.String(), `"message":"waiting for S3"`) || !strings.Contains(logs.String(), `"message":"S3 is there"`) {
			t.Errorf("up does not log its wait for S3:\n%s", lastBytes(logs.String(), 4<<10))
		}
		if err := stop(); err != nil {
			t.Fatalf("up: %v\n%s", err, logs.String())
		}
	})

	t.Run("configuration errors end at once", func(t *testing.T) {
		env := testenv.NATS(t, testenv.TopologyOptions())
		dir := t.TempDir()
		for name, args := range map[string][]string{
			// A server without users refuses nothing: a TLS CA it does not use is a configuration error.
			"tls to a plain server": {"resize", "--nats", env.URL, "--http", freeAddr(t), "--nats-tls-ca", filepath.Join(dir, "missing.pem")},
			"http address taken":    {"resize", "--nats", env.URL, "--http", strings.TrimPrefix(env.URL, "nats://")},
		} {
			start := time.Now()
			err := run(context.Background(), args, io.Discard, io.Discard)
			if err == nil || time.Since(start) > 10*time.Second {
				t.Errorf("%s: %v after %s, want an error at once", name, err, time.Since(start))
			}
		}
	})
}
