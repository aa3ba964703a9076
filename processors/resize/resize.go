package resize

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"eyeflow/imaging"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
	"eyeflow/security/pseudonym"
	"eyeflow/stage"

	"github.com/rs/zerolog"
)

// Config configures the resize stage.
type Config struct {
	Store objstore.Store
	// Image is the decode/resize configuration (size, pixel limit).
	Image imaging.Options
	// OutputBucket receives the resized PNGs.
	OutputBucket string
	// MaxBytes refuses larger objects before reading them.
	MaxBytes int64
	// LabelPrefix is the key prefix under which <class>/<file> carries a
	// label; keys outside it are unlabeled. Empty: every key with a folder.
	LabelPrefix string
	// InlineRGB carries the resized pixels in the eye.resized event (and so
	// in every eye.split event), base64 in JSON: about 200 KB per event
	// in two streams. Off by default: the events name the processed PNG,
	// which the classifier reads and decodes once per process for all its
	// envs (BENCHMARKS.md, "Pixels carried once").
	InlineRGB bool
	// Patients is the deployment's patient pseudonym rule (package
	// pseudonym), made with the splitter's salt: patient ids are published
	// only as their pseudonym. There is no default: New refuses a config
	// without one.
	Patients pseudonym.Rule
	// SplitSaltVersion is the splitter's salt version
	// (--split-salt-version, EYEFLOW_SPLIT_SALT_VERSION), recorded with
	// every pseudonym so the splitter can refuse one made under another salt.
	SplitSaltVersion string
}

// DefaultConfig is the stage's configuration without a store.
// It has no pseudonym rule: that is the deployment's (Config.Patients).
func DefaultConfig() Config {
	return Config{
		Image:        imaging.DefaultOptions(),
		OutputBucket: objstore.BucketProcessed,
		MaxBytes:     256 << 20,
		InlineRGB:    false,
		// The splitter's default salt version (splitter.DefaultConfig),
		// not imported: resize depends on no other stage.
		SplitSaltVersion: "1",
	}
}

// Validate reports a configuration the stage cannot run with.
func (c Config) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("resize: an object store is required"))
	}
	if c.Image.Width < 1 || c.Image.Height < 1 {
		errs = append(errs, fmt.Errorf("resize: output size %dx%d must be positive", c.Image.Width, c.Image.Height))
	}
	if c.Image.MaxPixels < 1 {
		errs = append(errs, fmt.Errorf("resize: max pixels %d must be positive", c.Image.MaxPixels))
	}
	if c.MaxBytes < 1 {
		errs = append(errs, fmt.Errorf("resize: max bytes %d must be positive", c.MaxBytes))
	}
	if c.OutputBucket == "" {
		errs = append(errs, errors.New("resize: output bucket is required"))
	}
	if !c.Patients.Valid() {
		errs = append(errs, errors.New("resize: the deployment's patient pseudonym rule is required (patient ids are published only as pseudonyms; there is no default key)"))
	}
	if c.SplitSaltVersion == "" {
		errs = append(errs, errors.New("resize: the split salt version is required (it is recorded with every patient pseudonym)"))
	}
	return errors.Join(errs...)
}

// Resizer is the resize stage's processor.
type Resizer struct {
	cfg  Config
	bufs sync.Pool // *bytes.Buffer holding one original
	now  func() time.Time
}

// New returns a Resizer for a valid config.
func New(cfg Config) (*Resizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Resizer{cfg: cfg, now: time.Now}, nil
}

// Handle resizes every object an upload event names.
func (r *Resizer) Handle(ctx context.Context, ev schemas.S3Event) ([]stage.Output, error) {
	ups, err := ev.Uploads()
	if err != nil {
		return nil, err
	}
	// Refuse hostile keys before anything is read: the key travels on as
	// Source.Key (labelsink copies from it, tasks show it) and its folder
	// becomes a dataset class.
	for _, u := range ups {
		if err := objkey.Check(u.Key); err != nil {
			return nil, stage.Permanent(schemas.ReasonBadKey, fmt.Errorf("upload %s: %w", u.Bucket, err))
		}
	}
	outs := make([]stage.Output, 0, len(ups))
	for _, u := range ups {
		res, err := r.resize(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("resize %s/%s: %w", u.Bucket, u.Key, err)
		}
		outs = append(outs, stage.Output{Subject: schemas.SubjectResized, Event: res, Key: keyFor(ups, u)})
	}
	return outs, nil
}

// keyFor distinguishes outputs of a multi-record event; a single-record
// event's output needs no key.
func keyFor(ups []schemas.Upload, u schemas.Upload) string {
	if len(ups) == 1 {
		return ""
	}
	return u.ID()
}

func (r *Resizer) resize(ctx context.Context, u schemas.Upload) (schemas.Resized, error) {
	if u.Size > r.cfg.MaxBytes {
		return schemas.Resized{}, stage.Permanentf(schemas.ReasonTooLarge, "object of %d bytes exceeds the %d byte limit", u.Size, r.cfg.MaxBytes)
	}
	buf := r.getBuf()
	defer r.bufs.Put(buf)
	info, err := r.read(ctx, u, buf)
	if err != nil {
		return schemas.Resized{}, err
	}
	data := buf.Bytes()
	if len(data) == 0 {
		return schemas.Resized{}, stage.Permanent(schemas.ReasonEmpty, errors.New("object is empty"))
	}
	sum := sha256.Sum256(data)
	imageID := hex.EncodeToString(sum[:])

	img, err := imaging.Decode(data, r.cfg.Image)
	if err != nil {
		return schemas.Resized{}, decodeError(err)
	}
	var png bytes.Buffer
	png.Grow(64 << 10)
	if err := imaging.EncodePNG(&png, img.RGB, img.Width, img.Height); err != nil {
		return schemas.Resized{}, fmt.Errorf("encode png: %w", err)
	}
	// Content-addressed: a redelivery or a duplicate upload writes the same
	// object again, never a second one.
	outKey := "resized/" + imageID + ".png"
	out, err := r.cfg.Store.Put(ctx, r.cfg.OutputBucket, outKey, &png, int64(png.Len()), objstore.PutOptions{ContentType: "image/png"})
	if err != nil {
		return schemas.Resized{}, fmt.Errorf("store %s/%s: %w", r.cfg.OutputBucket, outKey, err)
	}
	res := schemas.Resized{
		Schema:   schemas.SchemaResized,
		ImageID:  imageID,
		UploadID: u.ID(),
		Source: schemas.ObjectRef{
			Bucket: u.Bucket, Key: u.Key, ETag: info.ETag, VersionID: info.VersionID, Size: int64(len(data)),
		},
		Width:         img.SrcWidth,
		Height:        img.SrcHeight,
		Format:        img.Format,
		Label:         Label(u.Key, r.cfg.LabelPrefix),
		Processed:     schemas.ObjectRef{Bucket: r.cfg.OutputBucket, Key: outKey, ETag: out.ETag, Size: out.Size},
		ResizedWidth:  img.Width,
		ResizedHeight: img.Height,
		Time:          r.now().UTC(),
	}
	// The patient: upload metadata first (the uploader's explicit word),
	// then the DICOM file's own PatientID. Only the pseudonym leaves.
	if id, source := patientID(u, info, img); id != "" {
		res.PatientHash = r.cfg.Patients.Of(id)
		res.PatientSaltVersion = r.cfg.SplitSaltVersion
		res.PatientSource = source
	}
	if r.cfg.InlineRGB {
		res.RGB = img.RGB
	}
	return res, nil
}

func (r *Resizer) getBuf() *bytes.Buffer {
	if b, ok := r.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// read streams the object into buf, refusing objects over the byte limit
// and objects replaced since the event was sent.
func (r *Resizer) read(ctx context.Context, u schemas.Upload, buf *bytes.Buffer) (objstore.Info, error) {
	rc, info, err := r.cfg.Store.Get(ctx, u.Bucket, u.Key)
	if errors.Is(err, objstore.ErrNotFound) {
		return info, stage.Permanent(schemas.ReasonObjectMissing, fmt.Errorf("object was deleted before it was read: %w", err))
	}
	if err != nil {
		return info, fmt.Errorf("get object: %w", err) // transient: retried
	}
	defer rc.Close()
	if u.ETag != "" && info.ETag != "" && !strings.EqualFold(u.ETag, info.ETag) {
		return info, stage.Permanentf(schemas.ReasonObjectChanged, "object was replaced after the event (etag %s, now %s); the new upload has its own event", u.ETag, info.ETag)
	}
	if info.Size > r.cfg.MaxBytes {
		return info, stage.Permanentf(schemas.ReasonTooLarge, "object of %d bytes exceeds the %d byte limit", info.Size, r.cfg.MaxBytes)
	}
	if info.Size > 0 {
		buf.Grow(int(info.Size))
	}
	n, err := buf.ReadFrom(io.LimitReader(rc, r.cfg.MaxBytes+1))
	if err != nil {
		return info, fmt.Errorf("read object: %w", err)
	}
	if n > r.cfg.MaxBytes {
		return info, stage.Permanentf(schemas.ReasonTooLarge, "object exceeds the %d byte limit", r.cfg.MaxBytes)
	}
	return info, nil
}

// decodeError dead-letters a decode failure with the reason imaging.Reason
// gives it: decoding is deterministic, so the same bytes fail the same way
// and no decode error is worth a retry.
func decodeError(err error) error {
	return stage.Permanent(imaging.Reason(err), err)
}

// patientID is the raw patient id of an upload and where it came from: the
// object's user metadata patient-id (x-amz-meta-patient-id) as the store
// reports it, else as the event carried it, else a DICOM file's PatientID.
// It never leaves this stage: callers publish its pseudonym (Config.Patients).
func patientID(u schemas.Upload, info objstore.Info, img imaging.Result) (id, source string) {
	for _, p := range []string{info.Metadata["patient-id"], u.Metadata["patient-id"]} {
		if p = strings.TrimSpace(p); p != "" {
			return p, schemas.PatientFromMetadata
		}
	}
	if p := strings.TrimSpace(img.PatientID); p != "" {
		return p, schemas.PatientFromDICOM
	}
	return "", ""
}

// Label is the class an object key carries, by torchvision ImageFolder's
// rule: the first folder under the root (prefix), whatever folders follow
// (<prefix>/<class>/<any folders>/<file>: amd/2026/11/deep.jpg is amd).
// Keys without a folder, outside the prefix, or whose first folder name is
// not a safe class name are unlabeled ("").
func Label(key, prefix string) string {
	if prefix != "" {
		p := strings.Trim(prefix, "/") + "/"
		if !strings.HasPrefix(key, p) {
			return ""
		}
		key = key[len(p):]
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == ".." || seg == "." {
			return "" // a traversal attempt carries no trustworthy label
		}
	}
	class, rest, ok := strings.Cut(key, "/")
	if !ok || class == "" || rest == "" {
		return ""
	}
	return SanitizeClass(class)
}

// SanitizeClass returns name when it is a safe class (folder) name
// (objkey.Class), else "".
func SanitizeClass(name string) string {
	if objkey.Class(name) != nil {
		return ""
	}
	return name
}

// Identity is the upload identity of an event: the root of its outputs'
// Msg-Ids, so duplicate reports of one upload make one eye.resized event.
func Identity(ev schemas.S3Event) string {
	ups, err := ev.Uploads()
	if err != nil || len(ups) == 0 {
		return ""
	}
	ids := make([]string, len(ups))
	for i, u := range ups {
		ids[i] = u.ID()
	}
	return strings.Join(ids, "\n")
}

// Processor is the resize stage for the runtime.
func Processor(r *Resizer, concurrency int, log zerolog.Logger, m *stage.Metrics) stage.Processor[schemas.S3Event] {
	return stage.Processor[schemas.S3Event]{
		Stage:       schemas.StageResize,
		Decode:      schemas.DecodeS3Event,
		Identity:    Identity,
		Handle:      r.Handle,
		Concurrency: concurrency,
		Logger:      log,
		Metrics:     m,
	}
}
