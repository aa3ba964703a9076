package classifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"eyeflow/imaging"
	"eyeflow/schemas"
)

// DefaultMaxUpload bounds a /predict body: fundus photographs are a few MB;
// 32 MiB leaves room for TIFFs while refusing anything absurd early.
const DefaultMaxUpload = 32 << 20

// PredictOptions configure NewPredictHandler and ClassifyBytes.
type PredictOptions struct {
	Env string
	// MaxBytes bounds the request body (default DefaultMaxUpload).
	MaxBytes int64
	TopK     int
	// Metrics, when set, count predictions and errors.
	Metrics *Metrics
	// Timeout bounds one request's wait for the batcher (default 30s).
	Timeout time.Duration
}

// PredictHandler is POST /predict for env, on this classifier's batcher.
func (c *Classifier) PredictHandler(env string, maxBytes int64) http.Handler {
	return NewPredictHandler(c.batchers[env], PredictOptions{Env: env, MaxBytes: maxBytes, TopK: c.cfg.TopK, Metrics: c.cfg.Metrics})
}

// ImageError is bad client input: the image cannot be decoded. Status is the
// HTTP status it maps to.
type ImageError struct {
	Status int
	Err    error
}

func (e *ImageError) Error() string { return e.Err.Error() }
func (e *ImageError) Unwrap() error { return e.Err }

// ClassifyBytes decodes an encoded image with imaging.Decode (the resize
// stage's code, so pixels match the pipeline's) and classifies it through
// the batcher, merged with concurrent requests.
func ClassifyBytes(ctx context.Context, b *Batcher, data []byte, o PredictOptions) (schemas.Prediction, error) {
	if o.TopK < 1 {
		o.TopK = 5
	}
	img, err := imaging.Decode(data, imaging.DefaultOptions())
	if err != nil {
		status := http.StatusBadRequest
		switch {
		case errors.Is(err, imaging.ErrTooLarge):
			status = http.StatusRequestEntityTooLarge
		case errors.Is(err, imaging.ErrUnsupported):
			status = http.StatusUnsupportedMediaType
		case errors.Is(err, imaging.ErrCorrupt):
			status = http.StatusUnprocessableEntity
		}
		return schemas.Prediction{}, &ImageError{Status: status, Err: err}
	}
	batch, err := b.Predict(ctx, [][]byte{img.RGB}, false)
	if err != nil {
		return schemas.Prediction{}, err
	}
	p := NewPrediction(o.Env, batch, 0, o.TopK)
	sum := sha256.Sum256(data)
	p.ImageID = hex.EncodeToString(sum[:])
	return p, nil
}

// NewPredictHandler serves POST /predict: the image is the multipart field
// "file" (as the old FastAPI service took it) or the raw request body. It
// answers the schemas.Prediction as JSON (it includes the old response's
// predicted_class and confidence), 413 for a body over the limit, 415/422
// for an unsupported or corrupt image, 400 for a malformed request, 503
// while no model is loaded.
func NewPredictHandler(b *Batcher, o PredictOptions) http.Handler {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxUpload
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			httpError(w, http.StatusMethodNotAllowed, "use POST")
			return
		}
		fail := func(status int, msg string) {
			if o.Metrics != nil {
				card, _, _ := b.Current()
				o.Metrics.failed(o.Env, card.Version)
			}
			httpError(w, status, msg)
		}
		r.Body = http.MaxBytesReader(w, r.Body, o.MaxBytes)
		data, err := readImage(r)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d bytes", o.MaxBytes))
				return
			}
			fail(http.StatusBadRequest, err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), o.Timeout)
		defer cancel()
		p, err := ClassifyBytes(ctx, b, data, o)
		if err != nil {
			var ie *ImageError
			switch {
			case errors.As(err, &ie):
				fail(ie.Status, ie.Error())
			case errors.Is(err, ErrNoModel), errors.Is(err, ErrClosed):
				fail(http.StatusServiceUnavailable, err.Error())
			case errors.Is(err, context.DeadlineExceeded):
				fail(http.StatusServiceUnavailable, "timed out waiting for the model")
			default:
				fail(http.StatusInternalServerError, err.Error())
			}
			return
		}
		if o.Metrics != nil {
			o.Metrics.predicted(o.Env, p.ModelVersion, p.Confidence)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p)
	})
}

// readImage returns the multipart field "file", or the raw body for any
// other content type.
func readImage(r *http.Request) ([]byte, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if !strings.HasPrefix(ct, "multipart/") {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		if len(data) == 0 {
			return nil, errors.New("empty body: send the image as the body or as multipart field \"file\"")
		}
		return data, nil
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fmt.Errorf("multipart: %w", err)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, errors.New("multipart body has no field \"file\"")
		}
		if err != nil {
			return nil, fmt.Errorf("multipart: %w", err)
		}
		if part.FormName() == "file" {
			data, err := io.ReadAll(part)
			part.Close()
			if err != nil {
				return nil, err
			}
			if len(data) == 0 {
				return nil, errors.New("field \"file\" is empty")
			}
			return data, nil
		}
		part.Close()
	}
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
