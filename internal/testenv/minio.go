package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MinIONATSTarget is the identifier of the NATS notification target that
// MinIO is configured with when MinIOOptions.NATSAddress is set
// (MINIO_NOTIFY_NATS_ENABLE_EYEFLOW). MinIO keeps the identifier's case.
const MinIONATSTarget = "EYEFLOW"

// MinIONATSSubject is the subject MinIO publishes bucket events to.
const MinIONATSSubject = "eye.uploads"

// MinIOOptions configures MinIO.
type MinIOOptions struct {
	// NATSAddress, as host:port, enables MinIO's NATS notification target
	// (JetStream publishing to MinIONATSSubject, with a persistent queue so
	// that events survive a NATS outage). Empty: no notification target.
	NATSAddress string
	// NATSUser and NATSPassword log the target in, as compose.yaml's MinIO
	// does as eyeflow-minio; empty: anonymous.
	NATSUser, NATSPassword string
}

// MinIOServer is a running MinIO server.
type MinIOServer struct {
	// Endpoint is the server's URL, e.g. "http://127.0.0.1:41234".
	Endpoint  string
	AccessKey string
	SecretKey string
	// ARN is the queue ARN of the NATS target, for bucket notifications;
	// empty without MinIOOptions.NATSAddress.
	ARN string
	// LogPath is the file that holds the server's output.
	LogPath string

	t       testing.TB
	bin     string
	env     []string
	addr    string
	dataDir string
	logFile *os.File
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan error
}

// Stop shuts the server down, as an outage would; Start brings it back on
// the same address with the same data.
func (s *MinIOServer) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		stop(s.t, s.cmd, s.exited)
		s.cmd = nil
	}
}

// Start restarts a stopped server and waits until it is ready.
func (s *MinIOServer) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	if err := s.launch(); err != nil {
		s.t.Fatalf("testenv: restart MinIO: %v", err)
	}
}

// launch starts the process on s.addr and waits for readiness.
func (s *MinIOServer) launch() error {
	fmt.Fprintf(s.logFile, "=== minio server --address %s\n", s.addr)
	cmd := exec.Command(s.bin, "server", "--address", s.addr, s.dataDir)
	cmd.Env = s.env
	cmd.Stdout = s.logFile
	cmd.Stderr = s.logFile
	setProcAttrs(cmd)
	// The parent-death signal fires when the thread that started the
	// server ends, not the test process: start it from a thread that
	// stays with this goroutine until the server exits.
	started, exited := make(chan error, 1), make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start MinIO %s: %w", s.bin, err)
	}
	if err := waitReady("http://"+s.addr, exited, 60*time.Second); err != nil {
		stop(s.t, cmd, exited)
		return err
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// MinIO starts a MinIO server on a free 127.0.0.1 port with its data in a
// temporary directory and random root credentials, waits until it is ready
// and stops it when the test ends. The server's output is printed when the
// test fails. The binary comes from scripts/install-minio.sh (built once into
// a cache). Tests that cannot get a server fail: they are never skipped.
func MinIO(t testing.TB, opts MinIOOptions) *MinIOServer {
	t.Helper()
	bin, err := minioBinary()
	if err != nil {
		t.Fatalf("testenv: MinIO binary: %v", err)
	}

	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	logPath := filepath.Join(dir, "minio.log")
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	srv := &MinIOServer{
		AccessKey: "eyeflow-" + randomHex(t, 6),
		SecretKey: randomHex(t, 20),
		LogPath:   logPath,
	}
	env := minioEnv(srv)
	if opts.NATSAddress != "" {
		queueDir := filepath.Join(dir, "nats-queue")
		if err := os.Mkdir(queueDir, 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		id := MinIONATSTarget
		env = append(env,
			"MINIO_NOTIFY_NATS_ENABLE_"+id+"=on",
			"MINIO_NOTIFY_NATS_ADDRESS_"+id+"="+opts.NATSAddress,
			"MINIO_NOTIFY_NATS_SUBJECT_"+id+"="+MinIONATSSubject,
			"MINIO_NOTIFY_NATS_JETSTREAM_"+id+"=on",
			"MINIO_NOTIFY_NATS_QUEUE_DIR_"+id+"="+queueDir,
		)
		if opts.NATSUser != "" {
			env = append(env,
				"MINIO_NOTIFY_NATS_USERNAME_"+id+"="+opts.NATSUser,
				"MINIO_NOTIFY_NATS_PASSWORD_"+id+"="+opts.NATSPassword,
			)
		}
		srv.ARN = "arn:minio:sqs::" + id + ":nats"
	}

	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("testenv: MinIO log: %v", err)
	}
	t.Cleanup(func() {
		logFile.Close()
		if t.Failed() {
			printLog(t, logPath)
		}
	})

	srv.t, srv.bin, srv.env, srv.dataDir, srv.logFile = t, bin, env, dataDir, logFile
	t.Cleanup(srv.Stop)
	// The port is found free and then handed to MinIO, so another process
	// can take it in between: retry a few times on an early exit.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		srv.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = srv.launch(); lastErr == nil {
			srv.Endpoint = "http://" + srv.addr
			return srv
		}
	}
	// The cleanup above prints the log.
	t.Fatalf("testenv: MinIO did not start: %v", lastErr)
	return nil
}

// minioEnv is the environment of the server: the test's environment without
// any MINIO_* variable (a developer's own settings must not leak in).
func minioEnv(srv *MinIOServer) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"MINIO_ROOT_USER="+srv.AccessKey,
		"MINIO_ROOT_PASSWORD="+srv.SecretKey,
		// Hold S3 requests until the boot finishes: notification targets
		// are registered after /minio/health/ready already answers, and a
		// bucket notification for an unregistered ARN is refused.
		"MINIO_SYNC_BOOT=on",
		"MINIO_BROWSER=off", // no console: one port only
		"MINIO_UPDATE=off",  // no update checks
		"MINIO_CI_CD=on",    // tolerate a data dir on the root disk
	)
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// minioBinary runs scripts/install-minio.sh once per test binary; the script
// prints the path of the cached binary, building it first when missing.
func minioBinary() (string, error) {
	binOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			binErr = err
			return
		}
		script := filepath.Join(root, "scripts", "install-minio.sh")
		var stdout, stderr bytes.Buffer
		cmd := exec.Command("bash", script)
		cmd.Dir = root
		cmd.Stdout = &stdout
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			binErr = fmt.Errorf("%s: %v\n%s", script, err, tail(stderr.Bytes(), 4096))
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		path := strings.TrimSpace(lines[len(lines)-1])
		if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			binErr = fmt.Errorf("%s printed %q, which is not an executable file (stat: %v)", script, path, err)
			return
		}
		binPath = path
	})
	return binPath, binErr
}

// repoRoot walks up from the working directory to the directory of go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls MinIO's readiness probe until it answers 200, the process
// exits or the timeout passes.
func waitReady(endpoint string, exited <-chan error, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/minio/health/ready", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("readiness: %s", resp.Status)
		}
		lastErr = err
		select {
		case err := <-exited:
			return fmt.Errorf("MinIO exited before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("MinIO not ready after %v: %v", timeout, lastErr)
		case <-tick.C:
		}
	}
}

// stop asks MinIO to shut down and kills it when it takes too long.
func stop(t testing.TB, cmd *exec.Cmd, exited <-chan error) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Logf("testenv: MinIO did not stop within 10s; killing it")
		_ = cmd.Process.Kill()
		<-exited
	}
}

func printLog(t testing.TB, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Logf("testenv: MinIO log %s: %v", path, err)
		return
	}
	t.Logf("testenv: MinIO log (%s):\n%s", path, tail(data, 64<<10))
}

// tail returns the last n bytes of b.
func tail(b []byte, n int) string {
	if len(b) > n {
		return "...\n" + string(b[len(b)-n:])
	}
	return string(b)
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: random: %v", err)
	}
	return hex.EncodeToString(b)
}
