package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/testenv"
	"eyeflow/processors/splitter"
	"eyeflow/schemas"
)

// chromium finds Debian's headless-capable Chromium. A missing browser
// fails the test: the dashboard is only tested when a browser loads it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: install Debian's package `chromium` (scripts/setup.sh does); the browser test never skips")
	return ""
}

// browser runs headless Chromium on one URL with extra flags (--dump-dom or
// --screenshot=FILE) and returns its stdout.
func browser(t *testing.T, bin, profile string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + profile, "--window-size=1280,900", "--hide-scrollbars"}, extra...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
	}
	return stdout.String()
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EYEFLOW_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	countCell = regexp.MustCompile(`data-split="([a-z_0-9]+)" data-class="([^"]*)"><span class="n">(\d+)</span>`)
	totalCell = regexp.MustCompile(`class="total" data-split="([a-z_0-9]+)" data-class="">(\d+)<`)
	accCell   = regexp.MustCompile(`data-split="all" data-correct="(\d+)" data-total="(\d+)"`)
)

// TestDashboardInBrowser runs `eyeflow up` with a token, puts a small
// labelled data set through it, waits for the predictions, and loads every
// dashboard page in headless Chromium (logging in with ?token=): the counts
// the dataset page shows must be the bucket's, as splitter.Report lists
// them; the other pages must show every stage and the holdout accuracy.
// Screenshots are saved to $EYEFLOW_TEST_ARTIFACTS/dashboard (or a temp dir).
func TestDashboardInBrowser(t *testing.T) {
	bin := chromium(t)
	testenv.ORTLibrary(t) // the classifier in `eyeflow up` loads it from the cache
	const token = "browser-test-token"
	t.Setenv("EYEFLOW_DASHBOARD_TOKEN", token)
	data, images := t.TempDir(), t.TempDir()
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	startUp(t, data, natsAddr, httpAddr)

	ctx := testenv.Context(t, 4*time.Minute)
	const n = 30
	var out bytes.Buffer
	if err := run(ctx, []string{"demo-data", "--out", images, "--total", strconv.Itoa(n), "--width", "320", "--height", "240"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"put", "--nats", "nats://" + natsAddr, images}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	_, js := testenv.Connect(t, "nats://"+natsAddr)
	// prod's classifier (the only env with a model on a fresh registry) and
	// the driftwatch settle: every image has its prediction, and drift
	// state exists.
	deadline := time.Now().Add(3 * time.Minute)
	for processedBy(t, httpAddr, schemas.StageSplitter) < n && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	testenv.WaitConsumerIdle(t, js, bus.StreamSplits, bus.ClassifierConsumer(schemas.EnvProd))
	testenv.WaitConsumerIdle(t, js, bus.StreamPredictions, bus.ConsumerDriftwatch)
	preds := testenv.StreamMessages(t, js, bus.StreamPredictions, schemas.SubjectPredictionsAll)
	labelledProd := 0
	for _, m := range preds {
		p, err := schemas.DecodePrediction(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if p.Env == schemas.EnvProd && p.TrueLabel != "" && strings.HasPrefix(p.Split, "holdout") {
			labelledProd++
		}
	}
	if len(preds) < n {
		t.Fatalf("%d predictions for %d images", len(preds), n)
	}

	var report bytes.Buffer
	if err := run(ctx, []string{"split", "report", "--nats", "nats://" + natsAddr, "--json"}, &report, io.Discard); err != nil {
		t.Fatal(err)
	}
	var rep splitter.DatasetReport
	if err := json.Unmarshal(report.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Images != n {
		t.Fatalf("the bucket holds %d images, want %d", rep.Images, n)
	}

	profile, shots := t.TempDir(), artifactsDir(t)
	base := "http://" + httpAddr
	login := func(page string) string {
		return base + "/dashboard/login?token=" + url.QueryEscape(token) + "&next=" + url.QueryEscape(page)
	}
	// Without the token a browser gets the sign-in form, not the data.
	if dom := browser(t, bin, profile, "--dump-dom", base+"/dashboard/dataset"); !strings.Contains(dom, `name="token"`) || strings.Contains(dom, "dataset-counts") {
		t.Fatalf("without a token the dataset page was served:\n%s", dom)
	}
	pages := []struct {
		name  string
		path  string
		check func(t *testing.T, dom string)
	}{
		{"dataset", "/dashboard/dataset?split=train&n=4", func(t *testing.T, dom string) {
			shown := map[string]int{}
			for _, m := range countCell.FindAllStringSubmatch(dom, -1) {
				v, _ := strconv.Atoi(m[3])
				shown[m[1]+"/"+m[2]] = v
			}
			cells := 0
			for _, c := range rep.Classes {
				for _, d := range rep.Dirs {
					cells++
					if got, ok := shown[d+"/"+c.Class]; !ok || got != c.Counts[d] {
						t.Errorf("page shows %s/%s = %d (present %v), the bucket holds %d", d, c.Class, got, ok, c.Counts[d])
					}
				}
			}
			if len(shown) != cells {
				t.Errorf("page shows %d count cells, the report has %d", len(shown), cells)
			}
			// Every folder's total is shown, and is the bucket's.
			totals := map[string]int{}
			for _, m := range totalCell.FindAllStringSubmatch(dom, -1) {
				totals[m[1]], _ = strconv.Atoi(m[2])
			}
			for _, d := range rep.Dirs {
				if got, ok := totals[d]; !ok || got != rep.Total[d] {
					t.Errorf("page total %s = %d (present %v), the bucket holds %d", d, got, ok, rep.Total[d])
				}
			}
			if len(totals) != len(rep.Dirs) {
				t.Errorf("page shows %d totals, the report has %d folders", len(totals), len(rep.Dirs))
			}
			if imgs := strings.Count(dom, `<img src="/dashboard/thumb?key=`); imgs == 0 {
				t.Error("no thumbnails on the dataset page")
			}
		}},
		{"pipeline", "/dashboard/pipeline", func(t *testing.T, dom string) {
			for _, stage := range schemas.Stages() {
				if !strings.Contains(dom, `<tr data-stage="`+stage+`">`) {
					t.Errorf("no row for stage %s", stage)
				}
			}
			if !strings.Contains(dom, "EYE_PREDICTIONS") || strings.Contains(dom, "No predictions yet") {
				t.Error("streams or the predictions feed missing")
			}
		}},
		{"models", "/dashboard/models", func(t *testing.T, dom string) {
			if !strings.Contains(dom, `data-env="prod"`) || !strings.Contains(dom, `class="matrix"`) {
				t.Error("no prod row or confusion matrix")
			}
			m := accCell.FindStringSubmatch(dom)
			if m == nil {
				t.Fatal("no accuracy cell")
			}
			// The first accuracy row is prod's (envs in order, one model version).
			if total, _ := strconv.Atoi(m[2]); total != labelledProd {
				t.Errorf("prod accuracy over %d images, the stream has %d labelled holdout predictions for prod", total, labelledProd)
			}
		}},
	}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			dom := browser(t, bin, profile, "--dump-dom", login(p.path))
			if !strings.Contains(dom, "<h1>") || strings.Contains(dom, `name="token"`) {
				t.Fatalf("the login did not lead to the page:\n%s", dom)
			}
			p.check(t, dom)
			shot := filepath.Join(shots, p.name+".png")
			browser(t, bin, profile, "--screenshot="+shot, login(p.path))
			if st, err := os.Stat(shot); err != nil || st.Size() < 10_000 {
				t.Fatalf("screenshot %s: %v", shot, err)
			}
			t.Logf("screenshot: %s", shot)
		})
	}
}
