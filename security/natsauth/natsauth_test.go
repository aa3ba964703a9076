package natsauth_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"eyeflow/internal/stagetest"
	"eyeflow/pipeline"
	"flag"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/resize"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
	"eyeflow/security/natsauth"
	"eyeflow/stage"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

var update = flag.Bool("update", false, "rewrite deploy/nats/auth.conf from the permission table")

const checkedIn = "../../deploy/nats/auth.conf"

// TestCheckedInConfigMatches keeps deploy/nats/auth.conf in sync with the
// table (run with -update after changing it).
func TestCheckedInConfigMatches(t *testing.T) {
	var b bytes.Buffer
	if err := natsauth.Render(&b, natsauth.Users()); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(checkedIn, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(checkedIn)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.Bytes()) {
		t.Fatalf("%s is out of date: run `go test ./security/natsauth -run TestCheckedInConfigMatches -update`", checkedIn)
	}
}

// TestTableCoversTopology: every durable consumer of the topology is
// consumed by exactly one user, every stage may publish its DLQ subject and
// no user but admin has a wildcard over the whole JetStream API.
func TestTableCoversTopology(t *testing.T) {
	users := natsauth.Users()
	for _, c := range pipeline.Topology(bus.DefaultOptions()).Consumers {
		next := "$JS.API.CONSUMER.MSG.NEXT." + c.Stream + "." + c.Config.Durable
		n := 0
		for _, u := range users {
			if u.Role != natsauth.RoleAdmin && slices.Contains(u.Publish, next) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("consumer %s/%s: %d users may fetch from it, want 1", c.Stream, c.Config.Durable, n)
		}
	}
	// The upload ledger dead-letters like a stage (as the ingest user).
	for _, st := range pipeline.Names() {
		u, ok := natsauth.Find(users, st)
		if !ok || !slices.Contains(u.Publish, schemas.DLQSubject(st)) {
			t.Errorf("stage %s: no user publishing %s", st, schemas.DLQSubject(st))
		}
	}
	for _, u := range users {
		if u.Role == natsauth.RoleAdmin {
			continue
		}
		for _, s := range u.Publish {
			if s == ">" || strings.HasPrefix(s, "$JS.API.>") || s == "$JS.>" || s == "eye.>" || strings.HasPrefix(s, "_INBOX") {
				t.Errorf("user %s may publish %q", u.Name, s)
			}
		}
		if len(u.Subscribe) != 1 || u.Subscribe[0] != u.InboxPrefix+".>" {
			t.Errorf("user %s subscribes %v, want only its inbox", u.Name, u.Subscribe)
		}
	}
}

// authEnv is an embedded server running the rendered configuration.
type authEnv struct {
	url       string
	passwords map[string]string
}

func startAuthServer(t *testing.T) *authEnv {
	t.Helper()
	dir := t.TempDir()
	env := &authEnv{passwords: map[string]string{}}
	for _, u := range natsauth.Users() {
		pw := "pw-" + u.Role + "-" + strings.Repeat("x", 16)
		env.passwords[u.Role] = pw
		t.Setenv(u.PasswordEnv, pw)
	}
	conf := filepath.Join(dir, "auth.conf")
	var b bytes.Buffer
	if err := natsauth.Render(&b, natsauth.Users()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	users, err := bus.LoadUsers(conf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := bus.StartServer(bus.ServerOptions{Name: "auth", Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "js"), Users: users, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	env.url = srv.ClientURL()

	_, js, _ := env.connect(t, natsauth.RoleAdmin)
	ctx := testenv.Context(t, time.Minute)
	if err := bus.Apply(ctx, js, pipeline.Topology(testenv.TopologyOptions())); err != nil {
		t.Fatal(err)
	}
	store := objstore.NewJetStream(js)
	for _, bk := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, bk); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// connect logs in as a role's user with its private inbox prefix, as the
// processors do, and collects the asynchronous errors (permission
// violations arrive that way).
func (e *authEnv) connect(t *testing.T, role string) (*nats.Conn, jetstream.JetStream, chan error) {
	t.Helper()
	u, ok := natsauth.Find(natsauth.Users(), role)
	if !ok {
		t.Fatalf("no user for %s", role)
	}
	name := u.Name
	errs := make(chan error, 64)
	nc, err := nats.Connect(e.url, nats.UserInfo(name, e.passwords[role]),
		nats.CustomInboxPrefix(u.InboxPrefix),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return nc, js, errs
}

func smallJPEG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for i := range 64 * 48 {
		img.Set(i%64, i/64, color.RGBA{uint8(i), uint8(i / 3), 90, 255})
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestStagesRunUnderTheirUsers: ingest uploads an image and publishes its
// event, resize and splitter process it, each logged in as its own user
// with only the table's permissions: the pipeline works end to end.
func TestStagesRunUnderTheirUsers(t *testing.T) {
	env := startAuthServer(t)
	ctx := testenv.Context(t, time.Minute)

	_, ingestJS, ingestErrs := env.connect(t, natsauth.RoleIngest)
	data := smallJPEG(t)
	info, err := objstore.NewJetStream(ingestJS).Put(ctx, objstore.BucketRaw, "amd/a.jpg", bytes.NewReader(data), int64(len(data)), objstore.PutOptions{})
	if err != nil {
		t.Fatalf("ingest put into raw: %v", err)
	}
	ev, _ := json.Marshal(schemas.NewUploadEvent(schemas.Upload{Bucket: info.Bucket, Key: info.Key, Size: info.Size, ETag: info.ETag}))
	if _, err := ingestJS.Publish(ctx, schemas.SubjectUploads, ev); err != nil {
		t.Fatalf("ingest publish %s: %v", schemas.SubjectUploads, err)
	}

	_, resizeJS, resizeErrs := env.connect(t, schemas.StageResize)
	cfg := resize.DefaultConfig()
	cfg.Store = objstore.NewJetStream(resizeJS)
	scfg := splitter.DefaultConfig()
	scfg.Patients = stagetest.Patients(t, scfg.Salt)
	cfg.Patients = scfg.Patients
	r, err := resize.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stagetest.Run(t, resizeJS, resize.Processor(r, 1, zerolog.Nop(), stage.NewMetrics(prometheus.NewRegistry())))

	_, splitJS, splitErrs := env.connect(t, schemas.StageSplitter)
	sp, err := splitter.New(scfg, objstore.NewJetStream(splitJS))
	if err != nil {
		t.Fatal(err)
	}
	stagetest.Run(t, splitJS, splitter.Processor(sp, zerolog.Nop(), stage.NewMetrics(prometheus.NewRegistry())))

	_, adminJS, _ := env.connect(t, natsauth.RoleAdmin)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := adminJS.Stream(ctx, bus.StreamSplits)
		if err != nil {
			t.Fatal(err)
		}
		if st.CachedInfo().State.Msgs >= 1 {
			break
		}
		if time.Now().After(deadline) {
			dl := testenv.StreamMessages(t, adminJS, bus.StreamDLQ, schemas.SubjectDLQAll)
			t.Fatalf("no split event after 30s; %d dead letters", len(dl))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(testenv.StreamMessages(t, adminJS, bus.StreamResized, schemas.SubjectResized)); n != 1 {
		t.Fatalf("%d resized events, want 1", n)
	}
	for name, ch := range map[string]chan error{"ingest": ingestErrs, "resize": resizeErrs, "splitter": splitErrs} {
		select {
		case err := <-ch:
			t.Errorf("%s got an asynchronous error running within its permissions: %v", name, err)
		default:
		}
	}
}

// TestProcessorsCannotPublishOthersSubjects: a processor's credentials do
// not let it forge another stage's events, read another's buckets or
// listen on another's inbox.
func TestProcessorsCannotPublishOthersSubjects(t *testing.T) {
	env := startAuthServer(t)
	tests := []struct {
		role    string
		allowed string
		denied  []string
	}{
		{schemas.StageResize, schemas.SubjectResized, []string{schemas.PredictionSubject(schemas.EnvProd), schemas.SplitSubject(schemas.SplitTrain), schemas.SubjectUploads, schemas.DLQSubject(schemas.StageClassifier)}},
		{schemas.StageSplitter, schemas.SplitSubject(schemas.SplitTrain), []string{schemas.SubjectResized, schemas.PredictionSubject(schemas.EnvProd), schemas.SubjectRetrain}},
		{schemas.StageClassifier, schemas.PredictionSubject(schemas.EnvCanary), []string{schemas.SplitSubject(schemas.SplitTrain), schemas.DriftSubject(schemas.EnvProd), "$KV." + bus.KVModels + ".prod"}},
		{schemas.StageDriftwatch, schemas.DriftSubject(schemas.EnvProd), []string{schemas.PredictionSubject(schemas.EnvProd), schemas.SubjectUploads}},
		{schemas.StageLabelsink, schemas.SubjectRetrain, []string{schemas.PredictionSubject(schemas.EnvProd), schemas.SubjectUploads}},
		{natsauth.RoleIngest, schemas.SubjectUploads, []string{schemas.SubjectResized, "$O." + objstore.BucketModels + ".M.x"}},
		{natsauth.RoleMinIO, schemas.SubjectUploads, []string{schemas.SubjectResized, "$O." + objstore.BucketRaw + ".M.x", "$JS.API.STREAM.DELETE." + bus.StreamUploads}},
	}
	for _, tt := range tests {
		t.Run(tt.role, func(t *testing.T) {
			nc, js, errs := env.connect(t, tt.role)
			ctx := testenv.Context(t, 30*time.Second)
			if _, err := js.Publish(ctx, tt.allowed, []byte(`{}`)); err != nil {
				t.Fatalf("publish to its own %s: %v", tt.allowed, err)
			}
			for _, subj := range tt.denied {
				if err := nc.Publish(subj, []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
				if err := nc.Flush(); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-errs:
					if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), subj) {
						t.Fatalf("publish %s: %v, want a permission violation naming it", subj, err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("publish %s as %s: no permission violation", subj, tt.role)
				}
			}
			// Another user's inbox is off limits: replies there can carry
			// object chunks and API answers.
			other := natsauth.InboxPrefix(natsauth.UserName(natsauth.RoleAdmin)) + ".>"
			if _, err := nc.SubscribeSync(other); err != nil {
				t.Fatal(err)
			}
			_ = nc.Flush()
			select {
			case err := <-errs:
				if !errors.Is(err, nats.ErrPermissionViolation) {
					t.Fatalf("subscribe %s: %v, want a permission violation", other, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("subscribe %s as %s: no permission violation", other, tt.role)
			}
		})
	}
	// Nothing denied reached a stream: the forged events were dropped.
	_, adminJS, _ := env.connect(t, natsauth.RoleAdmin)
	if n := len(testenv.StreamMessages(t, adminJS, bus.StreamPredictions, schemas.PredictionSubject(schemas.EnvProd))); n != 0 {
		t.Fatalf("%d forged predictions stored", n)
	}
	// Resize may not even look at the models bucket.
	_, resizeJS, _ := env.connect(t, schemas.StageResize)
	if _, err := resizeJS.ObjectStore(testenv.Context(t, 5*time.Second), objstore.BucketModels); err == nil {
		t.Fatal("resize opened the models bucket")
	}
}

// TestAuthRequired: with the users loaded, anonymous clients and wrong
// passwords are refused.
func TestAuthRequired(t *testing.T) {
	env := startAuthServer(t)
	if nc, err := nats.Connect(env.url); err == nil {
		nc.Close()
		t.Fatal("anonymous connection accepted")
	}
	if nc, err := nats.Connect(env.url, nats.UserInfo(natsauth.UserName(schemas.StageResize), "wrong")); err == nil {
		nc.Close()
		t.Fatal("wrong password accepted")
	}
}

// TestDeployServerConfig: deploy/nats/nats-server.conf (which includes the
// checked-in auth.conf) loads with every password in the environment, and
// refuses to load when one is missing rather than leave a user open.
func TestDeployServerConfig(t *testing.T) {
	const conf = "../../deploy/nats/nats-server.conf"
	users := natsauth.Users()
	for _, u := range users {
		t.Setenv(u.PasswordEnv, "pw-"+u.Role)
	}
	got, err := bus.LoadUsers(conf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(users) {
		t.Fatalf("%d users loaded, want %d", len(got), len(users))
	}
	for _, u := range got {
		if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
			t.Errorf("user %s has no publish/subscribe permissions", u.Username)
		}
	}
	os.Unsetenv(natsauth.PasswordEnv(schemas.StageResize))
	if _, err := bus.LoadUsers(conf); err == nil {
		t.Fatal("loaded with a password variable missing")
	}
}
