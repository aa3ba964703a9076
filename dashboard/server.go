package dashboard

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/processors/splitter"
	"eyeflow/processors/trainer"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Path is where the dashboard is mounted.
const Path = "/dashboard/"

// CookieName holds the session derived from the token after a login.
const CookieName = "eyeflow_dashboard"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the dashboard reads from.
type Config struct {
	NC    *nats.Conn
	JS    jetstream.JetStream
	Store objstore.Store
	// Prefix is the dataset folder in the processed bucket.
	Prefix string
	// Token, when set, is required of every dashboard request (bearer
	// header, or the cookie a login sets).
	Token string
	// Window is how many of the latest predictions accuracy and confusion
	// matrices are computed over.
	Window int
	// Counters are the processed-message counters behind throughput.
	Counters CounterSource
	// FeedBuffer bounds each live-feed client's queue; MaxFeedClients
	// bounds the clients.
	FeedBuffer, MaxFeedClients int
	// CacheFor is how long collected data is reused across requests.
	CacheFor time.Duration
	// Label configures the Label page (Label Studio's editor on
	// labelsink's open tasks) and who may submit there.
	Label LabelOptions
	Log   zerolog.Logger
}

// DefaultWindow is the default number of predictions quality is computed over.
const DefaultWindow = 10000

// Dashboard serves the pages.
type Dashboard struct {
	cfg     Config
	pages   map[string]*template.Template
	mux     *http.ServeMux
	broker  *broker
	rates   *Rates
	session string // hex HMAC of the token: the cookie value
	label   *labelState

	mu       sync.Mutex
	snap     cached[Snapshot]
	quality  cached[Quality]
	report   cached[splitter.DatasetReport]
	runCtx   context.Context
	runStart chan struct{}
}

type cached[T any] struct {
	at  time.Time
	val T
	err error
}

// New checks cfg and parses the embedded templates.
func New(cfg Config) (*Dashboard, error) {
	if cfg.JS == nil || cfg.NC == nil {
		return nil, errors.New("dashboard: needs a NATS connection and JetStream")
	}
	if cfg.Store == nil {
		return nil, errors.New("dashboard: needs the object store")
	}
	if cfg.Prefix = strings.Trim(cfg.Prefix, "/"); cfg.Prefix == "" {
		cfg.Prefix = splitter.DefaultPrefix
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.FeedBuffer <= 0 {
		cfg.FeedBuffer = 64
	}
	if cfg.MaxFeedClients <= 0 {
		cfg.MaxFeedClients = 32
	}
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = 3 * time.Second
	}
	if cfg.Counters == nil {
		cfg.Counters = func(context.Context) (map[string]float64, error) { return map[string]float64{}, nil }
	}
	d := &Dashboard{cfg: cfg, broker: newBroker(cfg.FeedBuffer, cfg.MaxFeedClients), rates: NewRates(cfg.Counters, 5*time.Minute),
		runStart: make(chan struct{})}
	if cfg.Token != "" {
		d.session = sessionValue(cfg.Token)
	}
	var err error
	if d.label, err = newLabelState(cfg.Label); err != nil {
		return nil, err
	}
	if d.pages, err = parsePages(); err != nil {
		return nil, err
	}
	d.routes()
	return d, nil
}

// sessionValue is the cookie a login sets: derived from the token, so the
// token itself is never stored in the browser.
func sessionValue(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("eyeflow dashboard session v1"))
	return hex.EncodeToString(m.Sum(nil))
}

// equal compares in constant time; hashing first makes the time independent
// of the lengths too.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// Mount adds the dashboard under /dashboard/ on mux.
func (d *Dashboard) Mount(mux *http.ServeMux) {
	mux.Handle(Path, d)
}

// ServeHTTP serves every dashboard route, behind the token when one is set.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Everything is served from here: no inline script, no CDN, no frames.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if d.cfg.Token != "" && r.URL.Path != Path+"login" && !strings.HasPrefix(r.URL.Path, Path+"static/") && !d.authorized(r) {
		if r.Method == http.MethodPost && r.URL.Path == Path+"label/submit" {
			refuse(w, http.StatusUnauthorized, "not_signed_in", "sign in as an annotator to submit")
			return
		}
		h.Set("WWW-Authenticate", `Bearer realm="eyeflow dashboard"`)
		d.render(w, r, http.StatusUnauthorized, "login", loginPage{Next: r.URL.RequestURI()})
		return
	}
	d.mux.ServeHTTP(w, r)
}

func (d *Dashboard) authorized(r *http.Request) bool {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(strings.TrimSpace(tok), d.cfg.Token) {
		return true
	}
	if c, err := r.Cookie(CookieName); err == nil && equal(c.Value, d.session) {
		return true
	}
	// An annotator sees what a viewer sees.
	_, ok := d.annotator(r)
	return ok
}

func (d *Dashboard) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /dashboard/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Path+"pipeline", http.StatusSeeOther)
	})
	m.HandleFunc("GET /dashboard/dataset", d.handleDataset)
	m.HandleFunc("GET /dashboard/pipeline", d.handlePipeline)
	m.HandleFunc("GET /dashboard/models", d.handleModels)
	m.HandleFunc("GET /dashboard/thumb", d.handleThumb)
	m.HandleFunc("GET /dashboard/events", d.handleEvents)
	m.HandleFunc("GET /dashboard/api/status", d.handleStatusJSON)
	m.HandleFunc("GET /dashboard/label", d.handleLabel)
	m.HandleFunc("GET /dashboard/label/image", d.handleLabelImage)
	m.HandleFunc("GET /dashboard/label/bundle/{file}", d.handleBundle)
	m.HandleFunc("POST /dashboard/label/submit", d.handleSubmit)
	m.HandleFunc("GET /dashboard/login", d.handleLogin)
	m.HandleFunc("POST /dashboard/login", d.handleLogin)
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /dashboard/static/", http.StripPrefix(Path+"static/", staticHandler(http.FileServerFS(static))))
	d.mux = m
}

func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// Run subscribes the live feed and samples throughput until ctx ends; then
// it ends every open event stream, so an HTTP shutdown is not held up by
// them.
func (d *Dashboard) Run(ctx context.Context) error {
	sub, err := d.cfg.NC.Subscribe(schemas.SubjectPredictionsAll, func(m *nats.Msg) {
		if ev, ok := predictionEvent(m.Subject, m.Data); ok {
			d.broker.publish(ev)
		}
	})
	if err != nil {
		return fmt.Errorf("dashboard: subscribe %s: %w", schemas.SubjectPredictionsAll, err)
	}
	// Core NATS drops for a slow subscriber instead of blocking the server;
	// the limit keeps this process's memory bounded too.
	_ = sub.SetPendingLimits(4096, 16<<20)
	d.mu.Lock()
	d.runCtx = ctx
	close(d.runStart)
	d.mu.Unlock()
	d.rates.Run(ctx, 10*time.Second)
	_ = sub.Unsubscribe()
	d.broker.close()
	return nil
}

// running returns the Run context, or nil before Run.
func (d *Dashboard) running() context.Context {
	select {
	case <-d.runStart:
		return d.runCtx
	default:
		return nil
	}
}

// cachedGet returns c's value while fresh, else computes it. The lock is
// held while computing, so simultaneous page loads do the work once.
func cachedGet[T any](d *Dashboard, c *cached[T], compute func() (T, error)) (T, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < d.cfg.CacheFor {
		return c.val, c.err
	}
	c.val, c.err = compute()
	c.at = time.Now()
	return c.val, c.err
}

func (d *Dashboard) snapshot(ctx context.Context) (Snapshot, error) {
	return cachedGet(d, &d.snap, func() (Snapshot, error) { return Collect(ctx, d.cfg.JS, DefaultCollectOptions()) })
}

func (d *Dashboard) qualityNow(ctx context.Context) (Quality, error) {
	return cachedGet(d, &d.quality, func() (Quality, error) { return ReadQuality(ctx, d.cfg.JS, d.cfg.Window, 15) })
}

func (d *Dashboard) datasetReport(ctx context.Context) (splitter.DatasetReport, error) {
	return cachedGet(d, &d.report, func() (splitter.DatasetReport, error) {
		return splitter.Report(ctx, d.cfg.Store, objstore.BucketProcessed, d.cfg.Prefix)
	})
}

// page is what every template gets.
type page struct {
	Title, Nav string
	Generated  time.Time
	Errors     []string
	Data       any
}

type loginPage struct {
	Next  string
	Error string
}

func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var errs []string
	title := map[string]string{"dataset": "Dataset", "pipeline": "Pipeline", "models": "Models", "label": "Label", "login": "Sign in"}[name]
	p := page{Title: title, Nav: name, Generated: time.Now().UTC(), Data: data}
	if e, ok := data.(interface{ problems() []string }); ok {
		errs = e.problems()
	}
	p.Errors = errs
	var buf bytes.Buffer
	if err := d.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		d.cfg.Log.Error().Err(err).Str("page", name).Msg("dashboard: render")
		http.Error(w, "dashboard: render failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

func (d *Dashboard) handleLogin(w http.ResponseWriter, r *http.Request) {
	next := r.FormValue("next")
	// Only a path of this dashboard: never an open redirect.
	if !strings.HasPrefix(next, Path) || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		next = Path
	}
	if d.cfg.Token == "" && len(d.label.opts.Annotators) == 0 {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	tok := r.FormValue("token")
	if tok == "" {
		d.render(w, r, http.StatusOK, "login", loginPage{Next: next})
		return
	}
	// An annotator's token signs them in as that annotator (who may
	// submit labels); the dashboard's token as a read-only viewer.
	if name, ok := d.annotatorByToken(tok); ok && r.Method == http.MethodPost {
		http.SetCookie(w, &http.Cookie{Name: AnnotatorCookie, Value: annotatorSession(name, d.label.opts.Annotators[name]), Path: Path, HttpOnly: true,
			SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int((12 * time.Hour).Seconds())})
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	if d.cfg.Token == "" || !equal(tok, d.cfg.Token) {
		d.render(w, r, http.StatusUnauthorized, "login", loginPage{Next: next, Error: "That token is not valid."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: d.session, Path: Path, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int((12 * time.Hour).Seconds())})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// datasetPage is the Dataset page's data.
type datasetPage struct {
	Report   splitter.DatasetReport
	Max      map[string]int // largest class count per folder, for bar lengths
	Dir      string
	Dirs     []string
	PerClass int
	Choices  []int
	Samples  []ClassSamples
	errs     []string
}

func (p datasetPage) problems() []string { return p.errs }

// maxPerClass bounds the thumbnails one page asks for.
const maxPerClass = 24

func (d *Dashboard) handleDataset(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := datasetPage{Dirs: splitter.DatasetDirs(), Dir: schemas.SplitTrain, PerClass: 4, Choices: []int{0, 2, 4, 8, 12, 16, 24}, Max: map[string]int{}}
	if dir := r.URL.Query().Get("split"); slices.Contains(p.Dirs, dir) {
		p.Dir = dir
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil {
		p.PerClass = max(0, min(n, maxPerClass))
	}
	if !slices.Contains(p.Choices, p.PerClass) {
		p.Choices = append(p.Choices, p.PerClass)
		slices.Sort(p.Choices)
	}
	rep, err := d.datasetReport(ctx)
	if err != nil {
		p.errs = append(p.errs, err.Error())
	}
	p.Report = rep
	for _, c := range rep.Classes {
		for dir, n := range c.Counts {
			p.Max[dir] = max(p.Max[dir], n)
		}
	}
	if p.PerClass > 0 {
		if p.Samples, err = Samples(ctx, d.cfg.Store, objstore.BucketProcessed, d.cfg.Prefix, p.Dir, p.PerClass); err != nil {
			p.errs = append(p.errs, err.Error())
		}
	}
	d.render(w, r, http.StatusOK, "dataset", p)
}

// handleThumb streams one dataset PNG from the processed bucket.
func (d *Dashboard) handleThumb(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if !ValidThumbKey(d.cfg.Prefix, key) {
		http.Error(w, "not a dataset image key", http.StatusBadRequest)
		return
	}
	rc, info, err := d.cfg.Store.Get(r.Context(), objstore.BucketProcessed, key)
	if errors.Is(err, objstore.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		d.cfg.Log.Warn().Err(err).Str("key", key).Msg("dashboard: thumbnail")
		http.Error(w, "object store unavailable", http.StatusBadGateway)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "image/png")
	// Keys are content hashes: an image under a key never changes.
	w.Header().Set("Cache-Control", "private, max-age=3600")
	if info.Size > 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	}
	if _, err := io.Copy(w, rc); err != nil && r.Context().Err() == nil {
		d.cfg.Log.Debug().Err(err).Str("key", key).Msg("dashboard: thumbnail copy")
	}
}

// stageRow is one row of the Pipeline page's stage table.
type stageRow struct {
	Stage      string
	Throughput Throughput
	Consumers  []string
	// Missing are consumers the catalogue declares for the stage that the
	// server lacks: the topology was not applied (its messages wait).
	Missing     []string
	Pending     uint64
	AckPending  int
	Redelivered int
	DLQ         DLQStat
	HasDLQ      bool
}

type pipelinePage struct {
	Snap       Snapshot
	Stages     []stageRow
	Recent     []FeedItem
	FeedLimit  int
	Dropped    uint64
	errs       []string
	RatesKnown bool
}

func (p pipelinePage) problems() []string { return p.errs }

func (d *Dashboard) handlePipeline(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	snap, err := d.snapshot(ctx)
	p := pipelinePage{Snap: snap, FeedLimit: 15, Dropped: d.broker.dropped.Load()}
	p.errs = append(p.errs, snap.Problems...)
	if err != nil {
		p.errs = append(p.errs, err.Error())
	}
	tp, err := d.rates.Get()
	if err != nil {
		p.errs = append(p.errs, "throughput: "+err.Error())
	}
	if q, err := d.qualityNow(ctx); err != nil {
		p.errs = append(p.errs, err.Error())
	} else {
		p.Recent = q.Recent
	}
	p.Stages = stageRows(snap, tp)
	for _, s := range p.Stages {
		p.RatesKnown = p.RatesKnown || s.Throughput.Known
	}
	d.render(w, r, http.StatusOK, "pipeline", p)
}

// stageRows joins the consumers, dead letters and throughput per stage.
func stageRows(snap Snapshot, tp map[string]Throughput) []stageRow {
	rows := map[string]*stageRow{}
	var order []string
	row := func(stage string) *stageRow {
		if rows[stage] == nil {
			rows[stage] = &stageRow{Stage: stage, Throughput: Throughput{Stage: stage}}
			order = append(order, stage)
		}
		return rows[stage]
	}
	// Every stage of the catalogue has its row, in pipeline order, with the
	// consumers it should read; stages seen only on the server follow.
	declared := map[string][]string{}
	for _, st := range pipeline.Stages() {
		row(st.Name)
		for _, in := range st.Inputs {
			if !in.Optional {
				declared[st.Name] = append(declared[st.Name], in.Consumers()...)
			}
		}
	}
	for _, c := range snap.Consumers {
		sr := row(c.Stage)
		sr.Consumers = append(sr.Consumers, c.Name)
		sr.Pending += c.Pending
		sr.AckPending += c.AckPending
		sr.Redelivered += c.Redelivered
	}
	for _, dl := range snap.DLQ {
		sr := row(dl.Stage)
		sr.DLQ, sr.HasDLQ = dl, true
	}
	for stage, t := range tp {
		row(stage).Throughput = t
	}
	slices.SortStableFunc(order, func(a, b string) int {
		if oa, ob := stageOrder(a), stageOrder(b); oa != ob {
			return oa - ob
		}
		return strings.Compare(a, b)
	})
	out := make([]stageRow, 0, len(order))
	for _, s := range order {
		sr := rows[s]
		for _, c := range declared[s] {
			if !slices.Contains(sr.Consumers, c) {
				sr.Missing = append(sr.Missing, c)
			}
		}
		out = append(out, *sr)
	}
	return out
}

type modelsPage struct {
	Snap    Snapshot
	Quality Quality
	// Timeline is every step on eye.models, newest first.
	Timeline []schemas.ModelEvent
	errs     []string
}

func (p modelsPage) problems() []string { return p.errs }

func (d *Dashboard) handleModels(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	snap, err := d.snapshot(ctx)
	p := modelsPage{Snap: snap}
	p.errs = append(p.errs, snap.Problems...)
	if err != nil {
		p.errs = append(p.errs, err.Error())
	}
	if p.Quality, err = d.qualityNow(ctx); err != nil {
		p.errs = append(p.errs, err.Error())
	}
	if p.Timeline, err = trainer.Timeline(ctx, stage.StreamReaderOf(d.cfg.JS)); err != nil {
		p.errs = append(p.errs, "model timeline: "+err.Error())
	}
	slices.Reverse(p.Timeline)
	d.render(w, r, http.StatusOK, "models", p)
}

func (d *Dashboard) handleStatusJSON(w http.ResponseWriter, r *http.Request) {
	snap, err := d.snapshot(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = writeJSON(w, snap)
}

// handleEvents streams predictions as server-sent events.
func (d *Dashboard) handleEvents(w http.ResponseWriter, r *http.Request) {
	run := d.running()
	if run == nil {
		http.Error(w, "live feed not running", http.StatusServiceUnavailable)
		return
	}
	c, ok := d.broker.subscribe()
	if !ok {
		w.Header().Set("Retry-After", "30")
		http.Error(w, "too many live feed clients", http.StatusServiceUnavailable)
		return
	}
	defer d.broker.unsubscribe(c)
	rc := http.NewResponseController(w)
	// The server's write timeout is for ordinary responses; an event
	// stream lives until the client or the process goes.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "retry: 3000\n: connected\n\n"); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-run.Done():
			return
		case data, ok := <-c.ch:
			if !ok {
				return
			}
			_, err = fmt.Fprintf(w, "event: prediction\ndata: %s\n\n", data)
		case <-ping.C:
			// A comment keeps proxies from closing an idle stream and
			// tells the client how many events it lost.
			_, err = fmt.Fprintf(w, ": dropped %d\n\n", c.dropped.Load())
		}
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}
