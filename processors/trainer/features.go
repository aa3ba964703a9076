package trainer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"eyeflow/imaging"
	"eyeflow/inference"
	"eyeflow/models"
	"eyeflow/objstore"
	"eyeflow/onnx"
	"eyeflow/schemas"
)

// Features computes the frozen backbone's pooled features (the
// global-average-pooled last feature map of the synthetic DenseNet121, 1024
// values) through the classifier's own ONNX Runtime path, and caches them in
// the features bucket per (backbone digest, image id), so a retrain only
// computes the images it has not seen.
type Features struct {
	model  *inference.Model
	store  objstore.Store
	digest string
	// Backbone is the features-only graph; the embedded engine attaches its
	// head to the same weights.
	Backbone onnx.DenseNetOptions

	// known holds the features this process computed or read: a read from
	// the object store costs a round trip per image (about 40 ms on the
	// JetStream object store), a training run needs every image's.
	mu    sync.Mutex
	known map[string][]float32
}

// ExtractStats report one Extract call.
type ExtractStats struct {
	Computed, Cached int
	Seconds          float64
}

// PerSec is the rate of computed features.
func (s ExtractStats) PerSec() float64 {
	if s.Seconds == 0 {
		return 0
	}
	return float64(s.Computed) / s.Seconds
}

// NewFeatures loads the backbone. store may be nil (no cache).
func NewFeatures(store objstore.Store, opts inference.SessionOptions) (*Features, error) {
	bb := onnx.DenseNetOptions{Seed: models.SyntheticSeed, FeaturesOnly: true}
	graph := onnx.DenseNet(bb)
	m, err := inference.LoadFeatureExtractor(graph, onnx.FeaturesName, onnx.DenseNetFeatures, opts)
	if err != nil {
		return nil, fmt.Errorf("trainer backbone: %w", err)
	}
	sum := sha256.Sum256(graph)
	return &Features{model: m, store: store, digest: hex.EncodeToString(sum[:8]), Backbone: bb, known: map[string][]float32{}}, nil
}

// Digest identifies the backbone's weights.
func (f *Features) Digest() string { return f.digest }

// Provider is the execution provider the backbone runs on.
func (f *Features) Provider() string { return f.model.Provider }

// Close frees the session.
func (f *Features) Close() { f.model.Close() }

func (f *Features) cacheKey(imageID string) string { return f.digest + "/" + imageID }

// Unknown returns the examples whose features this process has not seen
// cached or computed.
func (f *Features) Unknown(exs []Example) []Example {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Example
	for _, e := range exs {
		if f.known[e.ImageID] == nil {
			out = append(out, e)
		}
	}
	return out
}

func (f *Features) remember(id string, v []float32) {
	f.mu.Lock()
	f.known[id] = v
	f.mu.Unlock()
}

// Skipped is an example that could not be used, with the reason.
type Skipped struct {
	Example Example
	Reason  string
	Err     error
}

// Reasons an example is skipped (dead letters on eye.dlq.trainer).
const (
	ReasonMissingImage    = schemas.ReasonObjectMissing
	ReasonUnreadableImage = schemas.ReasonCorruptImage
)

// Extract returns the features of every usable example (in order, with the
// examples they belong to) and the ones it skipped.
func (f *Features) Extract(ctx context.Context, exs []Example, images ImageSource, progress func(done, total int)) ([]Example, [][]float32, []Skipped, ExtractStats, error) {
	start := time.Now()
	feats := make([][]float32, len(exs))
	skipped := make([]string, len(exs))
	skipErr := make([]error, len(exs))
	var todo []int
	var st ExtractStats
	for i, ex := range exs {
		if v, ok := f.cached(ctx, ex.ImageID); ok {
			feats[i] = v
			st.Cached++
			f.remember(ex.ImageID, v)
			continue
		}
		todo = append(todo, i)
	}
	const batch = 8
	runs := max(1, f.model.ParallelRuns)
	var (
		mu   sync.Mutex
		done = st.Cached
		errs []error
		wg   sync.WaitGroup
		next = make(chan []int)
	)
	for range runs {
		wg.Go(func() {
			for idx := range next {
				var rgb [][]byte
				var ok []int
				for _, i := range idx {
					data, err := images.PNG(ctx, exs[i])
					if err != nil {
						skipped[i], skipErr[i] = ReasonMissingImage, err
						if !errors.Is(err, objstore.ErrNotFound) {
							skipped[i] = ReasonUnreadableImage
						}
						continue
					}
					res, err := imaging.Decode(data, imaging.DefaultOptions())
					if err != nil {
						skipped[i], skipErr[i] = ReasonUnreadableImage, err
						continue
					}
					rgb = append(rgb, res.RGB)
					ok = append(ok, i)
				}
				if len(ok) > 0 {
					rows, err := f.model.RunRaw(rgb)
					if err != nil {
						mu.Lock()
						errs = append(errs, fmt.Errorf("backbone run: %w", err))
						mu.Unlock()
						continue
					}
					for j, i := range ok {
						feats[i] = rows[j]
						f.store1(ctx, exs[i].ImageID, rows[j])
					}
				}
				mu.Lock()
				done += len(idx)
				st.Computed += len(ok)
				if progress != nil {
					progress(done, len(exs))
				}
				mu.Unlock()
			}
		})
	}
	for s := 0; s < len(todo); s += batch {
		select {
		case next <- todo[s:min(s+batch, len(todo))]:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, nil, st, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, st, err
	}
	var (
		outEx   []Example
		outF    [][]float32
		outSkip []Skipped
	)
	for i, ex := range exs {
		if skipped[i] != "" {
			outSkip = append(outSkip, Skipped{Example: ex, Reason: skipped[i], Err: skipErr[i]})
			continue
		}
		outEx = append(outEx, ex)
		outF = append(outF, feats[i])
	}
	st.Seconds = time.Since(start).Seconds()
	return outEx, outF, outSkip, st, nil
}

func (f *Features) cached(ctx context.Context, imageID string) ([]float32, bool) {
	f.mu.Lock()
	v := f.known[imageID]
	f.mu.Unlock()
	if v != nil {
		return v, true
	}
	if f.store == nil {
		return nil, false
	}
	rc, _, err := f.store.Get(ctx, objstore.BucketFeatures, f.cacheKey(imageID))
	if err != nil {
		return nil, false
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil || len(b) != 4*onnx.DenseNetFeatures {
		return nil, false
	}
	v = make([]float32, onnx.DenseNetFeatures)
	for j := range v {
		v[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
	}
	return v, true
}

// store1 caches one image's features; a failed write only costs a
// recomputation later.
func (f *Features) store1(ctx context.Context, imageID string, v []float32) {
	f.remember(imageID, v)
	if f.store == nil {
		return
	}
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	_, _ = f.store.Put(ctx, objstore.BucketFeatures, f.cacheKey(imageID), bytes.NewReader(b), int64(len(b)), objstore.PutOptions{ContentType: "application/octet-stream"})
}
