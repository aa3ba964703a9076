package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/schemas"
	"eyeflow/security/natsauth"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// authCluster is an embedded NATS server running the rendered permission
// table (deploy/nats/auth.conf's), every user with its own password.
type authCluster struct {
	url     string
	pwFiles map[string]string // role -> password file
	pw      map[string]string
}

func startAuthNATS(t *testing.T) *authCluster {
	t.Helper()
	dir := t.TempDir()
	a := &authCluster{pwFiles: map[string]string{}, pw: map[string]string{}}
	for _, u := range natsauth.Users() {
		pw := secret(t, u.Role)
		a.pw[u.Role] = pw
		t.Setenv(u.PasswordEnv, pw)
		f := filepath.Join(dir, u.Role+".pw")
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a.pwFiles[u.Role] = f
	}
	conf := filepath.Join(dir, "auth.conf")
	if err := run(context.Background(), []string{"nats-config", "--out", conf}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	users, err := bus.LoadUsers(conf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bus.StartServer(bus.ServerOptions{Name: "auth", Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "js"), Users: users, Logger: nopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	a.url = srv.ClientURL()
	return a
}

// as are the flags that log a command in as a role's user.
func (a *authCluster) as(role string) []string {
	return []string{"--nats", a.url, "--nats-user", natsauth.UserName(role), "--nats-password-file", a.pwFiles[role]}
}

// admin is a JetStream client logged in as the admin user.
func (a *authCluster) admin(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(a.url, nats.UserInfo(natsauth.UserName(natsauth.RoleAdmin), a.pw[natsauth.RoleAdmin]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// reconcilePass is one "reconcile pass" log line of the reconciler.
type reconcilePass struct {
	Time      time.Time `json:"time"`
	Listed    int       `json:"listed"`
	Published int       `json:"published"`
	Recent    int       `json:"recent"`
}

func reconcilePasses(t *testing.T, logs string) []reconcilePass {
	t.Helper()
	var out []reconcilePass
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Message string `json:"message"`
			reconcilePass
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "reconcile pass" {
			out = append(out, line.reconcilePass)
		}
	}
	return out
}

// waitFullPasses waits until the reconciler logged n passes that listed
// want objects, none of them recent (so each was a candidate to publish).
func waitFullPasses(t *testing.T, logs *syncBuffer, want, n int) []reconcilePass {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var full int
		passes := reconcilePasses(t, logs.String())
		for _, p := range passes {
			if p.Listed == want && p.Recent == 0 {
				full++
			}
		}
		if full >= n {
			return passes
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d full reconcile passes over %d objects in 90s; the last of %d: %+v\n%s",
				full, n, want, len(passes), passes[max(0, len(passes)-3):], lastBytes(logs.String(), 8<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastBytes(s string, n int) string { return s[max(0, len(s)-n):] }

// splitDemoData writes n demo images and moves the last k of them (in
// path order, keeping their class folders) into a second folder, so the
// two batches have distinct keys.
func splitDemoData(t *testing.T, n, k int) (first, second string) {
	t.Helper()
	first, second = t.TempDir(), t.TempDir()
	if err := run(context.Background(), []string{"demo-data", "--out", first, "--total", strconv.Itoa(n), "--width", "320", "--height", "240"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(first, "*", "*.jpg"))
	if err != nil || len(files) != n {
		t.Fatalf("demo-data wrote %d of %d images (%v)", len(files), n, err)
	}
	slices.Sort(files)
	for _, f := range files[n-k:] {
		rel, _ := filepath.Rel(first, f)
		dst := filepath.Join(second, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(f, dst); err != nil {
			t.Fatal(err)
		}
	}
	return first, second
}

// TestIngestRecordsMinIOEventsOnce runs ingest the way compose.yaml does:
// NATS with the per-processor users, MinIO announcing uploads itself (as
// eyeflow-minio), `eyeflow ingest` (upload ledger + reconciler) and
// `eyeflow resize` as their own users. Objects uploaded while ingest runs,
// and while it is down (MinIO's events queue on the ledger's consumer), are
// each announced once by MinIO and never again by the reconciler, over
// several passes; each is resized exactly once; the ledger's consumer is
// drained; a malformed event is dead-lettered by the ledger as the ingest
// user.
func TestIngestRecordsMinIOEventsOnce(t *testing.T) {
	a := startAuthNATS(t)
	minio := testenv.MinIO(t, testenv.MinIOOptions{
		NATSAddress: strings.TrimPrefix(a.url, "nats://"),
		NATSUser:    natsauth.UserName(natsauth.RoleMinIO), NATSPassword: a.pw[natsauth.RoleMinIO],
	})
	t.Setenv("EYEFLOW_S3_ACCESS_KEY", minio.AccessKey)
	t.Setenv("EYEFLOW_S3_SECRET_KEY", minio.SecretKey)
	ctx := testenv.Context(t, 4*time.Minute)
	var out, cmdLogs bytes.Buffer
	admin := a.as(natsauth.RoleAdmin)
	if err := run(ctx, append([]string{"topology", "apply"}, admin...), &out, &cmdLogs); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, append([]string{"buckets", "init", "--s3", minio.Endpoint, "--notify-arn", minio.ARN}, admin...), &out, &cmdLogs); err != nil {
		t.Fatal(err)
	}
	js := a.admin(t)

	resizeHTTP := freeAddr(t)
	resizeLogs, _ := startProcess(t, resizeHTTP, append([]string{"resize", "--s3", minio.Endpoint, "--http", resizeHTTP, "--log-format", "json"},
		a.as(schemas.StageResize)...)...)
	// MinIO sends its events within a few seconds (its queue directory
	// is drained asynchronously); the grace period covers that.
	const grace = 10 * time.Second
	startIngest := func() (*syncBuffer, func()) {
		addr := freeAddr(t)
		return startProcess(t, addr, append([]string{"ingest", "--s3", minio.Endpoint, "--http", addr, "--log-format", "json", "--log-level", "debug",
			"--reconcile-interval", "300ms", "--grace", grace.String()}, a.as(natsauth.RoleIngest)...)...)
	}
	put := func(dir string) {
		t.Helper()
		if err := run(ctx, []string{"put", "--s3", minio.Endpoint, dir}, &out, &cmdLogs); err != nil {
			t.Fatal(err)
		}
	}
	waitResized := func(n int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for processedBy(t, resizeHTTP, schemas.StageResize) < n {
			if time.Now().After(deadline) {
				t.Fatalf("resize processed %d of %d uploads\n%s", processedBy(t, resizeHTTP, schemas.StageResize), n, resizeLogs.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Uploads while ingest runs: MinIO announces them, the ledger records
	// the announcements, and the passes after the grace period find every
	// object announced.
	const first, second = 8, 6
	dir1, dir2 := splitDemoData(t, first+second, second)
	ingestLogs, stopIngest := startIngest()
	put(dir1)
	waitResized(first)
	waitFullPasses(t, ingestLogs, first, 2)
	stopIngest()
	passes := reconcilePasses(t, ingestLogs.String())

	// Uploads while ingest is down: MinIO's events wait on the ledger's
	// consumer. Once they are older than the grace period ingest starts
	// again: its passes wait for the ledger, then find them announced.
	put(dir2)
	deadline := time.Now().Add(60 * time.Second)
	for len(testenv.StreamMessages(t, js, bus.StreamUploads, schemas.SubjectUploads)) < first+second {
		if time.Now().After(deadline) {
			t.Fatalf("MinIO announced %d of %d uploads", len(testenv.StreamMessages(t, js, bus.StreamUploads, schemas.SubjectUploads)), first+second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(grace)
	ingestLogs2, stopIngest2 := startIngest()
	waitResized(first + second)
	waitFullPasses(t, ingestLogs2, first+second, 2)
	passes = append(passes, reconcilePasses(t, ingestLogs2.String())...)
	for _, p := range passes {
		if p.Published != 0 {
			t.Errorf("a reconcile pass published %d events for objects MinIO had announced: %+v", p.Published, passes)
			break
		}
	}
	testenv.WaitConsumerIdle(t, js, bus.StreamUploads, bus.ConsumerResize)
	if got := processedBy(t, resizeHTTP, schemas.StageResize); got != first+second {
		t.Errorf("resize processed %d uploads, want each of the %d once", got, first+second)
	}

	// A malformed event: the ledger dead-letters it as the ingest user.
	if _, err := js.Publish(ctx, schemas.SubjectUploads, []byte("not an S3 event")); err != nil {
		t.Fatal(err)
	}
	testenv.WaitConsumerIdle(t, js, bus.StreamUploads, bus.ConsumerIngestLedger)
	testenv.WaitConsumerIdle(t, js, bus.StreamUploads, bus.ConsumerResize)
	stopIngest2()

	if got := len(testenv.StreamMessages(t, js, bus.StreamUploads, schemas.SubjectUploads)); got != first+second+1 {
		t.Errorf("eye.uploads holds %d events, want MinIO's %d and the malformed one", got, first+second)
	}
	if got := len(testenv.StreamMessages(t, js, bus.StreamResized, schemas.SubjectResized)); got != first+second {
		t.Errorf("eye.resized holds %d events, want %d", got, first+second)
	}
	dl := testenv.StreamMessages(t, js, bus.StreamDLQ, schemas.DLQSubject(schemas.StageIngest))
	if len(dl) != 1 {
		t.Fatalf("%d dead letters on %s, want the malformed event's\n%s", len(dl), schemas.DLQSubject(schemas.StageIngest), ingestLogs2.String())
	}
	all := ingestLogs.String() + ingestLogs2.String() + resizeLogs.String() + cmdLogs.String()
	if strings.Contains(all, "Permissions Violation") {
		t.Errorf("a process was refused a subject:\n%s", all)
	}
}
