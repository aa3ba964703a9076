package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"eyeflow/internal/testenv"
	"eyeflow/schemas"
	"eyeflow/security/natsauth"

	"github.com/nats-io/nats.go"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key,
// generated in the test: TLS is tested without any checked-in key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "eyeflow test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func secret(t *testing.T, kind string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "sekret-" + kind + "-" + hex.EncodeToString(b)
}

// startUpArgs runs `eyeflow up` in-process with extra arguments until the
// test ends, and returns its log.
func startUpArgs(t *testing.T, httpAddr string, args ...string) (*syncBuffer, func()) {
	t.Helper()
	return startProcess(t, httpAddr, append([]string{"up", "--http", httpAddr, "--log-format", "json"}, args...)...)
}

// startProcess runs an eyeflow command in-process until stop or the end of
// the test, waits until its /readyz on httpAddr answers 200, and returns
// its log and stop.
func startProcess(t *testing.T, httpAddr string, args ...string) (*syncBuffer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, io.Discard, logs)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("eyeflow %s exited: %v\n%s", args[0], err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("eyeflow %s not ready after 60s\n%s", args[0], logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("eyeflow %s: %v\n%s", args[0], err, logs.String())
		}
	}
	t.Cleanup(stop)
	return logs, stop
}

// TestSecureUpAndSecretsNeverLogged runs the embedded pipeline the way the
// Security section describes: NATS with the per-processor users over TLS
// (a certificate made in the test), objects in MinIO, the dashboard behind a
// token. Every secret is a unique string given only through the environment
// or a file; images go through put, the reconciler (as the ingest user) and
// resize and splitter. Then every log line of every command and the
// /metrics output are searched for the secrets: none may appear.
func TestSecureUpAndSecretsNeverLogged(t *testing.T) {
	dir, data, images := t.TempDir(), t.TempDir(), t.TempDir()
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	cert, key := selfSigned(t, dir)
	minio := testenv.MinIO(t, testenv.MinIOOptions{})

	secrets := map[string]string{"s3 access key": minio.AccessKey, "s3 secret key": minio.SecretKey}
	for _, u := range natsauth.Users() {
		pw := secret(t, u.Role)
		secrets["nats password "+u.Role] = pw
		t.Setenv(u.PasswordEnv, pw)
	}
	// up logs in as admin from the environment; the reconciler as ingest
	// from a file.
	t.Setenv(envNATSPassword, secrets["nats password admin"])
	pwFile := filepath.Join(dir, "ingest.pw")
	if err := os.WriteFile(pwFile, []byte(secrets["nats password ingest"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("EYEFLOW_S3_ACCESS_KEY", minio.AccessKey)
	t.Setenv("EYEFLOW_S3_SECRET_KEY", minio.SecretKey)
	token := secret(t, "dashboard")
	secrets["dashboard token"] = token
	t.Setenv("EYEFLOW_DASHBOARD_TOKEN", token)

	conf := filepath.Join(dir, "auth.conf")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"nats-config", "--out", conf}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	upLogs, stop := startUpArgs(t, httpAddr, "--data", data, "--nats-listen", natsAddr, "--log-level", "debug",
		"--processors", schemas.StageResize+","+schemas.StageSplitter, "--s3", minio.Endpoint,
		"--nats-auth-config", conf, "--nats-user", natsauth.UserName(natsauth.RoleAdmin),
		"--nats-listen-tls-cert", cert, "--nats-listen-tls-key", key)

	// Plaintext, anonymous and wrong-password clients are turned away.
	natsURL := "nats://" + natsAddr
	for name, opts := range map[string][]nats.Option{
		"no tls":         {nats.UserInfo(natsauth.UserName(natsauth.RoleIngest), secrets["nats password ingest"])},
		"anonymous":      {nats.RootCAs(cert)},
		"wrong password": {nats.RootCAs(cert), nats.UserInfo(natsauth.UserName(natsauth.RoleIngest), "guess")},
	} {
		if nc, err := nats.Connect(natsURL, opts...); err == nil {
			nc.Close()
			t.Errorf("%s: connection accepted", name)
		}
	}

	ctx := testenv.Context(t, 3*time.Minute)
	var cmdLogs bytes.Buffer
	const n = 6
	if err := run(ctx, []string{"demo-data", "--out", images, "--total", "6", "--width", "320", "--height", "240"}, &out, &cmdLogs); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"put", "--s3", minio.Endpoint, images}, &out, &cmdLogs); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"reconcile", "--grace", "0", "--s3", minio.Endpoint, "--nats", natsURL, "--log-format", "json", "--log-level", "debug",
		"--nats-user", natsauth.UserName(natsauth.RoleIngest), "--nats-password-file", pwFile, "--nats-tls-ca", cert}, &out, &cmdLogs); err != nil {
		t.Fatalf("reconcile as the ingest user over TLS: %v\n%s", err, cmdLogs.String())
	}
	deadline := time.Now().Add(90 * time.Second)
	for processedBy(t, httpAddr, schemas.StageSplitter) < n {
		if time.Now().After(deadline) {
			t.Fatalf("splitter processed %d of %d images\n%s", processedBy(t, httpAddr, schemas.StageSplitter), n, upLogs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Scrape what an operator sees: /metrics, and the dashboard with and
	// without its token.
	var scraped bytes.Buffer
	for _, path := range []string{"/metrics", "/readyz", "/dashboard/"} {
		for _, auth := range []string{"", "Bearer " + token} {
			req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			scraped.Write(body)
		}
	}
	stop()

	all := upLogs.String() + "\n" + cmdLogs.String() + "\n" + out.String()
	if !strings.Contains(upLogs.String(), "eyeflow is up") || scraped.Len() == 0 {
		t.Fatalf("nothing to search: the run logged %d bytes and served %d", len(all), scraped.Len())
	}
	for what, s := range secrets {
		for where, text := range map[string]string{"logs": all, "http responses": scraped.String()} {
			if strings.Contains(text, s) {
				i := strings.Index(text, s)
				t.Errorf("%s appears in the %s: ...%s...", what, where, text[max(0, i-200):min(len(text), i+len(s)+50)])
			}
		}
	}
}

// TestNATSFlagsValidation: the authentication and TLS flags refuse
// incomplete combinations with a message naming the flag, never a secret.
func TestNATSFlagsValidation(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	t.Setenv(envNATSPassword, "")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"user without password", []string{"resize", "--nats-user", "eyeflow-ingest"}, "needs a password"},
		{"password file without user", []string{"resize", "--nats-password-file", filepath.Join(dir, "pw")}, "needs --nats-user"},
		{"cert without key", []string{"resize", "--nats-tls-cert", cert}, "go together"},
		{"missing ca", []string{"resize", "--nats-tls-ca", filepath.Join(dir, "nope.pem")}, "--nats-tls-ca"},
		{"auth config without user", []string{"up", "--data", dir, "--nats-auth-config", filepath.Join(dir, "a.conf")}, "needs a user"},
		{"listen cert without key", []string{"up", "--data", dir, "--nats-listen-tls-cert", cert}, "go together"},
		{"listen tls with external nats", []string{"up", "--nats", "nats://h:4222", "--nats-listen-tls-cert", cert, "--nats-listen-tls-key", key}, "embedded server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v: error %v, want one mentioning %q", tt.args, err, tt.want)
			}
		})
	}
}
