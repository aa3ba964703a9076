package dashboard_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"eyeflow/dashboard"
	"eyeflow/demodata"
	"eyeflow/internal/stagetest"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/processors/labelsink"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/rs/zerolog"
)

const (
	viewerToken = "viewer-token-0123456789"
	aliceToken  = "alice-token-0123456789abcdef"
)

// labelFixture is a labelsink with open tasks and a dashboard serving the
// Label page, on embedded NATS.
type labelFixture struct {
	env   *testenv.NATSEnv
	store objstore.Store
	sink  *labelsink.Sink
	cfg   labelsink.Config
	srv   *httptest.Server
	ids   []string // one image per alert: alert-a, alert-b
	pred  string   // the model's class for every image
}

func imageID(i int) string {
	h := sha256.Sum256([]byte(fmt.Sprint("label-page-image-", i)))
	return hex.EncodeToString(h[:])
}

func newLabelFixture(t *testing.T) *labelFixture {
	t.Helper()
	env := testenv.NATS(t, testenv.TopologyOptions())
	store := objstore.NewJetStream(env.JS)
	ctx := testenv.Context(t, 2*time.Minute)
	for _, b := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	cfg := labelsink.DefaultConfig()
	cfg.Store = store
	cfg.ManifestTimeout = time.Hour
	sink, err := labelsink.New(ctx, stagetest.Bucket(t, env.JS, labelsink.KVBucket), stage.PublisherOf(env.JS), cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	f := &labelFixture{env: env, store: store, sink: sink, cfg: cfg, pred: cfg.Classes[0]}
	for i, alert := range []string{"alert-a", "alert-b"} {
		id := imageID(i)
		img, err := demodata.Image(f.pred, i, demodata.Options{Width: 320, Height: 240})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
			t.Fatal(err)
		}
		src := schemas.ObjectRef{Bucket: objstore.BucketRaw, Key: "uploads/" + id + ".jpg"}
		if _, err := store.Put(ctx, src.Bucket, src.Key, bytes.NewReader(b.Bytes()), int64(b.Len()), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		ev := schemas.Retrain{Schema: schemas.SchemaRetrain, EventID: "event-" + alert, Kind: schemas.RetrainRequested, Env: schemas.EnvProd,
			ModelVersion: "3", AlertID: alert, Samples: []schemas.ObjectRef{src},
			Predictions: []schemas.Prediction{{ImageID: id, Source: src, Env: schemas.EnvProd, ModelName: "eyenet", ModelVersion: "3", PredictedClass: f.pred, Confidence: 0.41}}}
		if _, err := sink.HandleRetrain(ctx, ev); err != nil {
			t.Fatal(err)
		}
		f.ids = append(f.ids, id)
	}
	d, err := dashboard.New(dashboard.Config{NC: env.Conn, JS: env.JS, Store: store, Token: viewerToken, Window: 100,
		Label: dashboard.LabelOptions{Sink: cfg, BundleDir: testenv.LabelStudioBundle(t), Annotators: map[string]string{"alice": aliceToken}},
		Log:   zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	d.Mount(mux)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *labelFixture) object(t *testing.T, bucket, key string) ([]byte, error) {
	t.Helper()
	rc, _, err := f.store.Get(testenv.Context(t, time.Minute), bucket, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// cdp drives headless Chromium through the DevTools protocol over
// --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-separated JSON).
type cdp struct {
	t       *testing.T
	cmd     *exec.Cmd
	w       io.Writer
	session string
	mu      sync.Mutex
	next    int
	waiting map[int]chan cdpReply
	console []string
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func chromiumBin(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: install Debian's package `chromium` (scripts/setup.sh does); the browser test never skips")
	return ""
}

func startBrowser(t *testing.T) *cdp {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chromiumBin(t), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
		"--remote-debugging-pipe", "--user-data-dir="+t.TempDir(), "--window-size=1280,1000", "--hide-scrollbars", "about:blank")
	cmd.ExtraFiles = []*os.File{inR, outW}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	inR.Close()
	outW.Close()
	c := &cdp{t: t, cmd: cmd, w: inW, waiting: map[int]chan cdpReply{}}
	t.Cleanup(func() {
		inW.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("browser console:\n%s", strings.Join(c.console, "\n"))
		}
	})
	go c.read(outR)
	var target struct {
		TargetID string `json:"targetId"`
	}
	c.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	c.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	c.session = att.SessionID
	c.do("Page.enable", nil, nil)
	c.do("Runtime.enable", nil, nil)
	return c
}

func (c *cdp) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			c.mu.Lock()
			for id, ch := range c.waiting {
				ch <- cdpReply{Error: &struct {
					Message string `json:"message"`
				}{"browser gone: " + err.Error()}}
				delete(c.waiting, id)
			}
			c.mu.Unlock()
			return
		}
		var m struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			cdpReply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil {
			continue
		}
		c.mu.Lock()
		if m.ID != 0 {
			if ch, ok := c.waiting[m.ID]; ok {
				ch <- m.cdpReply
				delete(c.waiting, m.ID)
			}
		} else if m.Method == "Runtime.consoleAPICalled" || m.Method == "Runtime.exceptionThrown" {
			c.console = append(c.console, m.Method+" "+string(m.Params[:min(len(m.Params), 600)]))
		}
		c.mu.Unlock()
	}
}

func (c *cdp) call(session, method string, params any, out any) {
	c.t.Helper()
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan cdpReply, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if params == nil {
		msg["params"] = map[string]any{}
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	if _, err := c.w.Write(append(data, 0)); err != nil {
		c.t.Fatalf("cdp %s: %v", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			c.t.Fatalf("cdp %s: %s", method, r.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(r.Result, out); err != nil {
				c.t.Fatalf("cdp %s: decode %s: %v", method, r.Result, err)
			}
		}
	case <-time.After(60 * time.Second):
		c.t.Fatalf("cdp %s: no reply in 60s", method)
	}
}

func (c *cdp) do(method string, params, out any) {
	c.t.Helper()
	c.call(c.session, method, params, out)
}

// eval runs a JavaScript expression in the page (awaiting a promise) and
// decodes its value into out.
func (c *cdp) eval(expr string, out any) {
	c.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	c.do("Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, &r)
	if r.Exception != nil {
		c.t.Fatalf("eval %s: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			c.t.Fatalf("eval %s: decode %s: %v", expr, r.Result.Value, err)
		}
	}
}

// waitFor polls a boolean expression until it holds.
func (c *cdp) waitFor(what, expr string, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ok bool
		c.eval("Boolean("+expr+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var html string
			c.eval("document.body ? document.body.innerText.slice(0, 2000) : ''", &html)
			c.t.Fatalf("waited %v for %s; page text:\n%s", d, what, html)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *cdp) navigate(u string) {
	c.t.Helper()
	c.do("Page.navigate", map[string]any{"url": u}, nil)
	c.waitFor("page load of "+u, `document.readyState === "complete" && location.href !== "about:blank"`, 30*time.Second)
}

// click presses the mouse in the middle of the element expr finds.
func (c *cdp) click(what, expr string) {
	c.t.Helper()
	var box struct{ X, Y float64 }
	c.eval(`(() => { const e = `+expr+`; if (!e) return null; e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect(); return {X: r.x + r.width/2, Y: r.y + r.height/2}; })()`, &box)
	if box.X == 0 && box.Y == 0 {
		c.t.Fatalf("click %s: no such element", what)
	}
	for _, typ := range []string{"mousePressed", "mouseReleased"} {
		c.do("Input.dispatchMouseEvent", map[string]any{"type": typ, "x": box.X, "y": box.Y, "button": "left", "clickCount": 1}, nil)
	}
}

func (c *cdp) screenshot(t *testing.T, name string) {
	t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	c.do("Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("EYEFLOW_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else {
		dir = filepath.Join(dir, "dashboard")
		_ = os.MkdirAll(dir, 0o755)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", p, len(png))
}

func (c *cdp) login(base, token string) {
	c.t.Helper()
	c.navigate(base + "/dashboard/login?next=/dashboard/label")
	c.eval(fmt.Sprintf(`(() => { document.getElementById("token").value = %q; document.querySelector("form.login").submit(); return true; })()`, token), nil)
	c.waitFor("the Label page after login", `location.pathname === "/dashboard/label" && document.readyState === "complete"`, 30*time.Second)
}

// choiceExpr finds the editor's choice labelled class.
func choiceExpr(class string) string {
	// The editor writes each choice's hotkey after it: "amd[1]".
	return fmt.Sprintf(`((c) => [...document.querySelectorAll("#label-studio label")].find(l => { const s = l.textContent.trim(); return s === c || (s.startsWith(c) && /^\[?.\]?$/.test(s.slice(c.length))); }))(%q)`, class)
}

const submitExpr = `[...document.querySelectorAll("#label-studio button")].find(b => b.textContent.trim() === "Submit")`

// TestLabelPageInBrowser: an annotator signs in, opens the Label page in
// headless Chromium, picks a class other than the model's, submits; the
// annotation lands in the labelling bucket in Label Studio's shape with
// the annotator's name, and labelsink turns it into raw/<class>/ and a
// manifest entry through the code that reads Label Studio's exports.
func TestLabelPageInBrowser(t *testing.T) {
	f := newLabelFixture(t)
	c := startBrowser(t)
	c.login(f.srv.URL, aliceToken)
	id := f.ids[0]
	c.navigate(f.srv.URL + "/dashboard/label?task=" + id)
	c.waitFor("the editor with the annotator's annotation", `window.eyeflowLabel && window.eyeflowLabel.ready && `+choiceExpr(f.cfg.Classes[1])+` && `+submitExpr, 60*time.Second)
	c.waitFor("the image", `[...document.querySelectorAll("#label-studio img")].some(i => i.complete && i.naturalWidth > 0)`, 30*time.Second)
	var text string
	c.eval(`document.getElementById("main").innerText`, &text)
	for _, want := range []string{"2 open tasks", "alert-a", "1 left", f.pred, "0.410", "Skip this image", "alice"} {
		if !strings.Contains(text, want) {
			t.Errorf("Label page lacks %q:\n%s", want, text)
		}
	}
	c.screenshot(t, "label.png")

	class := f.cfg.Classes[1]
	c.click("choice "+class, choiceExpr(class))
	c.click("Submit", submitExpr)
	c.waitFor("the dashboard's reply", `window.eyeflowLabel.submitted`, 30*time.Second)
	var reply struct {
		Status int `json:"status"`
		Reply  struct {
			OK     bool   `json:"ok"`
			Reason string `json:"reason"`
			Error  string `json:"error"`
			Export string `json:"export"`
		} `json:"reply"`
	}
	c.eval(`window.eyeflowLabel.submitted`, &reply)
	if !reply.Reply.OK {
		t.Fatalf("submit refused: %+v", reply)
	}
	data, err := f.object(t, f.cfg.Bucket, reply.Reply.Export)
	if err != nil {
		t.Fatalf("annotation not in the labelling bucket: %v", err)
	}
	var ann struct {
		Result []labelsink.ChoiceResult `json:"result"`
		By     struct {
			Username string `json:"username"`
		} `json:"completed_by"`
		LeadTime float64 `json:"lead_time"`
		Task     struct {
			Meta labelsink.TaskMeta `json:"meta"`
		} `json:"task"`
		Eyeflow struct {
			ModelVersion string `json:"model_version_shown"`
		} `json:"eyeflow"`
	}
	if err := json.Unmarshal(data, &ann); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(reply.Reply.Export, f.cfg.ExportsPrefix) || ann.By.Username != "alice" || len(ann.Result) != 1 ||
		len(ann.Result[0].Value.Choices) != 1 || ann.Result[0].Value.Choices[0] != class || ann.Task.Meta.ImageID != id ||
		ann.Eyeflow.ModelVersion != "eyenet:3" || ann.LeadTime <= 0 {
		t.Fatalf("annotation %s:\n%s", reply.Reply.Export, data)
	}

	ctx := testenv.Context(t, time.Minute)
	if err := f.sink.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	raw := labelsink.RawKey(class, id, "uploads/"+id+".jpg")
	if _, err := f.store.Stat(ctx, objstore.BucketRaw, raw); err != nil {
		t.Fatalf("labelled image not copied to raw/%s: %v", raw, err)
	}
	manifest, err := f.object(t, f.cfg.Bucket, f.cfg.ManifestKey("event-alert-a"))
	if err != nil {
		t.Fatalf("no manifest for the labelled alert: %v", err)
	}
	if !strings.Contains(string(manifest), `"key":"`+raw+`"`) || !strings.Contains(string(manifest), `"class":"`+class+`"`) {
		t.Fatalf("manifest lacks the label:\n%s", manifest)
	}

	// Answered once: the page moves on, and the task is no longer offered.
	c.waitFor("the next task", `document.querySelector("[data-task]") && document.querySelector("[data-task]").dataset.task !== `+fmt.Sprintf("%q", id), 30*time.Second)
	c.eval(`document.getElementById("label-open").dataset.open`, &text)
	if text != "1" {
		t.Errorf("open tasks after the answer: %s, want 1", text)
	}
}

// TestLabelPageViewerCannotSubmit: the dashboard's (read-only) token shows
// the page and the editor, without Submit; a POST from that session is
// refused and nothing reaches the labelling bucket.
func TestLabelPageViewerCannotSubmit(t *testing.T) {
	f := newLabelFixture(t)
	c := startBrowser(t)
	c.login(f.srv.URL, viewerToken)
	c.navigate(f.srv.URL + "/dashboard/label?task=" + f.ids[0])
	c.waitFor("the editor", `window.eyeflowLabel && window.eyeflowLabel.ready && `+choiceExpr(f.cfg.Classes[1]), 60*time.Second)
	var has bool
	c.eval(`Boolean(`+submitExpr+`)`, &has)
	if has {
		t.Error("a viewer sees the Submit button")
	}
	var reply struct {
		Status int    `json:"status"`
		Reason string `json:"reason"`
	}
	c.eval(fmt.Sprintf(`fetch("/dashboard/label/submit", {method: "POST", headers: {"Content-Type": "application/json"},
		body: JSON.stringify({task: %q, ticket: "x", result: [{from_name: "diagnosis", to_name: "image", type: "choices", value: {choices: [%q]}}]})})
		.then(r => r.json().then(j => ({status: r.status, reason: j.reason})))`, f.ids[0], f.cfg.Classes[1]), &reply)
	if reply.Status != http.StatusForbidden || reply.Reason != "not_an_annotator" {
		t.Errorf("viewer's submit: %+v, want 403 not_an_annotator", reply)
	}
	if _, err := f.object(t, f.cfg.Bucket, f.cfg.PageExportKey(f.ids[0])); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("a viewer's submit wrote an export (err %v)", err)
	}
}

// boot reads the Label page's JSON for task id as the bearer of token.
func (f *labelFixture) boot(t *testing.T, token, id string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/dashboard/label?task="+id, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	_, rest, ok := strings.Cut(string(body), `<script type="application/json" id="label-data">`)
	js, _, ok2 := strings.Cut(rest, "</script>")
	if !ok || !ok2 {
		t.Fatalf("no label-data in the page (%s):\n%s", resp.Status, body)
	}
	var b map[string]any
	if err := json.Unmarshal([]byte(js), &b); err != nil {
		t.Fatalf("label-data: %v\n%s", err, js)
	}
	return b
}

func (f *labelFixture) post(t *testing.T, token, origin string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/dashboard/label/submit", bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.Reason
}

func submission(task, ticket string, classes ...string) []byte {
	b, _ := json.Marshal(map[string]any{"task": task, "ticket": ticket, "result": []labelsink.ChoiceResult{{
		FromName: labelsink.ChoicesTag, ToName: labelsink.ImageTag, Type: "choices", Value: labelsink.ChoiceValue{Choices: classes}}}})
	return b
}

// TestSubmitRefusesHostileAnnotations: each refusal comes with its reason
// and writes nothing; a task is answered once, here or in Label Studio.
func TestSubmitRefusesHostileAnnotations(t *testing.T) {
	f := newLabelFixture(t)
	id, other := f.ids[0], f.ids[1]
	ticket, _ := f.boot(t, aliceToken, id)["ticket"].(string)
	if ticket == "" {
		t.Fatal("an annotator's page carries no ticket")
	}
	if vt := f.boot(t, viewerToken, id)["ticket"]; vt != nil {
		t.Fatalf("a viewer's page carries a ticket: %v", vt)
	}
	class := f.cfg.Classes[1]
	same := f.srv.URL
	huge := submission(id, ticket, class)
	huge = append(huge[:len(huge)-1], []byte(`,"pad":"`+strings.Repeat("x", 100<<10)+`"}`)...)
	for _, tc := range []struct {
		name, token, origin string
		body                []byte
		status              int
		reason              string
	}{
		{"not signed in", "", same, submission(id, ticket, class), http.StatusUnauthorized, "not_signed_in"},
		{"viewer", viewerToken, same, submission(id, ticket, class), http.StatusForbidden, "not_an_annotator"},
		{"no origin", aliceToken, "", submission(id, ticket, class), http.StatusForbidden, "cross_origin"},
		{"other origin", aliceToken, "http://evil.example", submission(id, ticket, class), http.StatusForbidden, "cross_origin"},
		{"oversized", aliceToken, same, huge, http.StatusRequestEntityTooLarge, "too_large"},
		{"unknown class", aliceToken, same, submission(id, ticket, "not_a_disease"), http.StatusUnprocessableEntity, schemas.ReasonUnknownClass},
		{"two classes", aliceToken, same, submission(id, ticket, class, f.cfg.Classes[2]), http.StatusUnprocessableEntity, schemas.ReasonConflictingAnnotations},
		{"no class", aliceToken, same, submission(id, ticket), http.StatusUnprocessableEntity, schemas.ReasonEmptyAnnotation},
		{"wrong task", aliceToken, same, submission(other, ticket, class), http.StatusBadRequest, "wrong_task"},
		{"forged ticket", aliceToken, same, submission(id, ticket[:len(ticket)-2]+"00", class), http.StatusBadRequest, "wrong_task"},
		{"good", aliceToken, same, submission(id, ticket, class), http.StatusOK, ""},
		{"replayed", aliceToken, same, submission(id, ticket, class), http.StatusConflict, "already_answered"},
	} {
		status, reason := f.post(t, tc.token, tc.origin, tc.body)
		if status != tc.status || reason != tc.reason {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, reason, tc.status, tc.reason)
		}
		if _, err := f.object(t, f.cfg.Bucket, f.cfg.PageExportKey(other)); !errors.Is(err, objstore.ErrNotFound) {
			t.Fatalf("%s: an export for the other task was written", tc.name)
		}
	}
	ctx := testenv.Context(t, time.Minute)
	if err := f.sink.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// Label Studio answers the same image later with another class: the
	// first answer stands, nothing more reaches raw/.
	disagree := fmt.Sprintf(`{"id": 77, "completed_by": 2, "result": [{"from_name": "diagnosis", "to_name": "image", "type": "choices", "value": {"choices": [%q]}}],
		"task": {"id": 1, "data": {"image_id": %q}, "meta": {"image_id": %q, "source_bucket": "raw", "source_key": "uploads/%s.jpg"}}}`, f.cfg.Classes[3], id, id, id)
	if _, err := f.store.Put(ctx, f.cfg.Bucket, f.cfg.ExportsPrefix+"77", strings.NewReader(disagree), int64(len(disagree)), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.sink.PollOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Stat(ctx, objstore.BucketRaw, labelsink.RawKey(f.cfg.Classes[3], id, id+".jpg")); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("a second, disagreeing answer reached raw/ (err %v)", err)
	}
	o, ok, err := labelsink.ReadOutcome(ctx, stagetest.Bucket(t, f.env.JS, labelsink.KVBucket), id)
	if err != nil || !ok || o.Class != class {
		t.Errorf("outcome after a second answer: %+v %v %v, want class %s", o, ok, err, class)
	}
}

// TestLabelPageSaysBundleMissing: without the editor the page says how to
// install it and loads no script.
func TestLabelPageSaysBundleMissing(t *testing.T) {
	f := newLabelFixture(t)
	d, err := dashboard.New(dashboard.Config{NC: f.env.Conn, JS: f.env.JS, Store: f.store, Window: 100,
		Label: dashboard.LabelOptions{Sink: f.cfg, BundleDir: t.TempDir()}, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dashboard/label", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.Contains(body, `id="label-bundle-missing"`) || !strings.Contains(body, "scripts/install-label-studio.sh") ||
		strings.Contains(body, "bundle/main.js") || !strings.Contains(body, "no annotators are configured") {
		t.Fatalf("%d:\n%s", rec.Code, body)
	}
}
