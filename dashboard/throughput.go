package dashboard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// processedMetric is the runtime's counter of messages a stage processed
// and acknowledged (stage/metrics.go): the dashboard's throughput.
const processedMetric = "eyeflow_messages_processed_total"

// CounterSource returns the processed-message counters per stage.
type CounterSource func(ctx context.Context) (map[string]float64, error)

// GathererSource reads the counters from a registry in this process, as in
// `eyeflow up` where every stage shares the process's registry.
func GathererSource(g prometheus.Gatherer) CounterSource {
	return func(context.Context) (map[string]float64, error) {
		mfs, err := g.Gather()
		if err != nil {
			return nil, fmt.Errorf("gather metrics: %w", err)
		}
		out := map[string]float64{}
		for _, mf := range mfs {
			addProcessed(out, mf)
		}
		return out, nil
	}
}

// ScrapeSource reads the counters from other eyeflow processes' /metrics
// (the standalone dashboard next to one process per stage). The counters
// of several processes of the same stage add up.
func ScrapeSource(client *http.Client, urls []string) CounterSource {
	return func(ctx context.Context) (map[string]float64, error) {
		out := map[string]float64{}
		var errs []error
		for _, u := range urls {
			if err := scrape(ctx, client, u, out); err != nil {
				errs = append(errs, err)
			}
		}
		return out, errors.Join(errs...)
	}
}

func scrape(ctx context.Context, client *http.Client, url string, out map[string]float64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("scrape %s: parse: %w", url, err)
	}
	if mf, ok := mfs[processedMetric]; ok {
		addProcessed(out, mf)
	}
	return nil
}

func addProcessed(out map[string]float64, mf *dto.MetricFamily) {
	if mf.GetName() != processedMetric {
		return
	}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "stage" {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
}

// Rates keeps recent samples of the counters and turns them into a rate.
type Rates struct {
	source CounterSource
	keep   time.Duration
	now    func() time.Time

	mu      sync.Mutex
	samples []sample
	lastErr error
}

type sample struct {
	at     time.Time
	counts map[string]float64
}

// Throughput is one stage's processed total and recent rate.
type Throughput struct {
	Stage     string
	Processed float64
	// PerMinute is the rate over Over; Known is false until two samples exist.
	PerMinute float64
	Over      time.Duration
	Known     bool
}

// NewRates samples source, keeping samples for keep (the rate's window).
func NewRates(source CounterSource, keep time.Duration) *Rates {
	return &Rates{source: source, keep: keep, now: time.Now}
}

// Sample takes one sample now.
func (r *Rates) Sample(ctx context.Context) {
	counts, err := r.source(ctx)
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err
	if counts == nil {
		return
	}
	r.samples = append(r.samples, sample{at: now, counts: counts})
	cut := 0
	for cut < len(r.samples)-2 && now.Sub(r.samples[cut].at) > r.keep {
		cut++
	}
	r.samples = r.samples[cut:]
}

// Run samples every interval until ctx ends.
func (r *Rates) Run(ctx context.Context, interval time.Duration) {
	r.Sample(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Sample(ctx)
		}
	}
}

// Get returns the latest totals and the rate per stage, and the last
// sampling error (a process that could not be scraped).
func (r *Rates) Get() (map[string]Throughput, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Throughput{}
	if len(r.samples) == 0 {
		return out, r.lastErr
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	dt := last.at.Sub(first.at)
	for stage, v := range last.counts {
		t := Throughput{Stage: stage, Processed: v}
		if dt > 0 {
			d := v - first.counts[stage]
			if d < 0 { // the process restarted: its counter began again
				d = v
			}
			t.PerMinute, t.Over, t.Known = d/dt.Minutes(), dt, true
		}
		out[stage] = t
	}
	return out, r.lastErr
}
