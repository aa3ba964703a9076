package models

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/rs/zerolog"
)

// KVModels is the JetStream KV bucket mapping each env (the key) to the
// model version it serves (an Assignment as JSON). It belongs to the
// topology (jetstream.Build), whose history keeps the last promotions per
// env for audit and rollback; the registry is handed it.
const KVModels = bus.KVModels

// Assignment is the value of an env's key in KVModels.
type Assignment struct {
	Name       string    `json:"name"`
	Version    string    `json:"version"`
	PromotedAt time.Time `json:"promoted_at"`
}

func (a Assignment) String() string { return a.Name + " " + a.Version }

// Entry is one registered model.
type Entry struct {
	Name, Version string
	Card          Card
	Modified      time.Time
	// Envs that serve this version.
	Envs []string
	// Metrics are the evaluator's latest holdout figures (metrics.json),
	// absent until the version was evaluated.
	Metrics map[string]schemas.HoldoutMetrics
}

// FileMetrics holds a version's evaluation beside its three immutable
// files: the evaluator writes it (and rewrites it when the holdouts grow).
const FileMetrics = "metrics.json"

// SetMetrics records a version's holdout figures.
func (r *Registry) SetMetrics(ctx context.Context, name, version string, m map[string]schemas.HoldoutMetrics) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	key := ModelKey(name, version, FileMetrics)
	if _, err := r.store.Put(ctx, objstore.BucketModels, key, bytes.NewReader(b), int64(len(b)), objstore.PutOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("record metrics %s: %w", key, err)
	}
	return nil
}

// Metrics reads a version's holdout figures; ok is false when it was never evaluated.
func (r *Registry) Metrics(ctx context.Context, name, version string) (m map[string]schemas.HoldoutMetrics, ok bool, err error) {
	rc, _, err := r.store.Get(ctx, objstore.BucketModels, ModelKey(name, version, FileMetrics))
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("metrics of %s %s: %w", name, version, err)
	}
	defer rc.Close()
	if err := json.NewDecoder(rc).Decode(&m); err != nil {
		return nil, false, fmt.Errorf("metrics of %s %s: %w", name, version, err)
	}
	return m, true, nil
}

// History returns env's assignments, oldest first (the KV bucket keeps the
// last promotions per env): what a rollback goes back to.
func (r *Registry) History(ctx context.Context, env string) ([]Assignment, error) {
	if err := ValidEnv(env); err != nil {
		return nil, err
	}
	hist, err := r.kv.History(ctx, env)
	if errors.Is(err, stage.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("model registry: history of %s: %w", env, err)
	}
	var out []Assignment
	for _, e := range hist {
		if e.Op != stage.OpPut {
			continue
		}
		if a, err := ParseAssignment(e.Value); err == nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// Card reads a registered version's model card.
func (r *Registry) Card(ctx context.Context, name, version string) (Card, error) {
	rc, _, err := r.store.Get(ctx, objstore.BucketModels, ModelKey(name, version, FileCard))
	if err != nil {
		return Card{}, fmt.Errorf("model card of %s %s: %w", name, version, err)
	}
	defer rc.Close()
	var c Card
	if err := json.NewDecoder(rc).Decode(&c); err != nil {
		return Card{}, fmt.Errorf("model card of %s %s: %w", name, version, err)
	}
	return c, nil
}

// Registry stores models in the object store, bucket "models", at
// <name>/<version>/{model.onnx,labels.json,model.json}, and the env ->
// version mapping in the KVModels bucket.
type Registry struct {
	store objstore.Store
	kv    stage.KeyValue
}

// OpenRegistry opens the registry on store, creating the models bucket
// when missing, and kv, the topology's KVModels bucket.
func OpenRegistry(ctx context.Context, store objstore.Store, kv stage.KeyValue) (*Registry, error) {
	if kv == nil {
		return nil, errors.New("model registry: a KV bucket is required")
	}
	if err := store.EnsureBucket(ctx, objstore.BucketModels); err != nil {
		return nil, fmt.Errorf("model registry: bucket %s: %w", objstore.BucketModels, err)
	}
	return &Registry{store: store, kv: kv}, nil
}

// ModelKey is the object key of one file of a model version.
func ModelKey(name, version, file string) string { return path.Join(name, version, file) }

func validName(kind, s string) error {
	if s == "" || strings.ContainsAny(s, "/\\ \t\n") || s == "." || s == ".." {
		return fmt.Errorf("%s %q: must be non-empty, without slashes or spaces", kind, s)
	}
	return nil
}

// Push stores a model version. The card's name and version are set to the
// ones given, so the stored entry describes itself. Versions are immutable:
// pushing an existing one fails, since envs may already serve it. model.json
// is written last, so a version is listed only once it is complete.
func (r *Registry) Push(ctx context.Context, files ModelFiles, name, version string) (Card, error) {
	if err := errors.Join(validName("name", name), validName("version", version)); err != nil {
		return Card{}, err
	}
	var card Card
	if err := json.Unmarshal(files.Card, &card); err != nil {
		return Card{}, fmt.Errorf("model.json: %w", err)
	}
	card.Name, card.Version = name, version
	if err := card.validate(); err != nil {
		return Card{}, fmt.Errorf("model.json: %w", err)
	}
	labels, err := ParseLabels(files.Labels)
	if err != nil {
		return Card{}, err
	}
	if card.Labels != 0 && card.Labels != len(labels) {
		return Card{}, fmt.Errorf("model.json says %d labels, labels.json has %d", card.Labels, len(labels))
	}
	card.Labels = len(labels)
	if _, err := r.store.Stat(ctx, objstore.BucketModels, ModelKey(name, version, FileCard)); err == nil {
		return Card{}, fmt.Errorf("model %s %s is already registered (versions are immutable: push a new version)", name, version)
	} else if !errors.Is(err, objstore.ErrNotFound) {
		return Card{}, fmt.Errorf("model %s %s: %w", name, version, err)
	}
	cardJSON, err := json.MarshalIndent(card, "", "  ")
	if err != nil {
		return Card{}, err
	}
	for _, f := range []struct {
		name, ctype string
		data        []byte
	}{{FileModel, "application/octet-stream", files.ONNX}, {FileLabels, "application/json", files.Labels}, {FileCard, "application/json", cardJSON}} {
		key := ModelKey(name, version, f.name)
		if _, err := r.store.Put(ctx, objstore.BucketModels, key, bytes.NewReader(f.data), int64(len(f.data)), objstore.PutOptions{ContentType: f.ctype}); err != nil {
			return Card{}, fmt.Errorf("push %s: %w", key, err)
		}
	}
	return card, nil
}

// Fetch reads a model version's files.
func (r *Registry) Fetch(ctx context.Context, name, version string) (ModelFiles, error) {
	var f ModelFiles
	for file, dst := range map[string]*[]byte{FileModel: &f.ONNX, FileLabels: &f.Labels, FileCard: &f.Card} {
		key := ModelKey(name, version, file)
		rc, _, err := r.store.Get(ctx, objstore.BucketModels, key)
		if err != nil {
			return ModelFiles{}, fmt.Errorf("fetch model %s %s: %s: %w", name, version, file, err)
		}
		*dst, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return ModelFiles{}, fmt.Errorf("fetch model %s %s: %s: %w", name, version, file, err)
		}
	}
	return f, nil
}

// ValidEnv refuses a name that is not one of schemas.Envs.
func ValidEnv(env string) error {
	if !slices.Contains(schemas.Envs(), env) {
		return fmt.Errorf("env %q: want one of %v", env, schemas.Envs())
	}
	return nil
}

// Promote points env at a registered version; classifiers watching the KV
// swap to it between batches.
func (r *Registry) Promote(ctx context.Context, env, name, version string) error {
	if err := ValidEnv(env); err != nil {
		return err
	}
	if _, err := r.store.Stat(ctx, objstore.BucketModels, ModelKey(name, version, FileCard)); err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return fmt.Errorf("promote: model %s %s is not registered (eyeflow model push first)", name, version)
		}
		return fmt.Errorf("promote %s %s: %w", name, version, err)
	}
	a, err := json.Marshal(Assignment{Name: name, Version: version, PromotedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	if _, err := r.kv.Put(ctx, env, a); err != nil {
		return fmt.Errorf("promote %s to %s: %w", Assignment{Name: name, Version: version}, env, err)
	}
	return nil
}

// Assigned returns what env serves; ok is false when nothing is promoted.
func (r *Registry) Assigned(ctx context.Context, env string) (a Assignment, ok bool, err error) {
	e, err := r.kv.Get(ctx, env)
	if errors.Is(err, stage.ErrKeyNotFound) {
		return Assignment{}, false, nil
	}
	if err != nil {
		return Assignment{}, false, fmt.Errorf("model registry: get %s: %w", env, err)
	}
	a, err = ParseAssignment(e.Value)
	return a, err == nil, err
}

// ParseAssignment reads an env's value in KVModels.
func ParseAssignment(b []byte) (Assignment, error) {
	var a Assignment
	if err := json.Unmarshal(b, &a); err != nil {
		return Assignment{}, fmt.Errorf("model assignment %q: %w", b, err)
	}
	if a.Name == "" || a.Version == "" {
		return Assignment{}, fmt.Errorf("model assignment %q: name and version are required", b)
	}
	return a, nil
}

// WatchAssignments watches every env's assignment: the current values,
// a nil entry once they are delivered, then each change, until ctx ends.
func (r *Registry) WatchAssignments(ctx context.Context) (<-chan *stage.Entry, error) {
	return r.kv.Watch(ctx, "")
}

// List returns every registered version, sorted by name and version, with
// the envs serving it.
func (r *Registry) List(ctx context.Context) ([]Entry, error) {
	served := map[string][]string{}
	for _, env := range schemas.Envs() {
		a, ok, err := r.Assigned(ctx, env)
		if err != nil {
			return nil, err
		}
		if ok {
			served[a.String()] = append(served[a.String()], env)
		}
	}
	var out []Entry
	for info, err := range r.store.List(ctx, objstore.BucketModels, "") {
		if err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		name, rest, _ := strings.Cut(info.Key, "/")
		version, file, _ := strings.Cut(rest, "/")
		if file != FileCard {
			continue
		}
		e := Entry{Name: name, Version: version, Modified: info.Modified, Envs: served[name+" "+version]}
		if rc, _, err := r.store.Get(ctx, objstore.BucketModels, info.Key); err == nil {
			_ = json.NewDecoder(rc).Decode(&e.Card)
			rc.Close()
		}
		e.Metrics, _, _ = r.Metrics(ctx, name, version)
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		return strings.Compare(a.Name+"\x00"+a.Version, b.Name+"\x00"+b.Version)
	})
	return out, nil
}

// EnsureDefault gives a new installation a model: when prod serves nothing
// and the registry holds no model, it registers the synthetic DenseNet121
// (random weights, built in Go: nothing is downloaded) and promotes it to
// prod, logging that it did. It reports whether it registered.
func EnsureDefault(ctx context.Context, r *Registry, log zerolog.Logger) (bool, error) {
	if _, ok, err := r.Assigned(ctx, schemas.EnvProd); err != nil || ok {
		return false, err
	}
	entries, err := r.List(ctx)
	if err != nil {
		return false, err
	}
	if len(entries) > 0 {
		log.Warn().Int("models", len(entries)).Msg("prod serves no model, but the registry has some: promote one (eyeflow model promote --env prod NAME VERSION)")
		return false, nil
	}
	files, err := Synthesize(SynthOptions{Arch: ArchDenseNet121})
	if err != nil {
		return false, err
	}
	if _, err := r.Push(ctx, files, SyntheticName, SyntheticVersion); err != nil {
		return false, fmt.Errorf("register synthetic model: %w", err)
	}
	if err := r.Promote(ctx, schemas.EnvProd, SyntheticName, SyntheticVersion); err != nil {
		return false, fmt.Errorf("register synthetic model: %w", err)
	}
	log.Warn().Str("model", SyntheticName).Str("version", SyntheticVersion).
		Msg("model registry was empty: registered the synthetic DenseNet121 (random weights, predictions are meaningless) as prod; push and promote a trained model to replace it")
	return true, nil
}

// ServeModelDir registers a model folder under the name and version of its
// model.json (unless that version is already registered) and promotes it to
// env: `eyeflow up --model DIR`.
func ServeModelDir(ctx context.Context, r *Registry, dir, env string, log zerolog.Logger) (Card, error) {
	files, err := ReadModelDir(dir)
	if err != nil {
		return Card{}, err
	}
	var card Card
	if err := json.Unmarshal(files.Card, &card); err != nil {
		return Card{}, fmt.Errorf("%s/%s: %w", dir, FileCard, err)
	}
	_, err = r.store.Stat(ctx, objstore.BucketModels, ModelKey(card.Name, card.Version, FileCard))
	switch {
	case err == nil:
		log.Info().Str("model", card.Name).Str("version", card.Version).Msg("model folder already registered under this version: promoting the registered copy")
	case errors.Is(err, objstore.ErrNotFound):
		if card, err = r.Push(ctx, files, card.Name, card.Version); err != nil {
			return Card{}, err
		}
	default:
		return Card{}, fmt.Errorf("model registry: %w", err)
	}
	if err := r.Promote(ctx, env, card.Name, card.Version); err != nil {
		return Card{}, err
	}
	log.Info().Str("model", card.Name).Str("version", card.Version).Str("env", env).Str("dir", dir).Msg("serving model folder")
	return card, nil
}
