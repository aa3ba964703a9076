package dashboard

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"eyeflow/objstore"
	"eyeflow/processors/labelsink"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
	"eyeflow/stage"
)

// LabelOptions configure the Label page: Label Studio's editor on the open
// tasks labelsink wrote, answers written back as Label Studio exports.
type LabelOptions struct {
	// Sink is labelsink's layout of the labelling bucket and its classes
	// (its Store is ignored: the dashboard's is used). Zero: labelsink's
	// DefaultConfig.
	Sink labelsink.Config
	// BundleDir holds Label Studio's editor (main.js, main.css), as
	// scripts/install-label-studio.sh installs it. Empty or incomplete:
	// the page says how to install it.
	BundleDir string
	// Annotators maps an annotator's name to their token: only they may
	// submit. The dashboard's Token is a read-only viewer's.
	Annotators map[string]string
}

// AnnotatorCookie holds an annotator's session after a login.
const AnnotatorCookie = "eyeflow_annotator"

// maxSubmitBytes bounds an annotation POST.
const maxSubmitBytes = 64 << 10

// ticketTTL bounds how long a shown task may be answered.
const ticketTTL = 12 * time.Hour

var annotatorName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// ValidAnnotator reports whether name may name an annotator.
func ValidAnnotator(name string) bool { return annotatorName.MatchString(name) }

type labelState struct {
	opts   LabelOptions
	secret []byte // signs tickets
	mu     sync.Mutex
}

func newLabelState(o LabelOptions) (*labelState, error) {
	if o.Sink.Bucket == "" {
		o.Sink = labelsink.DefaultConfig()
	}
	for name, tok := range o.Annotators {
		if !ValidAnnotator(name) {
			return nil, fmt.Errorf("dashboard: annotator name %q: want letters, digits, . _ @ -, at most 64", name)
		}
		if len(tok) < 16 {
			return nil, fmt.Errorf("dashboard: annotator %s: token shorter than 16 characters", name)
		}
	}
	st := &labelState{opts: o, secret: make([]byte, 32)}
	if _, err := rand.Read(st.secret); err != nil {
		return nil, err
	}
	return st, nil
}

// annotatorSession is the cookie value of an annotator's login.
func annotatorSession(name, token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("eyeflow annotator session v1\x00" + name))
	return name + "." + hex.EncodeToString(m.Sum(nil))
}

// annotatorByToken returns the annotator whose token tok is; every
// annotator's token is compared, in constant time.
func (d *Dashboard) annotatorByToken(tok string) (string, bool) {
	found := ""
	for name, t := range d.label.opts.Annotators {
		if equal(tok, t) {
			found = name
		}
	}
	return found, found != ""
}

// annotator is the logged-in annotator of r (bearer token or cookie).
func (d *Dashboard) annotator(r *http.Request) (string, bool) {
	if len(d.label.opts.Annotators) == 0 {
		return "", false
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if name, ok := d.annotatorByToken(strings.TrimSpace(tok)); ok {
			return name, true
		}
	}
	c, err := r.Cookie(AnnotatorCookie)
	if err != nil {
		return "", false
	}
	name, _, ok := strings.Cut(c.Value, ".")
	tok, known := d.label.opts.Annotators[name]
	if !ok || !known {
		return "", false
	}
	return name, equal(c.Value, annotatorSession(name, tok))
}

// ticket binds a shown task to its annotator and the time it was shown:
// the time spent is measured by the server, and a ticket answers only its
// task.
func (st *labelState) ticket(imageID, annotator string, shown time.Time) string {
	payload := imageID + "|" + annotator + "|" + strconv.FormatInt(shown.UnixMilli(), 10)
	m := hmac.New(sha256.New, st.secret)
	m.Write([]byte(payload))
	return payload + "|" + hex.EncodeToString(m.Sum(nil))
}

func (st *labelState) checkTicket(t, imageID, annotator string, now time.Time) (time.Time, error) {
	i := strings.LastIndex(t, "|")
	if i < 0 {
		return time.Time{}, errors.New("malformed ticket")
	}
	m := hmac.New(sha256.New, st.secret)
	m.Write([]byte(t[:i]))
	if !hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(t[i+1:])) {
		return time.Time{}, errors.New("ticket not issued by this dashboard (restarted? reload the page)")
	}
	parts := strings.Split(t[:i], "|")
	if len(parts) != 3 || parts[0] != imageID || parts[1] != annotator {
		return time.Time{}, errors.New("ticket is for another task or annotator")
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return time.Time{}, errors.New("malformed ticket")
	}
	shown := time.UnixMilli(ms).UTC()
	if now.Sub(shown) > ticketTTL || shown.After(now.Add(time.Minute)) {
		return time.Time{}, errors.New("ticket expired: reload the page")
	}
	return shown, nil
}

// openTask is a task without an answer.
type openTask struct {
	Key  string
	Task labelsink.Task
}

func (t openTask) ImageID() string { return t.Task.Meta.ImageID }

// Alert is the drift alert (or retrain event) a task was asked for.
func (t openTask) Alert() string {
	switch {
	case t.Task.Meta.AlertID != "":
		return t.Task.Meta.AlertID
	case t.Task.Meta.EventID != "":
		return t.Task.Meta.EventID
	}
	return "low confidence"
}

// maxTasks bounds the tasks one page load reads.
const maxTasks = 2000

func (d *Dashboard) sinkKV(ctx context.Context) (stage.KeyValue, error) {
	kv, err := d.cfg.JS.KeyValue(ctx, labelsink.KVBucket)
	if err != nil {
		return nil, fmt.Errorf("labelsink's state bucket %s: %w (is labelsink running?)", labelsink.KVBucket, err)
	}
	return stage.KeyValueOf(kv), nil
}

// answered reports whether an image has its answer: a class labelsink
// recorded (from Label Studio or this page), or this page's export that
// labelsink has not read yet.
func (d *Dashboard) answered(ctx context.Context, kv stage.KeyValue, imageID string) (bool, error) {
	o, ok, err := labelsink.ReadOutcome(ctx, kv, imageID)
	if err != nil {
		return false, err
	}
	if ok && o.Class != "" {
		return true, nil
	}
	sc := d.label.opts.Sink
	_, err = d.cfg.Store.Stat(ctx, sc.Bucket, sc.PageExportKey(imageID))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, objstore.ErrNotFound) {
		return false, nil
	}
	return false, err
}

func (d *Dashboard) readTask(ctx context.Context, key string) (labelsink.Task, error) {
	var t labelsink.Task
	rc, _, err := d.cfg.Store.Get(ctx, d.label.opts.Sink.Bucket, key)
	if err != nil {
		return t, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("task %s: %w", key, err)
	}
	return t, nil
}

// openTasks lists labelsink's tasks that have no answer, in the order they
// are asked: per alert, the least certain of prod's predictions first.
func (d *Dashboard) openTasks(ctx context.Context) ([]openTask, error) {
	kv, err := d.sinkKV(ctx)
	if err != nil {
		return nil, err
	}
	sc := d.label.opts.Sink
	var out []openTask
	var errs []error
	for info, err := range d.cfg.Store.List(ctx, sc.Bucket, sc.TasksPrefix) {
		if err != nil {
			return out, fmt.Errorf("list %s/%s: %w", sc.Bucket, sc.TasksPrefix, err)
		}
		if !strings.HasSuffix(info.Key, ".json") || len(out) >= maxTasks {
			continue
		}
		t, err := d.readTask(ctx, info.Key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if t.Meta.ImageID == "" || info.Key != sc.TaskKey(t.Meta.ImageID) {
			continue
		}
		done, err := d.answered(ctx, kv, t.Meta.ImageID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !done {
			out = append(out, openTask{Key: info.Key, Task: t})
		}
	}
	orderTasks(out)
	return out, errors.Join(errs...)
}

// uncertainty orders a task within its alert: prod's margin (top
// probability less the second) when the task has it, else its confidence;
// lower is less certain.
func (t openTask) uncertainty() float64 {
	if m := t.Task.Meta.Margin; m != nil {
		return *m
	}
	return t.Task.Meta.Confidence
}

// orderTasks sorts tasks by alert, and within an alert by prod's margin
// (or confidence), lowest first: the labels most likely to change the
// model.
func orderTasks(ts []openTask) {
	slices.SortStableFunc(ts, func(a, b openTask) int {
		if c := strings.Compare(a.Alert(), b.Alert()); c != 0 {
			return c
		}
		if ua, ub := a.uncertainty(), b.uncertainty(); ua != ub {
			if ua < ub {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ImageID(), b.ImageID())
	})
}

// bundleFiles are what the page loads of Label Studio's build.
var bundleFiles = map[string]string{"main.js": "text/javascript; charset=utf-8", "main.css": "text/css; charset=utf-8"}

// bundleProblem says why the editor cannot load, "" when it can.
func (d *Dashboard) bundleProblem() string {
	dir := d.label.opts.BundleDir
	if dir == "" {
		return "Label Studio's editor is not installed: run scripts/install-label-studio.sh and pass the directory it prints as --label-studio-dir (or $EYEFLOW_LABEL_STUDIO_DIR)."
	}
	for f := range bundleFiles {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			return fmt.Sprintf("Label Studio's editor is not installed in %s (no %s): run scripts/install-label-studio.sh and pass the directory it prints as --label-studio-dir (or $EYEFLOW_LABEL_STUDIO_DIR).", dir, f)
		}
	}
	return ""
}

func (d *Dashboard) handleBundle(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	ct, ok := bundleFiles[name]
	if !ok || d.bundleProblem() != "" {
		http.NotFound(w, r)
		return
	}
	f, err := os.Open(filepath.Join(d.label.opts.BundleDir, name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, "bundle unreadable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeContent(w, r, name, st.ModTime(), f)
}

// labelCSP relaxes the dashboard's policy for the editor only: it sets
// inline styles and draws images through blob: and data: URLs. Scripts
// stay 'self'.
const labelCSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; font-src 'self' data:; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

// labelBoot is what label.js reads from the page (a JSON script element).
type labelBoot struct {
	Config      string                     `json:"config"`
	TaskID      int64                      `json:"task_id"`
	ImageID     string                     `json:"image_id"`
	Image       string                     `json:"image"`
	Predictions []labelsink.TaskPrediction `json:"predictions"`
	Annotator   string                     `json:"annotator,omitempty"`
	CanSubmit   bool                       `json:"can_submit"`
	Ticket      string                     `json:"ticket,omitempty"`
	Submit      string                     `json:"submit"`
	Next        string                     `json:"next"`
}

type alertLeft struct {
	Alert string
	Left  int
}

type labelPage struct {
	Bundle     string // problem, "" when installed
	Open       int
	Alerts     []alertLeft
	Task       *openTask
	Prediction string
	Score      float64
	Model      string
	Boot       *labelBoot
	Annotator  string
	Annotators bool
	Skip       string
	errs       []string
}

func (p labelPage) problems() []string { return p.errs }

func (d *Dashboard) handleLabel(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", labelCSP)
	ctx := r.Context()
	p := labelPage{Bundle: d.bundleProblem(), Annotators: len(d.label.opts.Annotators) > 0}
	p.Annotator, _ = d.annotator(r)
	tasks, err := d.openTasks(ctx)
	if err != nil {
		p.errs = append(p.errs, err.Error())
	}
	p.Open = len(tasks)
	for _, t := range tasks {
		if n := len(p.Alerts); n > 0 && p.Alerts[n-1].Alert == t.Alert() {
			p.Alerts[n-1].Left++
		} else {
			p.Alerts = append(p.Alerts, alertLeft{Alert: t.Alert(), Left: 1})
		}
	}
	idx := 0
	q := r.URL.Query()
	if id := q.Get("task"); id != "" {
		idx = slices.IndexFunc(tasks, func(t openTask) bool { return t.ImageID() == id })
	} else if after := q.Get("after"); after != "" {
		if i := slices.IndexFunc(tasks, func(t openTask) bool { return t.ImageID() == after }); i >= 0 && len(tasks) > 0 {
			idx = (i + 1) % len(tasks)
		}
	}
	if idx >= 0 && idx < len(tasks) {
		t := tasks[idx]
		p.Task = &t
		p.Skip = Path + "label?after=" + url.QueryEscape(t.ImageID())
		if len(t.Task.Predictions) > 0 {
			p.Prediction, p.Score, p.Model = t.Task.Meta.Predicted, t.Task.Predictions[0].Score, t.Task.Predictions[0].ModelVersion
		}
		if p.Bundle == "" {
			b := &labelBoot{Config: string(labelsink.LabelConfigXML(d.label.opts.Sink.Classes)), TaskID: labelsink.TaskNumber(t.ImageID()),
				ImageID: t.ImageID(), Image: Path + "label/image?task=" + url.QueryEscape(t.ImageID()), Predictions: t.Task.Predictions,
				Annotator: p.Annotator, CanSubmit: p.Annotator != "", Submit: Path + "label/submit", Next: Path + "label"}
			if b.Predictions == nil {
				b.Predictions = []labelsink.TaskPrediction{}
			}
			if b.CanSubmit {
				b.Ticket = d.label.ticket(t.ImageID(), p.Annotator, time.Now())
			}
			p.Boot = b
		}
	} else if q.Get("task") != "" {
		p.errs = append(p.errs, "that task is answered or does not exist; showing the next one")
	}
	d.render(w, r, http.StatusOK, "label", p)
}

// handleLabelImage streams a task's image from the bucket its task names
// (raw or processed only, with a key the pipeline accepts).
func (d *Dashboard) handleLabelImage(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("task")
	sc := d.label.opts.Sink
	if id == "" || strings.ContainsAny(id, "/\\") {
		http.Error(w, "no such task", http.StatusBadRequest)
		return
	}
	t, err := d.readTask(r.Context(), sc.TaskKey(id))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	b, k := t.Meta.SourceBucket, t.Meta.SourceKey
	if (b != sc.RawBucket && b != objstore.BucketProcessed) || objkey.Check(k) != nil {
		http.Error(w, "task names no image the dashboard serves", http.StatusForbidden)
		return
	}
	rc, info, err := d.cfg.Store.Get(r.Context(), b, k)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer rc.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(rc, head)
	w.Header().Set("Content-Type", http.DetectContentType(head[:n]))
	w.Header().Set("Cache-Control", "private, max-age=3600")
	if info.Size > 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	}
	_, _ = w.Write(head[:n])
	_, _ = io.Copy(w, rc)
}

// submitRequest is what label.js posts.
type submitRequest struct {
	Task   string                   `json:"task"`
	Ticket string                   `json:"ticket"`
	Result []labelsink.ChoiceResult `json:"result"`
}

type submitReply struct {
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	Export string `json:"export,omitempty"`
	Next   string `json:"next,omitempty"`
}

func refuse(w http.ResponseWriter, status int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(submitReply{Reason: reason, Error: msg})
}

// sameOrigin accepts a request whose Origin is this server, or, without an
// Origin, one the browser marks same-origin.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host == r.Host
	}
	return r.Header.Get("Sec-Fetch-Site") == "same-origin"
}

// handleSubmit writes an annotator's answer into the exports folder in
// Label Studio's own format; labelsink reads it as it reads Label Studio's.
func (d *Dashboard) handleSubmit(w http.ResponseWriter, r *http.Request) {
	name, ok := d.annotator(r)
	if !ok {
		refuse(w, http.StatusForbidden, "not_an_annotator", "only a signed-in annotator may submit; this session is a read-only viewer")
		return
	}
	if !sameOrigin(r) {
		refuse(w, http.StatusForbidden, "cross_origin", "the request does not come from this dashboard's origin")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		refuse(w, http.StatusUnsupportedMediaType, "bad_request", "want Content-Type application/json")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSubmitBytes)
	var req submitRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			refuse(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("an annotation is at most %d bytes", maxSubmitBytes))
			return
		}
		refuse(w, http.StatusBadRequest, "bad_request", "decode annotation: "+err.Error())
		return
	}
	now := time.Now().UTC()
	shown, err := d.label.checkTicket(req.Ticket, req.Task, name, now)
	if err != nil {
		refuse(w, http.StatusBadRequest, "wrong_task", err.Error())
		return
	}
	sc := d.label.opts.Sink
	ctx := r.Context()
	t, err := d.readTask(ctx, sc.TaskKey(req.Task))
	if err != nil || t.Meta.ImageID != req.Task {
		refuse(w, http.StatusNotFound, "wrong_task", "no open task "+strconv.Quote(req.Task))
		return
	}
	class, reason, err := choice(req.Result, sc.Classes)
	if err != nil {
		refuse(w, http.StatusUnprocessableEntity, reason, err.Error())
		return
	}
	// The result is rebuilt, not echoed: only the class comes from the
	// browser.
	result := []labelsink.ChoiceResult{{ID: "eyeflow", FromName: labelsink.ChoicesTag, ToName: labelsink.ImageTag, Type: "choices",
		Value: labelsink.ChoiceValue{Choices: []string{class}}, Origin: "manual"}}
	mv := ""
	if len(t.Predictions) > 0 {
		mv = t.Predictions[0].ModelVersion
	}
	data, err := labelsink.PageExport(t, labelsink.PageAnnotation{Annotator: name, Shown: shown, Submitted: now, ModelVersion: mv, Result: result})
	if err != nil {
		refuse(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	// What labelsink would make of it, through its own code.
	parsed, refused := labelsink.ParseExport(sc, data)
	if len(refused) > 0 || len(parsed) != 1 || parsed[0].Class != class {
		msg := "labelsink would not accept this annotation"
		reason := schemas.ReasonBadExport
		if len(refused) > 0 {
			msg, reason = refused[0].Error(), refused[0].Reason
		}
		refuse(w, http.StatusUnprocessableEntity, reason, msg)
		return
	}
	d.label.mu.Lock()
	defer d.label.mu.Unlock()
	kv, err := d.sinkKV(ctx)
	if err != nil {
		refuse(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	if done, err := d.answered(ctx, kv, req.Task); err != nil {
		refuse(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	} else if done {
		refuse(w, http.StatusConflict, "already_answered", "this task is already answered (here or in Label Studio)")
		return
	}
	key := sc.PageExportKey(req.Task)
	if _, err := d.cfg.Store.Put(ctx, sc.Bucket, key, bytes.NewReader(data), int64(len(data)), objstore.PutOptions{ContentType: "application/json"}); err != nil {
		refuse(w, http.StatusBadGateway, "unavailable", "write annotation: "+err.Error())
		return
	}
	d.cfg.Log.Info().Str("annotator", name).Str("image_id", req.Task).Str("class", class).Str("export", key).
		Dur("time_spent", now.Sub(shown)).Msg("dashboard: annotation written")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(submitReply{OK: true, Export: key, Next: Path + "label"})
}

// choice is the single class a result chooses, or why it is refused.
func choice(result []labelsink.ChoiceResult, classes []string) (string, string, error) {
	var chosen []string
	for _, r := range result {
		if r.Type != "choices" {
			continue
		}
		if r.FromName != labelsink.ChoicesTag || r.ToName != labelsink.ImageTag {
			return "", schemas.ReasonBadExport, fmt.Errorf("result for %s/%s: not this labelling interface", r.FromName, r.ToName)
		}
		chosen = append(chosen, r.Value.Choices...)
	}
	switch {
	case len(chosen) == 0:
		return "", schemas.ReasonEmptyAnnotation, errors.New("the annotation chooses no class")
	case len(chosen) > 1:
		return "", schemas.ReasonConflictingAnnotations, fmt.Errorf("the annotation chooses %d classes, want one", len(chosen))
	case !slices.Contains(classes, chosen[0]):
		return "", schemas.ReasonUnknownClass, fmt.Errorf("class %q is not one of the %d classes", chosen[0], len(classes))
	}
	return chosen[0], "", nil
}
