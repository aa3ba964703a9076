package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/internal/deployment"
	"eyeflow/pipeline"
	"eyeflow/processors/driftwatch"
	"eyeflow/schemas"

	"github.com/nats-io/nats.go/jetstream"
)

// Snapshot is the pipeline's state as JetStream reports it: what
// `eyeflow status` prints and the Pipeline and Models pages show.
type Snapshot struct {
	Time      time.Time      `json:"time"`
	Streams   []StreamStat   `json:"streams"`
	Consumers []ConsumerStat `json:"consumers"`
	DLQ       []DLQStat      `json:"dlq"`
	// DeadLetters are the latest dead letters, newest first.
	DeadLetters []DeadLetterView `json:"dead_letters"`
	Envs        []EnvStatus      `json:"envs"`
	// Alerts are the latest drift alerts, newest first.
	Alerts []schemas.DriftAlert `json:"alerts"`
	// Problems are parts that could not be read (a missing stream or KV
	// bucket): the rest of the snapshot is still shown.
	Problems []string `json:"problems"`
	// Store is the deployment's object store, as `eyeflow buckets init`
	// or `eyeflow up` recorded it; nil before.
	Store *deployment.StoreRecord `json:"object_store,omitempty"`
}

// StreamStat is one stream's size.
type StreamStat struct {
	Name      string `json:"name"`
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Consumers int    `json:"consumers"`
}

// ConsumerStat is one durable consumer's progress.
type ConsumerStat struct {
	Stream string `json:"stream"`
	Name   string `json:"name"`
	Stage  string `json:"stage"`
	// Pending is the lag: stream messages not yet delivered.
	Pending uint64 `json:"pending"`
	// AckPending are delivered and not yet acknowledged.
	AckPending int `json:"ack_pending"`
	// Redelivered are messages currently redelivered at least once.
	Redelivered int `json:"redelivered"`
	// AckFloor is the stream sequence below which everything is acknowledged.
	AckFloor uint64 `json:"ack_floor"`
}

// DLQStat counts one stage's dead letters.
type DLQStat struct {
	Stage string `json:"stage"`
	Count uint64 `json:"count"`
	// Reasons are the latest distinct reasons, newest first.
	Reasons []string `json:"reasons"`
	// ReasonCounts are every reason of the stage's dead letters in the
	// stream with its count, most frequent first (CollectOptions.AllReasons).
	ReasonCounts []ReasonCount `json:"reason_counts"`
}

// ReasonCount is how many dead letters of a stage carry a reason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  uint64 `json:"count"`
}

// DeadLetterView is a dead letter without its payload.
type DeadLetterView struct {
	Sequence   uint64    `json:"sequence"`
	Stage      string    `json:"stage"`
	Subject    string    `json:"subject"`
	Reason     string    `json:"reason"`
	Error      string    `json:"error"`
	Permanent  bool      `json:"permanent"`
	Deliveries uint64    `json:"deliveries"`
	Time       time.Time `json:"time"`
}

// EnvStatus is one environment's model and drift state.
type EnvStatus struct {
	Env        string    `json:"env"`
	ModelName  string    `json:"model_name"`
	Version    string    `json:"model_version"`
	PromotedAt time.Time `json:"promoted_at,omitzero"`
	// Serving is what the env's classifier last did with a model promoted
	// to it: served it, or refused it and why.
	Serving *deployment.Serving `json:"serving,omitempty"`
	// Drift has one entry per model version driftwatch has state for,
	// the served version first.
	Drift []DriftState `json:"drift"`
}

// Refused returns the classifier's refusal of the model promoted to the
// env, when it refused that one.
func (e EnvStatus) Refused() (deployment.Serving, bool) {
	if e.Serving == nil || e.Serving.State != deployment.StateRefused || e.Serving.Name != e.ModelName || e.Serving.Version != e.Version {
		return deployment.Serving{}, false
	}
	return *e.Serving, true
}

// Firing reports whether any drift signal fires for the served version.
func (e EnvStatus) Firing() bool {
	for _, d := range e.Drift {
		if d.ModelVersion == e.Version && d.AnyFiring() {
			return true
		}
	}
	return false
}

// DriftState is driftwatch's state for one env and model version.
type DriftState struct {
	ModelVersion string  `json:"model_version"`
	StreakLen    int     `json:"streak_len"`
	StreakFiring bool    `json:"streak_firing"`
	KSFiring     bool    `json:"entropy_ks_firing"`
	KSTested     int     `json:"entropy_ks_tested"`
	KSP          float64 `json:"entropy_ks_p"`
	Chi2Firing   bool    `json:"class_chi2_firing"`
	Chi2Tested   int     `json:"class_chi2_tested"`
	Chi2P        float64 `json:"class_chi2_p"`
	LastSeq      uint64  `json:"last_seq"`
}

// AnyFiring reports whether one of the signals fires.
func (d DriftState) AnyFiring() bool { return d.StreakFiring || d.KSFiring || d.Chi2Firing }

// modelAssignment is the value of an env's key in KV eyeflow_models, as
// models.Assignment writes it (read here without importing the
// classifier, which would pull ONNX Runtime into every dashboard build).
type modelAssignment struct {
	Name       string    `json:"name"`
	Version    string    `json:"version"`
	PromotedAt time.Time `json:"promoted_at"`
}

// CollectOptions bound what Collect reads.
type CollectOptions struct {
	// RecentDeadLetters and RecentAlerts are how many of the latest
	// messages of EYE_DLQ and EYE_DRIFT are read.
	RecentDeadLetters int
	RecentAlerts      int
	// AllReasons counts every dead letter's reason, reading the whole
	// EYE_DLQ stream (small next to the pipeline's: only failures).
	AllReasons bool
}

// DefaultCollectOptions are what the dashboard and `eyeflow status` use.
func DefaultCollectOptions() CollectOptions {
	return CollectOptions{RecentDeadLetters: 200, RecentAlerts: 20, AllReasons: true}
}

// Collect reads the pipeline's state from JetStream. A missing stream or
// bucket is a Problem, not an error, so that a half-deployed pipeline still
// shows what exists; the error is for a context that ended.
func Collect(ctx context.Context, js jetstream.JetStream, o CollectOptions) (Snapshot, error) {
	s := Snapshot{Time: time.Now().UTC(), Streams: []StreamStat{}, Consumers: []ConsumerStat{}, DLQ: []DLQStat{},
		DeadLetters: []DeadLetterView{}, Envs: []EnvStatus{}, Alerts: []schemas.DriftAlert{}, Problems: []string{}}
	problem := func(err error) { s.Problems = append(s.Problems, err.Error()) }

	for _, sc := range bus.Streams(bus.DefaultOptions()) {
		st, err := js.Stream(ctx, sc.Name)
		if err != nil {
			if ctx.Err() != nil {
				return s, ctx.Err()
			}
			problem(fmt.Errorf("stream %s: %w (run `eyeflow topology apply`)", sc.Name, err))
			continue
		}
		info := st.CachedInfo()
		s.Streams = append(s.Streams, StreamStat{Name: sc.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq, Consumers: info.State.Consumers})
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			// Ephemeral consumers are readers like this dashboard's own
			// ordered consumers, not pipeline stages.
			if ci.Config.Durable == "" {
				continue
			}
			s.Consumers = append(s.Consumers, ConsumerStat{Stream: sc.Name, Name: ci.Name, Stage: StageOfConsumer(ci.Name),
				Pending: ci.NumPending, AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered, AckFloor: ci.AckFloor.Stream})
		}
		if err := lister.Err(); err != nil {
			problem(fmt.Errorf("consumers of %s: %w", sc.Name, err))
		}
	}
	sort.SliceStable(s.Consumers, func(i, j int) bool {
		return stageOrder(s.Consumers[i].Stage) < stageOrder(s.Consumers[j].Stage) ||
			stageOrder(s.Consumers[i].Stage) == stageOrder(s.Consumers[j].Stage) && s.Consumers[i].Name < s.Consumers[j].Name
	})

	if err := collectDLQ(ctx, js, o.RecentDeadLetters, o.AllReasons, &s); err != nil {
		problem(err)
	}
	if err := collectEnvs(ctx, js, &s); err != nil {
		problem(err)
	}
	alerts, err := readLast(ctx, js, bus.StreamDrift, o.RecentAlerts)
	if err != nil {
		problem(err)
	}
	for i := len(alerts) - 1; i >= 0; i-- {
		a, err := schemas.DecodeDriftAlert(alerts[i].Data)
		if err != nil {
			problem(fmt.Errorf("%s seq %d: %w", bus.StreamDrift, alerts[i].Seq, err))
			continue
		}
		s.Alerts = append(s.Alerts, a)
	}
	return s, ctx.Err()
}

// StageOfConsumer names the stage that reads a durable consumer, by the
// catalogue (classifier-prod is the classifier's, labelsink-predictions the
// label sink's, ingest-ledger the ingest's); a consumer the catalogue does
// not declare is its own.
func StageOfConsumer(name string) string {
	if st := pipeline.OfConsumer(name); st != "" {
		return st
	}
	return name
}

// stageOrder sorts stages in the catalogue's order, unknown ones last.
func stageOrder(stage string) int { return pipeline.Order(stage) }

// collectDLQ counts dead letters per stage from the stream's per-subject
// counts (exact over the whole stream), takes the latest reasons from its
// last messages and, with all, counts every reason over the whole stream.
func collectDLQ(ctx context.Context, js jetstream.JetStream, recent int, all bool, s *Snapshot) error {
	st, err := js.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		return fmt.Errorf("stream %s: %w", bus.StreamDLQ, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(schemas.SubjectDLQAll))
	if err != nil {
		return fmt.Errorf("stream %s: subject counts: %w", bus.StreamDLQ, err)
	}
	counts := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		counts[strings.TrimPrefix(subj, strings.TrimSuffix(schemas.SubjectDLQAll, "*"))] += n
	}
	stages := slices.Clone(schemas.Stages()) // ingest shows once it has dead letters
	for stage := range counts {
		if !slices.Contains(stages, stage) {
			stages = append(stages, stage)
		}
	}
	sort.SliceStable(stages, func(i, j int) bool { return stageOrder(stages[i]) < stageOrder(stages[j]) })
	msgs, err := readLast(ctx, js, bus.StreamDLQ, recent)
	reasons := map[string][]string{}
	for i := len(msgs) - 1; i >= 0; i-- {
		dl, derr := schemas.DecodeDeadLetter(msgs[i].Data)
		if derr != nil {
			continue // not ours to judge here: the stream may hold foreign messages
		}
		if dl.Stage == "" {
			dl.Stage = strings.TrimPrefix(msgs[i].Subject, strings.TrimSuffix(schemas.SubjectDLQAll, "*"))
		}
		s.DeadLetters = append(s.DeadLetters, DeadLetterView{Sequence: msgs[i].Seq, Stage: dl.Stage, Subject: dl.Subject,
			Reason: dl.Reason, Error: dl.Error, Permanent: dl.Permanent, Deliveries: dl.Deliveries, Time: dl.Time})
		if r := dl.Reason; len(reasons[dl.Stage]) < 3 && !slices.Contains(reasons[dl.Stage], r) {
			reasons[dl.Stage] = append(reasons[dl.Stage], r)
		}
	}
	var byReason map[string]map[string]uint64
	if all {
		var cerr error
		byReason, cerr = countReasons(ctx, st, info.State.FirstSeq, info.State.LastSeq)
		err = errors.Join(err, cerr)
	}
	for _, stage := range stages {
		r := reasons[stage]
		if r == nil {
			r = []string{}
		}
		rc := []ReasonCount{}
		for reason, n := range byReason[stage] {
			rc = append(rc, ReasonCount{Reason: reason, Count: n})
		}
		sort.Slice(rc, func(i, j int) bool {
			return rc[i].Count > rc[j].Count || rc[i].Count == rc[j].Count && rc[i].Reason < rc[j].Reason
		})
		s.DLQ = append(s.DLQ, DLQStat{Stage: stage, Count: counts[stage], Reasons: r, ReasonCounts: rc})
	}
	return err
}

// countReasons reads every message of the DLQ stream between first and
// last (the stream's state when the count began) and counts the reasons
// per stage. Only stage and reason are decoded; a message that is not a
// dead letter counts under its subject's stage as "unreadable".
func countReasons(ctx context.Context, st jetstream.Stream, first, last uint64) (map[string]map[string]uint64, error) {
	out := map[string]map[string]uint64{}
	if last == 0 || last < first {
		return out, nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(first, 1),
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return out, fmt.Errorf("stream %s: reason counter: %w", bus.StreamDLQ, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, c.CachedInfo().Name)
	}()
	prefix := strings.TrimSuffix(schemas.SubjectDLQAll, "*")
	for {
		batch, err := c.FetchNoWait(512)
		if err != nil {
			return out, fmt.Errorf("stream %s: count reasons: %w", bus.StreamDLQ, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			var dl struct {
				Stage  string `json:"stage"`
				Reason string `json:"reason"`
			}
			if json.Unmarshal(m.Data(), &dl) != nil || dl.Reason == "" {
				dl.Reason = "unreadable"
			}
			if dl.Stage == "" {
				dl.Stage = strings.TrimPrefix(m.Subject(), prefix)
			}
			if out[dl.Stage] == nil {
				out[dl.Stage] = map[string]uint64{}
			}
			out[dl.Stage][dl.Reason]++
			meta, err := m.Metadata()
			if err != nil || meta.Sequence.Stream >= last || meta.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return out, fmt.Errorf("stream %s: count reasons: %w", bus.StreamDLQ, err)
		}
		if done || got == 0 {
			return out, nil
		}
	}
}

// collectEnvs reads the served model per env and driftwatch's states.
func collectEnvs(ctx context.Context, js jetstream.JetStream, s *Snapshot) error {
	var errs []error
	byEnv := map[string]*EnvStatus{}
	for _, env := range schemas.Envs() {
		s.Envs = append(s.Envs, EnvStatus{Env: env, Drift: []DriftState{}})
	}
	for i := range s.Envs {
		byEnv[s.Envs[i].Env] = &s.Envs[i]
	}
	if kv, err := js.KeyValue(ctx, bus.KVModels); err != nil {
		errs = append(errs, fmt.Errorf("kv %s: %w", bus.KVModels, err))
	} else {
		for _, env := range schemas.Envs() {
			e, err := kv.Get(ctx, env)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // nothing promoted to this env
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("kv %s key %s: %w", bus.KVModels, env, err))
				continue
			}
			var a modelAssignment
			if err := json.Unmarshal(e.Value(), &a); err != nil {
				errs = append(errs, fmt.Errorf("kv %s key %s: %w", bus.KVModels, env, err))
				continue
			}
			byEnv[env].ModelName, byEnv[env].Version, byEnv[env].PromotedAt = a.Name, a.Version, a.PromotedAt
		}
	}
	if dkv, err := js.KeyValue(ctx, bus.KVDeployment); err == nil {
		if rec, ok, err := deployment.ReadStore(ctx, js); err != nil {
			errs = append(errs, err)
		} else if ok {
			s.Store = &rec
		}
		for _, env := range schemas.Envs() {
			sv, ok, err := deployment.ReadServing(ctx, dkv, env)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ok {
				byEnv[env].Serving = &sv
			}
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		errs = append(errs, fmt.Errorf("kv %s: %w", bus.KVDeployment, err))
	}
	kv, err := js.KeyValue(ctx, bus.KVDriftwatch)
	if err != nil {
		errs = append(errs, fmt.Errorf("kv %s: %w", bus.KVDriftwatch, err))
		return errors.Join(errs...)
	}
	keys, err := kv.ListKeysFiltered(ctx, "state.>")
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("kv %s: list: %w", bus.KVDriftwatch, err))...)
	}
	for key := range keys.Keys() {
		e, err := kv.Get(ctx, key)
		if err != nil {
			errs = append(errs, fmt.Errorf("kv %s key %s: %w", bus.KVDriftwatch, key, err))
			continue
		}
		var st driftwatch.State
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			errs = append(errs, fmt.Errorf("kv %s key %s: %w", bus.KVDriftwatch, key, err))
			continue
		}
		es, ok := byEnv[st.Env]
		if !ok {
			s.Envs = append(s.Envs, EnvStatus{Env: st.Env, Drift: []DriftState{}})
			byEnv = map[string]*EnvStatus{}
			for i := range s.Envs {
				byEnv[s.Envs[i].Env] = &s.Envs[i]
			}
			es = byEnv[st.Env]
		}
		es.Drift = append(es.Drift, DriftState{ModelVersion: st.ModelVersion, StreakLen: st.Streak.Len, StreakFiring: st.Streak.Firing,
			KSFiring: st.KS.Firing, KSTested: st.KS.Tested, KSP: st.KS.LastP,
			Chi2Firing: st.Chi2.Firing, Chi2Tested: st.Chi2.Tested, Chi2P: st.Chi2.LastP, LastSeq: st.LastSeq})
	}
	for i := range s.Envs {
		served := s.Envs[i].Version
		sort.SliceStable(s.Envs[i].Drift, func(a, b int) bool {
			da, db := s.Envs[i].Drift[a], s.Envs[i].Drift[b]
			if (da.ModelVersion == served) != (db.ModelVersion == served) {
				return da.ModelVersion == served
			}
			return da.LastSeq > db.LastSeq
		})
	}
	return errors.Join(errs...)
}

// storedMsg is one message read back from a stream.
type storedMsg struct {
	Seq     uint64
	Subject string
	Data    []byte
	Time    time.Time
}

// readLast returns up to n of the latest messages of stream, oldest first,
// with an ordered consumer that starts n messages before the end. The
// consumer is ephemeral and deleted afterwards (its inactivity threshold
// removes it if the delete is lost).
func readLast(ctx context.Context, js jetstream.JetStream, stream string, n int) ([]storedMsg, error) {
	if n <= 0 {
		return nil, nil
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	state := st.CachedInfo().State
	if state.Msgs == 0 {
		return nil, nil
	}
	start := state.FirstSeq
	if state.LastSeq >= uint64(n) && state.LastSeq-uint64(n)+1 > start {
		start = state.LastSeq - uint64(n) + 1
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: reader: %w", stream, err)
	}
	defer func() {
		// Best effort and not on ctx: a cancelled request still cleans up.
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, c.CachedInfo().Name)
	}()
	out := make([]storedMsg, 0, min(n, int(state.Msgs)))
	for len(out) < n {
		// No wait: the messages are stored already, and a waiting pull
		// would hold the page for its whole timeout on the last batch.
		batch, err := c.FetchNoWait(min(n-len(out), 512))
		if err != nil {
			return out, fmt.Errorf("stream %s: read from %d: %w", stream, start, err)
		}
		got, done := 0, false
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return out, fmt.Errorf("stream %s: metadata: %w", stream, err)
			}
			out = append(out, storedMsg{Seq: meta.Sequence.Stream, Subject: m.Subject(), Data: m.Data(), Time: meta.Timestamp})
			// Stop at the end seen when we started: a busy stream must not
			// keep a page request reading forever.
			if meta.Sequence.Stream >= state.LastSeq || meta.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return out, fmt.Errorf("stream %s: read: %w", stream, err)
		}
		if done || got == 0 {
			break
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}
