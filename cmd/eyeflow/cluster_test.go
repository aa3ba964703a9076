package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/models"
	"eyeflow/pipeline"
	"eyeflow/schemas"
)

// composeValue resolves compose's ${VAR:-default} and ${VAR:?error} as an
// operator's .env would: the default, or a value of the test's for a
// variable .env must set.
var composeVar = regexp.MustCompile(`\$\{([A-Z0-9_]+)(:-([^}]*)|:\?[^}]*)?\}`)

func composeValue(v any) string {
	s := fmt.Sprint(v)
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		sub := composeVar.FindStringSubmatch(m)
		if strings.HasPrefix(sub[2], ":-") {
			return sub[3]
		}
		return "test-" + strings.ToLower(sub[1])
	})
}

// serviceArgs is a compose service's eyeflow command line with its
// EYEFLOW_* settings as the flags they are the variables of (in-process
// commands share one environment), less what this machine gives every
// process: where NATS, S3 and HTTP are, and the logins of an
// authenticated cluster (TestPerProcessDeployment and
// TestIngestRecordsMinIOEventsOnce run those).
func serviceArgs(t *testing.T, args []string, env map[string]any, override map[string]string) []string {
	t.Helper()
	words := args[:1]
	if verbs[args[0]] {
		words = args[:2]
	}
	flagOf := map[string]string{}
	for flag, v := range commandFlags(t, words) {
		flagOf[v] = flag
	}
	out := slices.Clone(words)
	rest := args[len(words):]
	for i := 0; i < len(rest); i++ {
		flag := strings.TrimPrefix(rest[i], "--")
		value := ""
		if i+1 < len(rest) && !strings.HasPrefix(rest[i+1], "--") {
			value = rest[i+1]
			i++
		}
		if v, ok := override[flag]; ok {
			value = v
		}
		if value != "-" {
			out = append(out, "--"+flag+"="+value)
		}
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch k {
		case "EYEFLOW_NATS", "EYEFLOW_S3", "EYEFLOW_S3_ACCESS_KEY", "EYEFLOW_S3_SECRET_KEY",
			"EYEFLOW_NATS_USER", "EYEFLOW_NATS_PASSWORD", "EYEFLOW_HTTP":
			continue
		}
		flag, ok := flagOf[k]
		if !ok {
			t.Fatalf("eyeflow %s has no flag for %s", strings.Join(words, " "), k)
		}
		if slices.Contains(credentialFlags, flag) {
			// Secrets are refused on the command line: the environment,
			// as compose gives them (one value per variable here).
			t.Setenv(k, composeValue(env[k]))
			continue
		}
		if _, set := override[flag]; set || slices.ContainsFunc(out, func(a string) bool { return strings.HasPrefix(a, "--"+flag+"=") }) {
			continue
		}
		out = append(out, "--"+flag+"="+composeValue(env[k]))
	}
	for flag, v := range override {
		if v != "-" && !slices.ContainsFunc(out, func(a string) bool { return strings.HasPrefix(a, "--"+flag+"=") }) && commandFlags(t, words)[flag] != "" {
			out = append(out, "--"+flag+"="+v)
		}
	}
	return out
}

// TestComposeOnACluster runs the deployment compose.yaml describes: its init
// job, then every eyeflow service's own command line, as many instances as
// it deploys, as processes in this one (each on its own NATS connection and
// HTTP port), against a three-node JetStream cluster and MinIO, which
// announces uploads into eye.uploads itself. Only the addresses change, and
// three settings to fit a test's time: the duplicate window (3s), the
// reconcile interval (4s) and grace (5s), so that reconcile passes come
// further apart than the duplicate window, where a pass that re-announced
// an object would have it resized again. Then: every upload is resized and
// predicted exactly once, no pass re-announces anything, and once every
// stage has started, every stream, consumer and KV bucket still has three
// replicas.
func TestComposeOnACluster(t *testing.T) {
	clearEyeflowEnv(t)
	const replicas = 3
	c := testenv.Cluster(t, replicas)
	minio := testenv.MinIO(t, testenv.MinIOOptions{NATSAddress: strings.TrimPrefix(strings.Split(c.URL, ",")[0], "nats://")})
	for k, v := range map[string]string{
		"EYEFLOW_NATS":          c.URL,
		"EYEFLOW_S3":            minio.Endpoint,
		"EYEFLOW_S3_ACCESS_KEY": minio.AccessKey,
		"EYEFLOW_S3_SECRET_KEY": minio.SecretKey,
		"EYEFLOW_ORT_LIB":       testenv.ORTLibrary(t), // the image's
	} {
		t.Setenv(k, v)
	}
	ctx := testenv.Context(t, 6*time.Minute)
	services := readCompose(t)
	override := map[string]string{
		"duplicates":         "3s",
		"reconcile-interval": "4s",
		"grace":              "5s",
		"notify-arn":         minio.ARN,
		"labelstudio-url":    "-", // no Label Studio here
		"metrics-urls":       "-", // compose's host names
		"log-format":         "json",
	}

	var out, cmdLogs bytes.Buffer
	for _, args := range eyeflowCommands(t, "init", services["init"]) {
		args = serviceArgs(t, args, services["init"].Environment, override)
		if err := run(ctx, args, &out, &cmdLogs); err != nil {
			t.Fatalf("init: eyeflow %s: %v\n%s", strings.Join(args, " "), err, cmdLogs.String())
		}
	}
	// The standalone classifier never registers a model: the operator
	// pushes and promotes one.
	model := filepath.Join(t.TempDir(), "tiny")
	for _, args := range [][]string{
		{"model", "synth", "--arch", "tiny", "--out", model},
		{"model", "push", model, "--name", models.TinyName, "--version", models.TinyVersion},
		{"model", "promote", "--env", schemas.EnvProd, "--reason", "the test's model", models.TinyName, models.TinyVersion},
	} {
		if err := run(ctx, args, &out, &cmdLogs); err != nil {
			t.Fatalf("eyeflow %s: %v\n%s", strings.Join(args, " "), err, cmdLogs.String())
		}
	}

	names := make([]string, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	slices.Sort(names)
	logs := map[string]*syncBuffer{}
	httpOf := map[string][]string{} // command -> HTTP addresses of its instances
	for _, name := range names {
		s := services[name]
		if s.Image != "eyeflow:latest" || name == "init" {
			continue
		}
		for _, args := range eyeflowCommands(t, name, s) {
			args = serviceArgs(t, args, s.Environment, override)
			for i := range max(s.Deploy.Replicas, 1) {
				addr := freeAddr(t)
				logs[fmt.Sprintf("%s-%d", name, i)], _ = startProcess(t, addr, append(args, "--http", addr)...)
				httpOf[args[0]] = append(httpOf[args[0]], addr)
			}
		}
	}
	for _, st := range pipeline.Stages() {
		if len(httpOf[st.Name]) == 0 {
			t.Fatalf("compose.yaml runs no %s", st.Name)
		}
	}
	if n := len(httpOf[schemas.StageResize]); n < 2 {
		t.Fatalf("compose.yaml runs %d resize instances; this test wants the two that share a consumer", n)
	}

	// Uploads, announced by MinIO.
	const uploads = 6
	dir, _ := splitDemoData(t, uploads, 0)
	if err := run(ctx, []string{"put", dir}, &out, &cmdLogs); err != nil {
		t.Fatalf("put: %v\n%s", err, cmdLogs.String())
	}
	_, js := testenv.Connect(t, c.URL)
	deadline := time.Now().Add(2 * time.Minute)
	for len(testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvProd))) < uploads {
		if time.Now().After(deadline) {
			t.Fatalf("prod predicted %d of %d uploads", len(testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvProd))), uploads)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Two passes over every object, once none is within the grace period,
	// further apart than the duplicate window.
	ingestLogs := logs["ingest-0"]
	if ingestLogs == nil {
		t.Fatal("no ingest service")
	}
	passes := waitFullPasses(t, ingestLogs, uploads, 2)
	for _, p := range passes {
		if p.Published != 0 {
			t.Errorf("a reconcile pass published %d events for objects MinIO had announced: %+v", p.Published, passes)
			break
		}
	}
	for _, cons := range []string{bus.ConsumerResize, bus.ConsumerIngestLedger} {
		testenv.WaitConsumerIdle(t, js, bus.StreamUploads, cons)
	}
	testenv.WaitConsumerIdle(t, js, bus.StreamResized, bus.ConsumerSplitter)
	testenv.WaitConsumerIdle(t, js, bus.StreamSplits, bus.ClassifierConsumer(schemas.EnvProd))

	resized := 0
	for _, addr := range httpOf[schemas.StageResize] {
		resized += processedBy(t, addr, schemas.StageResize)
	}
	if resized != uploads {
		t.Errorf("the resize instances processed %d uploads, want each of the %d once", resized, uploads)
	}
	for what, got := range map[string]int{
		"eye.uploads": len(testenv.StreamMessages(t, js, bus.StreamUploads, schemas.SubjectUploads)),
		"eye.resized": len(testenv.StreamMessages(t, js, bus.StreamResized, schemas.SubjectResized)),
		"eye.split.*": len(testenv.StreamMessages(t, js, bus.StreamSplits, schemas.SubjectSplitAll)),
	} {
		if got != uploads {
			t.Errorf("%s holds %d events, want %d", what, got, uploads)
		}
	}
	predicted := map[string]int{}
	for _, m := range testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvProd)) {
		p, err := schemas.DecodePrediction(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		predicted[p.ImageID]++
	}
	if len(predicted) != uploads {
		t.Errorf("prod predicted %d images, want %d", len(predicted), uploads)
	}
	for id, n := range predicted {
		if n != 1 {
			t.Errorf("prod predicted image %s %d times", id, n)
		}
	}

	// Every stage has started: nothing shrank or appeared at one replica.
	for name := range js.StreamNames(ctx).Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.Replicas; got != replicas {
			t.Errorf("stream %s has %d replicas after every stage started, want %d", name, got, replicas)
		}
	}
	topo := pipeline.Topology(bus.DefaultOptions())
	for _, kv := range topo.KV {
		st, err := js.Stream(ctx, "KV_"+kv.Bucket)
		if err != nil {
			t.Errorf("KV bucket %s: %v", kv.Bucket, err)
			continue
		}
		if got := st.CachedInfo().Config.Replicas; got != replicas {
			t.Errorf("KV bucket %s has %d replicas, want %d", kv.Bucket, got, replicas)
		}
	}
	for _, cs := range topo.Consumers {
		cons, err := js.Consumer(ctx, cs.Stream, cs.Config.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", cs.Config.Durable, err)
		}
		if got := cons.CachedInfo().Config.Replicas; got != replicas {
			t.Errorf("consumer %s on %s has %d replicas, want %d", cs.Config.Durable, cs.Stream, got, replicas)
		}
	}
	for name, l := range logs {
		for _, line := range strings.Split(l.String(), "\n") {
			if strings.Contains(line, `"level":"error"`) {
				t.Errorf("%s logged an error: %s", name, line)
			}
		}
	}
}
