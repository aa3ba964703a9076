package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"eyeflow/dashboard"
	"eyeflow/objstore"
	"eyeflow/telemetry"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// dashboardFlags configure the dashboard (`eyeflow up`, `eyeflow dashboard`).
type dashboardFlags struct {
	off       bool
	token     string
	tokenFile string
	window    int
	// The Label page: Label Studio's editor bundle and the annotators.
	labelDir        string
	annotators      string
	annotatorsFile  string
	annotatorTokens map[string]string
}

func (f *dashboardFlags) register(fs *flagSet) {
	fs.boolVar(&f.off, "dashboard-off", false, "do not serve the dashboard under /dashboard/")
	fs.secretVar(&f.token, "dashboard-token", "bearer token the dashboard requires (empty: open)")
	fs.stringVar(&f.tokenFile, "dashboard-token-file", "", "file holding the dashboard token")
	fs.intVar(&f.window, "dashboard-window", dashboard.DefaultWindow, "latest predictions the dashboard computes accuracy and confusion matrices over")
	fs.stringVar(&f.labelDir, "label-studio-dir", "", "directory of Label Studio's editor bundle (main.js, main.css) for the Label page, as scripts/install-label-studio.sh prints it (empty: its cache, when installed)")
	fs.secretVar(&f.annotators, "label-annotators", "annotators who may submit labels on the Label page: name:token[,name:token...]")
	fs.stringVar(&f.annotatorsFile, "label-annotators-file", "", "file of annotators who may submit labels, one name:token a line (# comments)")
}

// labelStudioDir is --label-studio-dir, else the install script's cache
// when the bundle is there ("" when it is not: the page says so).
func (f *dashboardFlags) labelStudioDir() string {
	if f.labelDir != "" {
		return f.labelDir
	}
	cache := os.Getenv("EYEFLOW_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(base, "eyeflow")
	}
	dir := filepath.Join(cache, "label-studio-1.4.0")
	if _, err := os.Stat(filepath.Join(dir, "main.js")); err != nil {
		return ""
	}
	return dir
}

// parseAnnotators reads name:token entries (lines of a file, or commas).
func parseAnnotators(src, text string, sep string, into map[string]string) error {
	for i, line := range strings.Split(text, sep) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, tok, ok := strings.Cut(line, ":")
		name, tok = strings.TrimSpace(name), strings.TrimSpace(tok)
		if !ok || !dashboard.ValidAnnotator(name) || len(tok) < 16 {
			return fmt.Errorf("%s entry %d: want name:token, a name of letters, digits, . _ @ - and a token of at least 16 characters", src, i+1)
		}
		if _, dup := into[name]; dup {
			return fmt.Errorf("%s: annotator %s given twice", src, name)
		}
		into[name] = tok
	}
	return nil
}

func (f *dashboardFlags) annotatorsValue() (map[string]string, error) {
	out := map[string]string{}
	if err := parseAnnotators("--label-annotators", f.annotators, ",", out); err != nil {
		return nil, err
	}
	if f.annotatorsFile != "" {
		b, err := os.ReadFile(f.annotatorsFile)
		if err != nil {
			return nil, fmt.Errorf("--label-annotators-file: %w", err)
		}
		if err := parseAnnotators("--label-annotators-file "+f.annotatorsFile, string(b), "\n", out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (f *dashboardFlags) validate() error {
	if f.window < 1 || f.window > 1_000_000 {
		return fmt.Errorf("--dashboard-window %d: want 1..1000000", f.window)
	}
	if _, err := f.tokenValue(); err != nil {
		return err
	}
	var err error
	f.annotatorTokens, err = f.annotatorsValue()
	return err
}

func (f *dashboardFlags) tokenValue() (string, error) {
	if f.tokenFile == "" {
		return f.token, nil
	}
	b, err := os.ReadFile(f.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--dashboard-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--dashboard-token-file %s is empty", f.tokenFile)
	}
	return tok, nil
}

// mount adds the dashboard to srv's mux and returns the task feeding it
// (live predictions, throughput samples). counters nil reads this process's
// registry, which in `eyeflow up` holds every stage's counters.
func (f *dashboardFlags) mount(p *proc, nc *nats.Conn, js jetstream.JetStream, store objstore.Store, srv *telemetry.Server, prefix string, counters dashboard.CounterSource) (task, error) {
	if f.off {
		return task{name: "dashboard", run: func(context.Context) error { return nil }}, nil
	}
	if err := f.validate(); err != nil {
		return task{}, err
	}
	tok, err := f.tokenValue()
	if err != nil {
		return task{}, err
	}
	if counters == nil {
		counters = dashboard.GathererSource(p.reg)
	}
	d, err := dashboard.New(dashboard.Config{NC: nc, JS: js, Store: store, Prefix: prefix, Token: tok, Window: f.window,
		Counters: counters, Label: dashboard.LabelOptions{BundleDir: f.labelStudioDir(), Annotators: f.annotatorTokens}, Log: p.log.With().Str("component", "dashboard").Logger()})
	if err != nil {
		return task{}, err
	}
	d.Mount(srv.Mux)
	return task{name: "dashboard", run: d.Run}, nil
}

func runDashboard(ctx context.Context, args []string, out, errOut io.Writer) error {
	var s standalone
	var df dashboardFlags
	var prefix, metrics string
	fs := newFlagSet("dashboard", "", "Serves the dashboard (/dashboard/: dataset, pipeline, models) with /metrics, /healthz and /readyz,\n"+
		"read-only against --nats and --s3. Throughput comes from the stages' /metrics (--metrics-urls).", out, errOut)
	s.register(fs)
	df.register(fs)
	registerSplitPrefix(fs, &prefix)
	fs.stringVar(&metrics, "metrics-urls", "", "comma-separated /metrics URLs of the stage processes, for throughput (e.g. http://resize:8080/metrics)")
	var urls []string
	if err := fs.parse(args, s.validate, df.validate, func() (err error) {
		if s.http == "" {
			return fmt.Errorf("--http is required: the dashboard is served there")
		}
		urls, err = parseURLs(metrics)
		return err
	}); err != nil {
		return err
	}
	return s.run(ctx, "dashboard", errOut, nil, func(e standaloneEnv) ([]task, error) {
		var counters dashboard.CounterSource
		if len(urls) > 0 {
			counters = dashboard.ScrapeSource(&http.Client{Timeout: 5 * time.Second}, urls)
		}
		dt, err := df.mount(e.p, e.nc, e.js, e.store, e.srv, prefix, counters)
		if err != nil {
			return nil, err
		}
		e.p.log.Info().Str("dashboard", "http://"+e.srv.Addr()+dashboard.Path).Msg("dashboard mounted")
		return []task{dt}, nil
	})
}

func parseURLs(list string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return nil, fmt.Errorf("--metrics-urls: %q is not an http(s) URL", u)
		}
		out = append(out, u)
	}
	return out, nil
}
