package dashboard

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// pageNames are the templates under templates/, each combined with layout.html.
var pageNames = []string{"dataset", "pipeline", "models", "label", "login"}

func parsePages() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

var funcs = template.FuncMap{
	// bar is a bar's length in percent of the largest value, at least a
	// sliver for a non-zero value so that it stays visible.
	"bar": func(n, maxN int) float64 {
		if n <= 0 || maxN <= 0 {
			return 0
		}
		return math.Max(2, math.Round(1000*float64(n)/float64(maxN))/10)
	},
	"short": func(id string) string {
		if len(id) > 12 {
			return id[:12]
		}
		return id
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return fmt.Sprintf("%ds ago", int(d.Seconds()))
		case d < time.Hour:
			return fmt.Sprintf("%dm ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%dh ago", int(d.Hours()))
		}
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	},
	"bytes": humanBytes,
	"pct":   func(f float64) string { return fmt.Sprintf("%.1f%%", f) },
	"f2":    func(f float64) string { return fmt.Sprintf("%.2f", f) },
	"f3":    func(f float64) string { return fmt.Sprintf("%.3f", f) },
	"rate": func(t Throughput) string {
		if !t.Known {
			return "—"
		}
		return fmt.Sprintf("%.1f", t.PerMinute)
	},
	"count": func(f float64) string { return fmt.Sprintf("%.0f", f) },
	"join":  strings.Join,
	// shade buckets a cell's share of its row into 5 levels, which the
	// stylesheet draws as denser patterns (not colour alone).
	"shade": func(n, total int) int {
		if n == 0 || total == 0 {
			return 0
		}
		return 1 + min(3, int(4*float64(n)/float64(total)))
	},
	"seq": func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	},
	"idx": func(cells [][]int, i, j int) int { return cells[i][j] },
	"key": func(k string) string { return k[strings.LastIndex(k, "/")+1:] },
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}
