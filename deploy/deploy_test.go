package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"eyeflow/processors/classifier"
	"eyeflow/processors/driftwatch"
	"eyeflow/stage"
	"eyeflow/telemetry"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"
)

// promtool finds Debian's promtool (package prometheus). Missing fails the
// test: the rules are only trusted when their unit tests ran.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's package `prometheus` (scripts/setup.sh does); the rule tests never skip")
	}
	return p
}

func TestPromtool(t *testing.T) {
	bin := promtool(t)
	tests := []struct {
		name string
		args []string
	}{
		{"config", []string{"check", "config", "prometheus/prometheus.yml"}},
		{"rules", []string{"check", "rules", "prometheus/rules/eyeflow.rules.yml"}},
		{"rule unit tests", []string{"test", "rules", "prometheus/tests/eyeflow.rules_test.yml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(bin, tt.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			}
		})
	}
}

// recorder is a Registerer that keeps the collectors, so that vectors
// without any series yet still tell their names and types.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exported returns every series name eyeflow's processes can expose: the
// runtime's, the classifier's and driftwatch's metrics (histograms with
// their _bucket, _sum and _count series), the Go and process collectors',
// and Prometheus's own up.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{}
	stage.NewMetrics(rec)
	classifier.NewMetrics(rec)
	driftwatch.NewMetrics(rec)
	names := map[string]bool{"up": true, "ALERTS": true}
	for _, c := range rec.cs {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			names[m[1]] = true
			if _, ok := c.(*prometheus.HistogramVec); ok {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[m[1]+s] = true
				}
			}
		}
	}
	mfs, err := telemetry.NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM || mf.GetType() == dto.MetricType_SUMMARY {
			names[mf.GetName()+"_sum"], names[mf.GetName()+"_count"], names[mf.GetName()+"_bucket"] = true, true, true
		}
	}
	if !names["predictions_total"] || !names["eyeflow_consumer_pending_messages"] || !names["inference_latency_seconds_bucket"] {
		t.Fatalf("metric collection is broken: %v", names)
	}
	return names
}

var (
	strLit    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	matchers  = regexp.MustCompile(`\{[^}]*\}`)
	ranges    = regexp.MustCompile(`\[[^\]]*\]`)
	grouping  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	ident     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	funcCall  = regexp.MustCompile(`^\s*\(`)
	promqlKey = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "e"}
)

// metricNames extracts the metric names a PromQL expression selects: what
// remains after string literals, label matchers, ranges and grouping
// clauses are removed, that is not a function call, keyword or number.
func metricNames(expr string) []string {
	s := strLit.ReplaceAllString(expr, `""`)
	s = matchers.ReplaceAllString(s, " ")
	s = ranges.ReplaceAllString(s, " ")
	s = grouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range ident.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (s[loc[0]-1] >= '0' && s[loc[0]-1] <= '9' || s[loc[0]-1] == '.') {
			continue // part of a number such as 1e-9 or a duration
		}
		if funcCall.MatchString(s[loc[1]:]) || slices.Contains(promqlKey, strings.ToLower(name)) {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`sum by (env) (rate(predictions_total{env="prod"}[5m]))`, []string{"predictions_total"}},
		{`histogram_quantile(0.99, sum by (env, le) (rate(inference_latency_seconds_bucket[5m]))) > 2`, []string{"inference_latency_seconds_bucket"}},
		{`a / clamp_min(b, 1e-9) > 0.1 and on (stage) c`, []string{"a", "b", "c"}},
		{`up{job="eyeflow"} == 0`, []string{"up"}},
	}
	for _, tt := range tests {
		if got := metricNames(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("metricNames(%q) = %v, want %v", tt.expr, got, tt.want)
		}
	}
}

type query struct{ where, expr string }

func ruleQueries(t *testing.T) []query {
	t.Helper()
	data, err := os.ReadFile("prometheus/rules/eyeflow.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var out []query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, query{"rule " + r.Alert, r.Expr})
		}
	}
	return out
}

type grafanaDashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func dashboards(t *testing.T) map[string]grafanaDashboard {
	t.Helper()
	files, err := filepath.Glob("grafana/dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	out := map[string]grafanaDashboard{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d grafanaDashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = d
	}
	return out
}

// TestQueriesUseExportedMetrics: every rule and panel query selects only
// metrics eyeflow exports, and selects at least one.
func TestQueriesUseExportedMetrics(t *testing.T) {
	names := exported(t)
	qs := ruleQueries(t)
	for file, d := range dashboards(t) {
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				qs = append(qs, query{file + " panel " + p.Title, tg.Expr})
			}
		}
	}
	if len(qs) < 10 {
		t.Fatalf("only %d queries found", len(qs))
	}
	for _, q := range qs {
		used := metricNames(q.expr)
		if len(used) == 0 {
			t.Errorf("%s: no metric in %q", q.where, q.expr)
		}
		for _, n := range used {
			if !names[n] {
				t.Errorf("%s: %q is not a metric eyeflow exports (in %q)", q.where, n, q.expr)
			}
		}
	}
}

// TestGrafanaProvisioning: the panels use the provisioned datasource, and
// the dashboard provider reads the folder compose.yaml mounts the JSON in.
func TestGrafanaProvisioning(t *testing.T) {
	var ds struct {
		Datasources []struct {
			UID, Type, URL string
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("datasources %+v", ds.Datasources)
	}
	uid := ds.Datasources[0].UID
	for file, d := range dashboards(t) {
		if d.UID == "" || len(d.Panels) == 0 {
			t.Errorf("%s: no uid or no panels", file)
		}
		for _, p := range d.Panels {
			if p.Datasource.UID != uid || len(p.Targets) == 0 {
				t.Errorf("%s panel %q: datasource %q (want %q), %d queries", file, p.Title, p.Datasource.UID, uid, len(p.Targets))
			}
		}
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/eyeflow.yml", &prov)
	compose, err := os.ReadFile("../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 || !strings.Contains(string(compose), "./deploy/grafana/dashboards:"+prov.Providers[0].Options.Path) {
		t.Fatalf("dashboard provider %+v: compose.yaml must mount ./deploy/grafana/dashboards at its path", prov.Providers)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
