// Command loadgen posts image files to an HTTP /predict endpoint at a fixed
// concurrency (closed loop: each worker sends its next request when the last
// one answered) and prints throughput and latency percentiles. The same
// program drives eyeflow and the old FastAPI service, so their numbers are
// comparable.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Name        string  `json:"name"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"requests_per_second"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/predict", "endpoint")
	name := flag.String("name", "", "label for the result")
	conc := flag.Int("c", 1, "concurrent requests")
	n := flag.Int("n", 100, "requests in total")
	warm := flag.Int("warmup", 5, "requests before measuring")
	field := flag.String("field", "file", "multipart field name")
	flag.Parse()
	files := flag.Args()
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: loadgen [flags] IMAGE...")
		os.Exit(2)
	}
	bodies := make([][]byte, len(files))
	ctypes := make([]string, len(files))
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		part, _ := w.CreateFormFile(*field, filepath.Base(f))
		part.Write(data)
		w.Close()
		bodies[i], ctypes[i] = b.Bytes(), w.FormDataContentType()
	}
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	post := func(i int) (time.Duration, error) {
		start := time.Now()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, *url, bytes.NewReader(bodies[i%len(bodies)]))
		req.Header.Set("Content-Type", ctypes[i%len(bodies)])
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("status %s", resp.Status)
		}
		return time.Since(start), nil
	}
	for i := range *warm {
		if _, err := post(i); err != nil {
			fmt.Fprintln(os.Stderr, "warm-up:", err)
			os.Exit(1)
		}
	}
	var (
		next   atomic.Int64
		errs   atomic.Int64
		mu     sync.Mutex
		lat    []time.Duration
		wg     sync.WaitGroup
		start  = time.Now()
		maxReq = int64(*n)
	)
	for range *conc {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= maxReq {
					return
				}
				d, err := post(int(i))
				if err != nil {
					errs.Add(1)
					continue
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	r := result{Name: *name, Concurrency: *conc, Requests: len(lat), Errors: errs.Load(), Seconds: secs,
		PerSecond: float64(len(lat)) / secs, P50ms: pct(0.50), P99ms: pct(0.99)}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}
