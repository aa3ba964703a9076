// Command analyze reads a finished eyeflow run back from its streams and
// metrics: upload-to-prediction latency per image (stored time of the
// eye.uploads event to stored time of the eye.predictions.<env> event) and
// the share of processing time each stage took.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/objstore"
	"eyeflow/schemas"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", "NATS URL")
	metrics := flag.String("metrics", "http://127.0.0.1:8080/metrics", "eyeflow /metrics URL")
	env := flag.String("env", schemas.EnvProd, "environment")
	span := flag.String("span", "", "only print the seconds between the first and the last message stored in this stream")
	flag.Parse()
	if *span != "" {
		if err := printSpan(*natsURL, *span); err != nil {
			fmt.Fprintln(os.Stderr, "analyze:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*natsURL, *metrics, *env); err != nil {
		fmt.Fprintln(os.Stderr, "analyze:", err)
		os.Exit(1)
	}
}

func connect(natsURL string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func run(natsURL, metricsURL, env string) error {
	nc, js, err := connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx := context.Background()
	uploaded := map[string]time.Time{}
	err = each(ctx, js, bus.StreamUploads, schemas.SubjectUploads, func(data []byte, stored time.Time) {
		ev, err := schemas.DecodeS3Event(data)
		if err != nil {
			return
		}
		ups, _ := ev.Uploads()
		for _, u := range ups {
			if t, ok := uploaded[u.ID()]; !ok || stored.Before(t) {
				uploaded[u.ID()] = stored
			}
		}
	})
	if err != nil {
		return err
	}
	var lat []time.Duration
	var first, last time.Time
	err = each(ctx, js, bus.StreamPredictions, schemas.PredictionSubject(env), func(data []byte, stored time.Time) {
		p, err := schemas.DecodePrediction(data)
		if err != nil {
			return
		}
		up, ok := uploaded[p.UploadID]
		if !ok {
			return
		}
		lat = append(lat, stored.Sub(up))
		if first.IsZero() || up.Before(first) {
			first = up
		}
		if stored.After(last) {
			last = stored
		}
	})
	if err != nil {
		return err
	}
	if len(lat) == 0 {
		return fmt.Errorf("no predictions on %s matched an upload", schemas.PredictionSubject(env))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	span := last.Sub(first).Seconds()
	shares, err := stageShares(metricsURL)
	if err != nil {
		return err
	}
	batch, err := meanBatch(metricsURL, env)
	if err != nil {
		return err
	}
	streams := map[string]any{}
	for _, name := range []string{bus.StreamUploads, bus.StreamResized, bus.StreamSplits, bus.StreamPredictions, "OBJ_" + objstore.BucketProcessed, "OBJ_" + objstore.BucketRaw} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			continue
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		streams[name] = map[string]any{"messages": info.State.Msgs, "bytes": info.State.Bytes, "bytes_per_image": float64(info.State.Bytes) / float64(len(lat))}
	}
	acct, err := js.AccountInfo(ctx)
	if err != nil {
		return err
	}
	out := map[string]any{
		"images": len(lat), "seconds_first_upload_to_last_prediction": span,
		"images_per_second":   float64(len(lat)) / span,
		"latency_p50_seconds": pct(0.5).Seconds(), "latency_p99_seconds": pct(0.99).Seconds(),
		"stage_time_share": shares,
		"mean_batch":       batch,
		"streams":          streams,
		// Everything JetStream stores (streams, KV, object stores).
		"jetstream_bytes_per_image": float64(acct.Store) / float64(len(lat)),
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Println(string(b))
	return nil
}

// printSpan prints the seconds from the first to the last message stored in
// stream, and their count.
func printSpan(natsURL, stream string) error {
	nc, js, err := connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx := context.Background()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info := st.CachedInfo().State
	if info.Msgs == 0 {
		return fmt.Errorf("%s is empty", stream)
	}
	fmt.Printf("%.3f %d\n", info.LastTime.Sub(info.FirstTime).Seconds(), info.Msgs)
	return nil
}

// each calls f for every message on subject, with its stored time.
func each(ctx context.Context, js jetstream.JetStream, stream, subject string, f func([]byte, time.Time)) error {
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return err
	}
	for {
		b, err := c.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range b.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			f(m.Data(), md.Timestamp)
			n++
		}
		if n == 0 {
			return nil
		}
	}
}

// meanBatch is env's eyeflow_classifier_batch_size sum over count: images
// per session run.
func meanBatch(url, env string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum, count float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `env="`+env+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "eyeflow_classifier_batch_size_sum{"):
			sum += v
		case strings.HasPrefix(line, "eyeflow_classifier_batch_size_count{"):
			count += v
		}
	}
	if count == 0 {
		return 0, sc.Err()
	}
	return sum / count, sc.Err()
}

// stageShares is each stage's part of eyeflow_processing_seconds_sum, and
// its seconds per call (a message, or a batch for the classifier).
func stageShares(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sums, counts := map[string]float64{}, map[string]float64{}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		count := strings.HasPrefix(line, "eyeflow_processing_seconds_count{")
		if !count && !strings.HasPrefix(line, "eyeflow_processing_seconds_sum{") {
			continue
		}
		i := strings.Index(line, `stage="`)
		if i < 0 {
			continue
		}
		st := line[i+7:]
		st = st[:strings.IndexByte(st, '"')]
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			continue
		}
		if count {
			counts[st] += v
			continue
		}
		sums[st] += v
		total += v
	}
	out := map[string]float64{}
	for k := range sums {
		out[k] = sums[k] / total
		if counts[k] > 0 {
			out[k+"_ms_per_call"] = 1e3 * sums[k] / counts[k]
		}
	}
	return out, sc.Err()
}
