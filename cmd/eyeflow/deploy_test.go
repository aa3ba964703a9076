package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/deployment"
	"eyeflow/internal/testenv"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/security/natsauth"

	"github.com/minio/minio-go/v7"
)

// credentialFlags are the flags whose values are secrets or logins: a
// command with any of them takes credentials.
var credentialFlags = []string{"nats-password", "s3-secret-key", "dashboard-token", "labelstudio-token"}

// perProcess is the per-process deployment of compose.yaml, in-process:
// NATS with the per-processor users, MinIO, and every setting (credentials
// above all) in the environment, as compose sets them.
type perProcess struct {
	t     *testing.T
	nats  *authCluster
	minio *testenv.MinIOServer
	ctx   context.Context
}

func newDeployment(t *testing.T) *perProcess {
	t.Helper()
	clearEyeflowEnv(t)
	d := &perProcess{t: t, nats: startAuthNATS(t), minio: testenv.MinIO(t, testenv.MinIOOptions{}), ctx: testenv.Context(t, 6*time.Minute)}
	for k, v := range map[string]string{
		"EYEFLOW_NATS":              d.nats.url,
		"EYEFLOW_S3":                d.minio.Endpoint,
		"EYEFLOW_S3_ACCESS_KEY":     d.minio.AccessKey,
		"EYEFLOW_S3_SECRET_KEY":     d.minio.SecretKey,
		"EYEFLOW_LOG_FORMAT":        "json",
		"EYEFLOW_ORT_LIB":           testenv.ORTLibrary(t),
		"EYEFLOW_DASHBOARD_TOKEN":   secret(t, "dashboard"),
		"EYEFLOW_LABELSTUDIO_TOKEN": secret(t, "labelstudio"),
	} {
		t.Setenv(k, v)
	}
	return d
}

// as logs the next commands in as role's NATS user, from the environment.
func (d *perProcess) as(role string) {
	d.t.Setenv("EYEFLOW_NATS_USER", natsauth.UserName(role))
	d.t.Setenv("EYEFLOW_NATS_PASSWORD", d.nats.pw[role])
}

// run runs a one-shot command and returns its output; it must succeed.
func (d *perProcess) run(args ...string) string {
	d.t.Helper()
	out, err := d.try(args...)
	if err != nil {
		d.t.Fatalf("eyeflow %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs a one-shot command and returns its output and error.
func (d *perProcess) try(args ...string) (string, error) {
	d.t.Helper()
	var out, errOut bytes.Buffer
	err := run(d.ctx, args, &out, &errOut)
	return out.String() + errOut.String(), err
}

// TestPerProcessDeployment drives the deployment compose.yaml describes,
// every process in-process with its settings in the environment as compose
// gives them: credentials (S3 keys, NATS passwords, the dashboard and Label
// Studio tokens) only there, for every command that takes any. The operator
// applies the topology and buckets, pushes and promotes a model, uploads;
// the stages (each as its own NATS user) resize, split and classify with
// the promoted model; the reconciler runs every second, serving /metrics
// and logging each pass; status needs the admin user and says so at once.
func TestPerProcessDeployment(t *testing.T) {
	d := newDeployment(t)
	covered := map[string]bool{}
	cover := func(words ...string) { covered[strings.Join(words, " ")] = true }

	d.as(natsauth.RoleAdmin)
	d.run("topology", "apply")
	cover("topology", "apply")
	// This MinIO has no NATS notification target: buckets init says which
	// variables make one, or how to do without.
	if out, err := d.try("buckets", "init"); err == nil || !strings.Contains(err.Error(), "MINIO_NOTIFY_NATS_ENABLE_EYEFLOW=on") ||
		!strings.Contains(err.Error(), `--notify-arn ""`) {
		t.Errorf("buckets init against MinIO without the target: %v\n%s", err, out)
	}
	d.run("buckets", "init", "--notify-arn", "")
	cover("buckets", "init")
	model := filepath.Join(t.TempDir(), "tiny")
	d.run("model", "synth", "--arch", "tiny", "--name", "fundus-tiny", "--version", "v1", "--out", model)
	d.run("model", "push", model, "--name", "fundus-tiny", "--version", "v1")
	cover("model", "push")
	d.run("model", "promote", "--env", schemas.EnvCanary, "fundus-tiny", "v1")
	cover("model", "promote")
	var list []modelListEntry
	if err := json.Unmarshal([]byte(d.run("model", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !slices.Equal(list[0].Envs, []string{schemas.EnvCanary}) {
		t.Fatalf("model list: %+v, want fundus-tiny v1 in canary only", list)
	}
	cover("model", "list")
	if out := d.run("model", "timeline"); !strings.Contains(out, "new -> canary") {
		t.Errorf("model timeline does not show the promotion:\n%s", out)
	}
	cover("model", "timeline")

	// The stages, each as its own user, in the order compose may start them.
	type proc struct {
		role string
		args []string
	}
	procs := []proc{
		{natsauth.RoleIngest, []string{"ingest", "--reconcile-interval", "1s", "--grace", "0"}},
		{schemas.StageResize, []string{"resize"}},
		{schemas.StageSplitter, []string{"splitter"}},
		{schemas.StageClassifier, []string{"classifier", "--envs", schemas.EnvCanary, "--canary-share", "1"}},
		{schemas.StageDriftwatch, []string{"driftwatch"}},
		{schemas.StageLabelsink, []string{"labelsink"}},
		{schemas.StageTrainer, []string{"trainer", "--train-bootstrap=false"}},
		{natsauth.RoleAdmin, []string{"dashboard"}},
		{natsauth.RoleIngest, []string{"reconcile", "--reconcile-interval", "1s", "--grace", "0"}},
	}
	logs := map[string]*syncBuffer{}
	var reconcileAddr string
	for _, p := range procs {
		d.as(p.role)
		addr := freeAddr(t)
		logs[p.args[0]], _ = startProcess(t, addr, append(p.args, "--http", addr)...)
		cover(p.args[0])
		if p.args[0] == "reconcile" {
			reconcileAddr = addr
		}
	}

	// An upload, announced by the reconcilers (MinIO has no NATS target
	// here), goes through to the promoted model in canary.
	d.as(natsauth.RoleIngest)
	d.run("put", "--class", "amd", filepath.Join(testenv.GoldenDir(t), "amd_0000.jpg"))
	cover("put")
	js := d.nats.admin(t)
	deadline := time.Now().Add(90 * time.Second)
	var preds []string
	for time.Now().Before(deadline) {
		preds = nil
		for _, m := range testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvCanary)) {
			preds = append(preds, string(m.Data()))
		}
		if len(preds) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(preds) != 1 || !strings.Contains(preds[0], `"fundus-tiny"`) {
		t.Fatalf("canary predictions %v: want one by fundus-tiny v1\n%s", preds, lastBytes(logs["classifier"].String(), 4<<10))
	}

	var status string
	// The reconciler serves /metrics on --http and logs one line per pass.
	for time.Now().Before(deadline) && len(reconcilePasses(t, logs["reconcile"].String())) < 2 {
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(reconcilePasses(t, logs["reconcile"].String())); n < 2 {
		t.Errorf("reconcile --reconcile-interval 1s logged %d passes", n)
	}
	resp, err := http.Get("http://" + reconcileAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `eyeflow_reconcile_passes_total{result="ok"}`) {
		t.Errorf("reconcile's /metrics has no eyeflow_reconcile_passes_total:\n%s", lastBytes(string(body), 2<<10))
	}

	// The standalone classifier registered nothing: prod serves nothing,
	// the registry holds the pushed version only.
	d.as(natsauth.RoleAdmin)
	if err := json.Unmarshal([]byte(d.run("model", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "fundus-tiny" {
		t.Errorf("after the stages started the registry holds %+v: a standalone stage registered a model", list)
	}

	// The wrong object store is refused, with the reason, before anything
	// is created in it: without --s3 (the JetStream object store) ...
	t.Setenv("EYEFLOW_S3", "")
	for _, args := range [][]string{
		{"model", "list"},
		{"model", "push", model, "--name", "fundus-tiny", "--version", "v9"},
		{"model", "promote", "--env", schemas.EnvStaging, "fundus-tiny", "v1"},
		{"put", "--class", "amd", filepath.Join(testenv.GoldenDir(t), "amd_0000.jpg")},
		{"split", "report"},
		{"resize", "--http", freeAddr(t)},
	} {
		out, err := d.try(args...)
		if err == nil || !strings.Contains(err.Error(), "not the deployment's object store") || !strings.Contains(err.Error(), d.minio.Endpoint) {
			t.Errorf("eyeflow %s without --s3: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if _, err := js.Stream(d.ctx, "OBJ_"+objstore.BucketModels); err == nil {
		t.Errorf("a refused command created the models bucket in the JetStream object store")
	}
	// ... or another S3 server.
	other := testenv.MinIO(t, testenv.MinIOOptions{})
	t.Setenv("EYEFLOW_S3", other.Endpoint)
	t.Setenv("EYEFLOW_S3_ACCESS_KEY", other.AccessKey)
	t.Setenv("EYEFLOW_S3_SECRET_KEY", other.SecretKey)
	if out, err := d.try("model", "push", model, "--name", "fundus-tiny", "--version", "v9"); err == nil || !strings.Contains(err.Error(), "not the deployment's object store") {
		t.Errorf("model push to another S3 server: %v\n%s", err, out)
	}
	t.Setenv("EYEFLOW_S3", d.minio.Endpoint)
	t.Setenv("EYEFLOW_S3_ACCESS_KEY", d.minio.AccessKey)
	t.Setenv("EYEFLOW_S3_SECRET_KEY", d.minio.SecretKey)

	// A promoted version the classifier cannot load (its model.onnx is
	// gone) is refused; status says so, with the reason, and what serves.
	broken := filepath.Join(t.TempDir(), "tiny3")
	d.run("model", "synth", "--arch", "tiny", "--name", "fundus-tiny", "--version", "v3", "--out", broken)
	d.run("model", "push", "--name", "fundus-tiny", "--version", "v3", broken)
	s3, err := objstore.NewS3(objstore.S3Config{Endpoint: d.minio.Endpoint, AccessKey: d.minio.AccessKey, SecretKey: d.minio.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.Client().RemoveObject(d.ctx, objstore.BucketModels, models.ModelKey("fundus-tiny", "v3", models.FileModel), minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	d.run("model", "promote", "--env", schemas.EnvCanary, "fundus-tiny", "v3")
	for {
		status = d.run("status")
		if strings.Contains(status, "REFUSED fundus-tiny v3 (serves fundus-tiny v1)") && strings.Contains(status, "refused: canary: the classifier refused fundus-tiny v3") &&
			strings.Contains(status, "object not found") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show canary's refusal of v3:\n%s", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(status, "object store: the S3 store at "+d.minio.Endpoint+" (recorded by eyeflow buckets init)") {
		t.Errorf("status does not name the deployment's object store:\n%s", status)
	}
	d.run("model", "promote", "--env", schemas.EnvCanary, "fundus-tiny", "v1")

	// A second version, promoted and rolled back.
	model2 := filepath.Join(t.TempDir(), "tiny2")
	d.run("model", "synth", "--arch", "tiny", "--name", "fundus-tiny", "--version", "v2", "--out", model2)
	d.run("model", "push", "--name", "fundus-tiny", "--version", "v2", model2)
	d.run("model", "promote", "--to", schemas.EnvCanary, "fundus-tiny", "v2")
	if out := d.run("model", "rollback", "--env", schemas.EnvCanary, "--reason", "test"); !strings.Contains(out, "canary now serves fundus-tiny v1 again") {
		t.Errorf("model rollback said %q", out)
	}
	cover("model", "rollback")

	// One-shot commands of operators and the demo, as admin.
	d.run("split", "report")
	cover("split", "report")
	d.run("split", "export", "--out", t.TempDir())
	cover("split", "export")
	// explain keys a patient by its pseudonym under the deployment's key,
	// which it reads from the cluster.
	if out := d.run("split", "explain", "--patient-id", "PAT-4711", "--class", "amd", filepath.Join(testenv.GoldenDir(t), "amd_0000.jpg")); !strings.Contains(out, "split key: patient ") {
		t.Errorf("split explain of a patient:\n%s", out)
	}
	cover("split", "explain")
	d.run("demo-annotate")
	cover("demo-annotate")
	status = d.run("status")
	if !strings.Contains(status, "EYE_UPLOADS") {
		t.Errorf("status:\n%s", status)
	}
	cover("status")
	d.as(natsauth.RoleIngest)
	d.run("reconcile", "--grace", "0")
	// train trains nothing here (no dataset): its credentials are read
	// and its settings checked before any work.
	d.as(schemas.StageTrainer)
	if out, err := d.try("train", "--train-timeout", "0s"); err == nil || !strings.Contains(err.Error(), "--train-timeout") {
		t.Errorf("train with credentials in the environment: %v\n%s", err, out)
	}
	cover("train")

	// status as a user that may not read the pipeline's state ends at
	// once and says which user it needs.
	d.as(schemas.StageResize)
	start := time.Now()
	_, err = d.try("status")
	if err == nil || !strings.Contains(err.Error(), natsauth.UserName(natsauth.RoleAdmin)) || time.Since(start) > 10*time.Second {
		t.Errorf("status as eyeflow-resize: %v after %s; want an error naming the admin user, at once", err, time.Since(start).Round(time.Millisecond))
	}
	// A wrong password is a login failure, not "is eyeflow up running?".
	t.Setenv("EYEFLOW_NATS_PASSWORD", "wrong")
	if _, err := d.try("model", "list"); err == nil ||
		strings.Contains(err.Error(), "running") || !strings.Contains(err.Error(), "refused the login") {
		t.Errorf("put with a wrong password: %v", err)
	}

	// up with the same environment: $EYEFLOW_NATS is where clients
	// connect, not a server for up to use; up listens on --nats-listen,
	// says so and how to upload in its first line.
	d.as(natsauth.RoleAdmin)
	listen, httpAddr := freeAddr(t), freeAddr(t)
	upLogs, stopUp := startProcess(t, httpAddr, "up", "--data", t.TempDir(), "--nats-listen", listen, "--http", httpAddr, "--processors", "resize")
	cover("up")
	firstLine, _, _ := strings.Cut(upLogs.String(), "\n")
	if !strings.Contains(firstLine, "eyeflow put --nats nats://"+listen) {
		t.Errorf("up's first log line does not say how to reach it at %s:\n%s", listen, firstLine)
	}
	if !strings.Contains(upLogs.String(), "$EYEFLOW_NATS (where clients connect) is not where this server listens") {
		t.Errorf("up did not warn that $EYEFLOW_NATS points elsewhere:\n%s", lastBytes(upLogs.String(), 4<<10))
	}
	stopUp()

	for name, l := range logs {
		for _, line := range strings.Split(l.String(), "\n") {
			if strings.Contains(line, `"level":"error"`) && !strings.Contains(line, `"version":"v3"`) { // v3's refusal was wanted
				t.Errorf("eyeflow %s logged an error: %s", name, line)
			}
		}
	}
	// Every secret stayed out of every log and output, the deployment's
	// pseudonym key (which buckets init made, resize and the splitter read)
	// too.
	pseudonyms, ok, err := deployment.ReadPseudonym(d.ctx, js)
	if err != nil || !ok || pseudonyms.Key == "" {
		t.Fatalf("no pseudonym key recorded by buckets init (%v)", err)
	}
	for _, v := range []string{d.minio.SecretKey, d.nats.pw[natsauth.RoleAdmin], d.nats.pw[schemas.StageResize], pseudonyms.Key} {
		for name, l := range logs {
			if strings.Contains(l.String(), v) {
				t.Errorf("eyeflow %s logged a secret", name)
			}
		}
	}

	// Every command that takes credentials ran above with them in the
	// environment.
	for _, words := range commandLines() {
		if _, group := groups()[words[0]]; group && len(words) == 1 {
			continue
		}
		flags := commandFlags(t, words)
		takes := false
		for _, f := range credentialFlags {
			_, ok := flags[f]
			takes = takes || ok
		}
		if takes && !covered[strings.Join(words, " ")] {
			t.Errorf("eyeflow %s takes credentials but TestPerProcessDeployment does not run it with them in the environment", strings.Join(words, " "))
		}
	}
}
