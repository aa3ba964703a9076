package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/dashboard"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/driftwatch"
	"eyeflow/schemas"

	"github.com/rs/zerolog"
)

func TestValidThumbKey(t *testing.T) {
	const prefix = "transformed_eye_dataset"
	id := strings.Repeat("ab", 32)
	tests := []struct {
		key  string
		want bool
	}{
		{prefix + "/train/amd/" + id + ".png", true},
		{prefix + "/holdout_2/diabetic_retinopathy/" + id + ".png", true},
		{prefix + "/test/stage.2/" + id + ".png", true},
		{prefix + "/unlabeled/amd/" + id + ".png", false}, // not a dataset folder
		{prefix + "/train/amd/" + id + ".jpg", false},
		{prefix + "/train/" + id + ".png", false},
		{prefix + "/train/amd/x/" + id + ".png", false},
		{prefix + "/train/../amd/" + id + ".png", false},
		{prefix + "/train/../../raw/" + id + ".png", false},
		{prefix + "/train/../" + id + ".png", false},
		{prefix + "/train/amd/..png", false},
		{prefix + "/train/amd/...png", false},
		{prefix + "/train/amd%2F..%2F/" + id + ".png", false},
		{prefix + "/train/amd\\..\\/" + id + ".png", false},
		{prefix + "/train/amd/" + id + ".png\x00", false},
		{"/" + prefix + "/train/amd/" + id + ".png", false},
		{"other/train/amd/" + id + ".png", false},
		{prefix + "x/train/amd/" + id + ".png", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := dashboard.ValidThumbKey(prefix, tt.key); got != tt.want {
			t.Errorf("ValidThumbKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
	if dashboard.ValidThumbKey("", "train/amd/"+id+".png") {
		t.Error("an empty prefix must accept nothing")
	}
}

func pred(env, version, split, truth, predicted, id string) schemas.Prediction {
	return schemas.Prediction{Schema: schemas.SchemaPrediction, ImageID: id, Env: env, ModelName: "m", ModelVersion: version,
		Split: split, TrueLabel: truth, PredictedClass: predicted, Confidence: 0.9, Time: time.Unix(1700000000, 0).UTC()}
}

func TestComputeQuality(t *testing.T) {
	tests := []struct {
		name  string
		preds []schemas.Prediction
		// want per "env/version": holdout_1, holdout_2, holdout_3, all as "correct/total"
		want      map[string][4]string
		wantOrder []string
		// wantCells: "env/version true>pred" -> count
		wantCells map[string]int
	}{
		{
			name: "per holdout, train and unlabelled ignored",
			preds: []schemas.Prediction{
				pred("prod", "v1", "holdout_1", "amd", "amd", "a"),
				pred("prod", "v1", "holdout_1", "amd", "normal", "b"),
				pred("prod", "v1", "holdout_2", "normal", "normal", "c"),
				pred("prod", "v1", "train", "normal", "amd", "d"),
				pred("prod", "v1", "unlabeled", "", "amd", "e"),
			},
			want:      map[string][4]string{"prod/v1": {"1/2", "1/1", "0/0", "2/3"}},
			wantOrder: []string{"prod/v1"},
			wantCells: map[string]int{"prod/v1 amd>amd": 1, "prod/v1 amd>normal": 1, "prod/v1 normal>normal": 1, "prod/v1 normal>amd": 0},
		},
		{
			name: "an image counts once per version, with its latest prediction",
			preds: []schemas.Prediction{
				pred("prod", "v1", "holdout_3", "amd", "normal", "a"),
				pred("prod", "v1", "holdout_3", "amd", "amd", "a"),
			},
			want:      map[string][4]string{"prod/v1": {"0/0", "0/0", "1/1", "1/1"}},
			wantOrder: []string{"prod/v1"},
			wantCells: map[string]int{"prod/v1 amd>amd": 1},
		},
		{
			name: "envs in pipeline order, versions apart",
			preds: []schemas.Prediction{
				pred("staging", "v3", "holdout_1", "amd", "amd", "a"),
				pred("canary", "v2", "holdout_1", "amd", "cataract", "a"),
				pred("prod", "v1", "holdout_1", "amd", "amd", "a"),
				pred("prod", "v2", "holdout_1", "amd", "amd", "a"),
			},
			want: map[string][4]string{
				"prod/v1": {"1/1", "0/0", "0/0", "1/1"}, "prod/v2": {"1/1", "0/0", "0/0", "1/1"},
				"canary/v2": {"0/1", "0/0", "0/0", "0/1"}, "staging/v3": {"1/1", "0/0", "0/0", "1/1"},
			},
			wantOrder: []string{"prod/v1", "prod/v2", "canary/v2", "staging/v3"},
			wantCells: map[string]int{"canary/v2 amd>cataract": 1, "canary/v2 cataract>cataract": 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := dashboard.ComputeQuality(tt.preds)
			var order []string
			for _, m := range got {
				k := m.Env + "/" + m.ModelVersion
				order = append(order, k)
				want, ok := tt.want[k]
				if !ok {
					t.Fatalf("unexpected model %s", k)
				}
				accs := append(append([]dashboard.Accuracy{}, m.Holdouts...), m.All)
				for i, a := range accs {
					if s := fmt.Sprintf("%d/%d", a.Correct, a.Total); s != want[i] {
						t.Errorf("%s %s = %s, want %s", k, a.Split, s, want[i])
					}
				}
				sum := 0
				for i, row := range m.Confusion.Cells {
					n := 0
					for _, c := range row {
						n += c
					}
					if n != m.Confusion.RowTotals[i] {
						t.Errorf("%s row %s totals %d, cells add to %d", k, m.Confusion.Classes[i], m.Confusion.RowTotals[i], n)
					}
					sum += n
				}
				if sum != m.All.Total {
					t.Errorf("%s confusion holds %d images, accuracy counted %d", k, sum, m.All.Total)
				}
			}
			if fmt.Sprint(order) != fmt.Sprint(tt.wantOrder) {
				t.Errorf("order %v, want %v", order, tt.wantOrder)
			}
			for spec, want := range tt.wantCells {
				key, cell, _ := strings.Cut(spec, " ")
				truth, predicted, _ := strings.Cut(cell, ">")
				got := cellOf(got, key, truth, predicted)
				if got != want {
					t.Errorf("%s: %d, want %d", spec, got, want)
				}
			}
		})
	}
}

func cellOf(ms []dashboard.ModelQuality, key, truth, predicted string) int {
	for _, m := range ms {
		if m.Env+"/"+m.ModelVersion != key {
			continue
		}
		ti, pi := -1, -1
		for i, c := range m.Confusion.Classes {
			if c == truth {
				ti = i
			}
			if c == predicted {
				pi = i
			}
		}
		if ti < 0 || pi < 0 {
			return 0
		}
		return m.Confusion.Cells[ti][pi]
	}
	return -1
}

func TestRates(t *testing.T) {
	counts := map[string]float64{"resize": 10}
	r := dashboard.NewRates(func(context.Context) (map[string]float64, error) {
		out := map[string]float64{}
		for k, v := range counts {
			out[k] = v
		}
		return out, nil
	}, time.Minute)
	ctx := context.Background()
	r.Sample(ctx)
	if tp, _ := r.Get(); tp["resize"].Known || tp["resize"].Processed != 10 {
		t.Fatalf("after one sample %+v: want the total and no rate yet", tp["resize"])
	}
	time.Sleep(20 * time.Millisecond)
	counts["resize"] = 20
	r.Sample(ctx)
	tp, _ := r.Get()
	if !tp["resize"].Known || tp["resize"].Processed != 20 || tp["resize"].PerMinute <= 0 {
		t.Fatalf("after two samples %+v: want a positive rate", tp["resize"])
	}
}

// fixture is a JetStream server with the topology, a dataset in the
// processed bucket and events on every stream the dashboard reads.
type fixture struct {
	env   *testenv.NATSEnv
	store objstore.Store
	keys  []string
	png   []byte
}

func pngBytes(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = 200
	}
	img.Set(1, 1, color.RGBA{255, 0, 0, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := testenv.NATS(t, testenv.TopologyOptions())
	ctx := testenv.Context(t, time.Minute)
	f := &fixture{env: env, store: objstore.NewJetStream(env.JS), png: pngBytes(t)}
	if err := f.store.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
		t.Fatal(err)
	}
	put := func(key string) {
		if _, err := f.store.Put(ctx, objstore.BucketProcessed, key, bytes.NewReader(f.png), int64(len(f.png)), objstore.PutOptions{ContentType: "image/png"}); err != nil {
			t.Fatal(err)
		}
		f.keys = append(f.keys, key)
	}
	for i := range 3 {
		put(fmt.Sprintf("transformed_eye_dataset/train/amd/%064d.png", i))
	}
	put("transformed_eye_dataset/train/normal/" + strings.Repeat("f", 64) + ".png")
	put("transformed_eye_dataset/test/normal/" + strings.Repeat("e", 64) + ".png")
	put("transformed_eye_dataset/holdout_1/normal/" + strings.Repeat("e", 64) + ".png")

	publish := func(subject string, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.Publish(ctx, subject, data); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	publish(schemas.PredictionSubject("prod"), pred("prod", "v1", "holdout_1", "normal", "normal", "e1"))
	publish(schemas.PredictionSubject("prod"), pred("prod", "v1", "holdout_1", "amd", "normal", "e2"))
	publish(schemas.PredictionSubject("canary"), pred("canary", "v2", "holdout_2", "amd", "amd", "e2"))
	for i, reason := range []string{"bad_input", "max_deliveries", "bad_input"} {
		publish(schemas.DLQSubject("resize"), schemas.DeadLetter{Schema: schemas.SchemaDeadLetter, Stage: "resize", Subject: "eye.uploads",
			Stream: bus.StreamUploads, Sequence: uint64(i + 1), Reason: reason, Error: "cannot decode <script>", Permanent: reason == "bad_input", Time: time.Now()})
	}
	publish(schemas.SubjectModels, schemas.ModelEvent{Schema: schemas.SchemaModel, EventID: "e1", Kind: schemas.ModelPromoted, Name: "fundus", Version: "v2-abc",
		Engine: "embedded", FromEnv: "staging", ToEnv: "canary", PreviousVersion: "v1", Reason: "beats <prod>",
		Metrics: map[string]schemas.HoldoutMetrics{"holdout_2": {Images: 40, Accuracy: 0.825}, "holdout_3": {Images: 41, Accuracy: 0.8, MacroF1: 0.71}}, Time: time.Now()})
	publish(schemas.SubjectModels, schemas.ModelEvent{Schema: schemas.SchemaModel, EventID: "e2", Kind: schemas.ModelRefused, Name: "fundus", Version: "v3-def",
		Reason: "holdout_2 macro-F1 0.70 does not beat prod's", Time: time.Now()})
	publish(schemas.DriftSubject("prod"), schemas.DriftAlert{Schema: schemas.SchemaDrift, AlertID: "low_confidence_streak-1", Env: "prod",
		ModelVersion: "v1", Signal: "low_confidence_streak", State: "firing", Threshold: 0.5, ImageIDs: []string{"a"}, Time: time.Now()})

	models, err := env.JS.KeyValue(ctx, bus.KVModels)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := models.Put(ctx, "prod", []byte(`{"name":"densenet121","version":"v1","promoted_at":"2026-01-02T03:04:05Z"}`)); err != nil {
		t.Fatal(err)
	}
	dw, err := env.JS.KeyValue(ctx, bus.KVDriftwatch)
	if err != nil {
		t.Fatal(err)
	}
	st := driftwatch.State{Env: "prod", ModelVersion: "v1", LastSeq: 2}
	st.Streak.Firing, st.Streak.Len = true, 7
	data, _ := json.Marshal(st)
	if _, err := dw.Put(ctx, driftwatch.StateKey("prod", "v1"), data); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) dashboard(t *testing.T, token string) (*dashboard.Dashboard, *httptest.Server) {
	t.Helper()
	d, err := dashboard.New(dashboard.Config{NC: f.env.Conn, JS: f.env.JS, Store: f.store, Token: token, Window: 100,
		CacheFor: time.Millisecond, FeedBuffer: 4, Log: zerolog.Nop(),
		Counters: func(context.Context) (map[string]float64, error) { return map[string]float64{"resize": 42}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "open\n") })
	d.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return d, srv
}

func get(t *testing.T, c *http.Client, u string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestPagesAgainstJetStream(t *testing.T) {
	f := newFixture(t)
	d, srv := f.dashboard(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	c := srv.Client()

	tests := []struct {
		path   string
		status int
		want   []string
		// notWant must not appear: unescaped input, for one
		notWant []string
	}{
		{"/dashboard/dataset?split=train&n=2", 200, []string{
			`data-split="train" data-class="amd"><span class="n">3</span>`,
			`data-split="test" data-class="normal"><span class="n">1</span>`,
			`data-split="holdout_1" data-class="normal"><span class="n">1</span>`,
			`/dashboard/thumb?key=transformed_eye_dataset%2ftrain%2famd%2f` + fmt.Sprintf("%064d", 0) + `.png`,
			"showing 2",
		}, []string{"/train/amd/" + fmt.Sprintf("%064d", 2)}},
		{"/dashboard/dataset?n=0", 200, []string{"No thumbnails requested"}, []string{"<img"}},
		{"/dashboard/pipeline", 200, []string{
			`<tr data-stage="resize">`, `data-dlq="3"`, "bad_input 2, max_deliveries 1", "EYE_PREDICTIONS", ">42<",
			"cannot decode &lt;script&gt;", "holdout_2",
		}, []string{"<script>"}},
		{"/dashboard/models", 200, []string{
			`data-env="prod"`, "densenet121 <code>v1</code>", `data-drift="firing"`, "run of 7",
			`data-split="holdout_1" data-correct="1" data-total="2"`, `data-split="holdout_2" data-correct="1" data-total="1"`,
			"low_confidence_streak", `class="matrix"`,
			// The timeline, newest first, with its figures and reasons (escaped).
			`<tr data-kind="refused" data-version="v3-def">`, `<tr data-kind="promoted" data-version="v2-abc">`,
			"staging → canary", `data-holdout="holdout_2">0.825<`, `data-holdout="holdout_3">0.800<`, "beats &lt;prod&gt;",
		}, []string{"beats <prod>"}},
		{"/dashboard/", 303, nil, nil},
		{"/dashboard/thumb?key=transformed_eye_dataset/train/../../raw/x.png", 400, nil, nil},
		{"/dashboard/thumb?key=" + url.QueryEscape("transformed_eye_dataset/train/amd/"+strings.Repeat("9", 64)+".png"), 404, nil, nil},
		{"/dashboard/static/style.css", 200, []string{"readable without colour"}, nil},
		{"/dashboard/nope", 404, nil, nil},
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, body, h := get(t, noRedirect, srv.URL+tt.path)
			if status != tt.status {
				t.Fatalf("status %d, want %d\n%s", status, tt.status, body)
			}
			if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("missing %q in\n%s", w, body)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("unexpected %q", w)
				}
			}
		})
	}

	status, body, h := get(t, c, srv.URL+"/dashboard/thumb?key="+url.QueryEscape(f.keys[0]))
	if status != 200 || body != string(f.png) || h.Get("Content-Type") != "image/png" {
		t.Fatalf("thumbnail: status %d, %d bytes, type %q", status, len(body), h.Get("Content-Type"))
	}
	status, body, _ = get(t, c, srv.URL+"/dashboard/api/status")
	var snap dashboard.Snapshot
	if err := json.Unmarshal([]byte(body), &snap); status != 200 || err != nil || len(snap.Streams) != 8 {
		t.Fatalf("api/status: %d %v %d streams", status, err, len(snap.Streams))
	}
}

func TestTokenProtectsTheDashboardOnly(t *testing.T) {
	f := newFixture(t)
	const token = "s3cret-token"
	_, srv := f.dashboard(t, token)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name   string
		path   string
		header []string
		status int
	}{
		{"no token", "/dashboard/pipeline", nil, 401},
		{"wrong bearer", "/dashboard/pipeline", []string{"Authorization", "Bearer nope"}, 401},
		{"bearer", "/dashboard/pipeline", []string{"Authorization", "Bearer " + token}, 200},
		{"thumbnails too", "/dashboard/thumb?key=" + url.QueryEscape(f.keys[0]), nil, 401},
		{"events too", "/dashboard/events", nil, 401},
		{"raw token as cookie", "/dashboard/pipeline", []string{"Cookie", dashboard.CookieName + "=" + token}, 401},
		{"metrics stay open", "/metrics", nil, 200},
		{"static stays open", "/dashboard/static/feed.js", nil, 200},
		{"login form", "/dashboard/login", nil, 200},
		{"wrong login", "/dashboard/login?token=nope", nil, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := get(t, noRedirect, srv.URL+tt.path, tt.header...)
			if status != tt.status {
				t.Fatalf("status %d, want %d\n%s", status, tt.status, body)
			}
		})
	}

	// A browser logs in once with ?token= and then uses the cookie; the
	// redirect goes to next, but only within the dashboard.
	for next, wantLoc := range map[string]string{"/dashboard/models": "/dashboard/models", "https://evil.example/": "/dashboard/", "//evil/": "/dashboard/"} {
		resp, err := noRedirect.Get(srv.URL + "/dashboard/login?token=" + token + "&next=" + url.QueryEscape(next))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != wantLoc {
			t.Fatalf("login next=%q: %d to %q, want 303 to %q", next, resp.StatusCode, resp.Header.Get("Location"), wantLoc)
		}
		cookies := resp.Cookies()
		if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].Value == token || strings.Contains(cookies[0].Value, token) {
			t.Fatalf("login cookie %+v: want one HttpOnly cookie that is not the token", cookies)
		}
		status, _, _ := get(t, noRedirect, srv.URL+"/dashboard/models", "Cookie", cookies[0].Name+"="+cookies[0].Value)
		if status != 200 {
			t.Fatalf("with the login cookie: %d", status)
		}
	}
}

func TestLiveFeed(t *testing.T) {
	f := newFixture(t)
	d, srv := f.dashboard(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Before Run has subscribed the handler answers 503; wait for it.
	var resp *http.Response
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := srv.Client().Get(srv.URL + "/dashboard/events")
		if err != nil {
			t.Fatal(err)
		}
		if r.StatusCode == 200 {
			resp = r
			break
		}
		r.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("events: %d", r.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() && lines.Text() != "" { // the greeting
	}
	p := pred("staging", "v9", "unlabeled", "", "cataract", "live-1")
	data, _ := json.Marshal(p)
	if err := f.env.Conn.Publish(schemas.PredictionSubject("staging"), data); err != nil {
		t.Fatal(err)
	}
	var event, payload string
	for lines.Scan() {
		l := lines.Text()
		if v, ok := strings.CutPrefix(l, "event: "); ok {
			event = v
		}
		if v, ok := strings.CutPrefix(l, "data: "); ok {
			payload = v
			break
		}
	}
	var item dashboard.FeedItem
	if err := json.Unmarshal([]byte(payload), &item); event != "prediction" || err != nil || item.ImageID != "live-1" || item.Predicted != "cataract" {
		t.Fatalf("event %q data %q (%v)", event, payload, err)
	}
	// Stopping the dashboard ends open streams, so an HTTP shutdown is
	// not held up by them.
	cancel()
	end := make(chan struct{})
	go func() {
		for lines.Scan() {
		}
		close(end)
	}()
	select {
	case <-end:
	case <-time.After(5 * time.Second):
		t.Fatal("event stream still open after the dashboard stopped")
	}
}
