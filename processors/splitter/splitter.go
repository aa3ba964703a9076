package splitter

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
	"eyeflow/stage"

	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
)

// Splitter is the split stage's processor.
type Splitter struct {
	cfg    Config
	prefix string
	a      *Assigner
	store  objstore.Store
	// placing coalesces concurrent placements of one dataset key.
	placing singleflight.Group
}

// New validates cfg and returns the stage's processor, copying into store.
func New(cfg Config, store objstore.Store) (*Splitter, error) {
	if store == nil {
		return nil, errors.New("splitter: an object store is required")
	}
	if !cfg.Patients.Valid() {
		// Without it, the patient ids the splitter keys itself (the key
		// pattern, raw ids of other producers) would have no pseudonym.
		return nil, errors.New("splitter: the deployment's patient pseudonym rule is required (there is no default key)")
	}
	a, err := NewAssigner(cfg)
	if err != nil {
		return nil, err
	}
	return &Splitter{cfg: cfg, prefix: strings.Trim(cfg.Prefix, "/"), a: a, store: store}, nil
}

// Assigner returns the split function the stage uses.
func (s *Splitter) Assigner() *Assigner { return s.a }

// Identity names an eye.resized input for its outputs' Msg-Ids: the upload.
// The same upload delivered or published twice yields the same Msg-Id, so
// JetStream drops the second split event; a re-upload of the same bytes under
// another name is another upload and gets its own event (with the same split).
func Identity(r schemas.Resized) string {
	if r.UploadID != "" {
		return r.UploadID
	}
	// Handle refuses such input; this only keeps its dead letter distinct.
	return "image:" + r.ImageID + "@" + r.Source.Bucket + "/" + r.Source.Key
}

// Processor is the stage runtime's configuration of the splitter, for
// `eyeflow up` and `eyeflow splitter`.
func Processor(s *Splitter, log zerolog.Logger, m *stage.Metrics) stage.Processor[schemas.Resized] {
	return stage.Processor[schemas.Resized]{
		Stage:    schemas.StageSplitter,
		Decode:   schemas.DecodeResized,
		Identity: Identity,
		ImageID:  func(r schemas.Resized) string { return r.ImageID },
		// The splitter's time is round trips to the store and the server
		// (the dataset links, the event, the ack), not computation: a
		// batch places all of its images at once and publishes and acks
		// them together, so a backlog costs a few round trips per batch
		// rather than six per image. A lone image still leaves at once
		// (MaxWait).
		HandleBatch: stage.Concurrently(s.Handle),
		MaxBatch:    MaxBatch,
		Concurrency: s.cfg.Concurrency,
		Logger:      log,
		Metrics:     m,
	}
}

// MaxBatch bounds the images the splitter places at once per worker.
const MaxBatch = 32

// DatasetKey is the object key of an image in one dataset folder:
// <prefix>/<dir>/<class>/<image-id>.png.
func DatasetKey(prefix, dir, class, imageID string) string {
	return path.Join(strings.Trim(prefix, "/"), dir, class, imageID+".png")
}

// Handle assigns one image, copies it into the dataset layout and returns
// its eye.split.<split> event. Copies come first: the event is published
// only once the dataset holds the image, and a retry after a failed copy
// skips the copies already made.
func (s *Splitter) Handle(ctx context.Context, in schemas.Resized) ([]stage.Output, error) {
	if err := checkKeys(in); err != nil {
		return nil, stage.Permanent(schemas.ReasonBadKey, err)
	}
	if err := checkInput(in); err != nil {
		return nil, stage.Permanent(schemas.ReasonBadResized, err)
	}
	if err := s.checkPatient(in); err != nil {
		return nil, stage.Permanent(schemas.ReasonBadResized, err)
	}
	as := s.a.AssignResized(in)
	// A holdout image goes to two folders (test and holdout_N): placed at
	// once, as each is a few object-store round trips.
	dirs := as.Dirs()
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		wg.Go(func() {
			dst := DatasetKey(s.prefix, dir, in.Label, in.ImageID)
			if err := s.copyOnce(ctx, in.Processed, dst); err != nil {
				errs[i] = fmt.Errorf("image %s (%s) to %s: %w", in.ImageID, in.UploadID, dir, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ev := schemas.Split{
		Schema:      schemas.SchemaSplit,
		Resized:     pseudonymise(in, as.Key, s.a.SaltVersion()),
		Split:       as.Split,
		Holdout:     as.Holdout,
		SplitKey:    as.Key.Kind,
		SplitFunc:   SplitFunc,
		SaltVersion: s.a.SaltVersion(),
	}
	return []stage.Output{{Subject: schemas.SplitSubject(as.Split), Event: ev}}, nil
}

// pseudonymise is the resized event as eye.split carries it: the patient's
// pseudonym the split was keyed on (also when the splitter found the patient by
// the key pattern, or hashed a raw id another producer published), and no
// raw patient id.
func pseudonymise(in schemas.Resized, key Key, saltVersion string) schemas.Resized {
	out := in
	out.PatientID = ""
	if key.Kind != KeyPatient || in.PatientHash == key.Value {
		return out
	}
	out.PatientHash, out.PatientSaltVersion = key.Value, saltVersion
	if in.PatientID != "" {
		out.PatientSource = schemas.PatientFromMetadata
	} else {
		out.PatientSource = schemas.PatientFromKey
	}
	return out
}

// checkPatient refuses a patient hash the splitter cannot use: not a hash,
// or made under another salt version than the splitter's (resize and the
// splitter must share EYEFLOW_SPLIT_SALT and EYEFLOW_SPLIT_SALT_VERSION, or
// a patient's images would be keyed under two salts).
func (s *Splitter) checkPatient(in schemas.Resized) error {
	if in.PatientHash == "" {
		return nil
	}
	if !validHash(in.PatientHash) {
		return fmt.Errorf("patient hash %q is not a lowercase hex sha256", in.PatientHash)
	}
	if v := in.PatientSaltVersion; v != "" && v != s.a.SaltVersion() {
		return fmt.Errorf("patient hash made with split salt version %q, the splitter's is %q: run resize and the splitter with the same --split-salt and --split-salt-version", v, s.a.SaltVersion())
	}
	return nil
}

// checkKeys refuses, as bad_key, an event whose label cannot be a dataset
// folder or whose source key is one resize would have refused (an event
// published by something other than resize): the label becomes
// <prefix>/<split>/<class>/, the source key travels on to the classifier
// and labelsink.
func checkKeys(in schemas.Resized) error {
	if in.Label != "" {
		if !validClass(in.Label) {
			return fmt.Errorf("label %q cannot be a dataset folder name", in.Label)
		}
	}
	if in.Source.Key != "" {
		if err := objkey.Check(in.Source.Key); err != nil {
			return fmt.Errorf("source: %w", err)
		}
	}
	return nil
}

// checkInput refuses events that cannot be placed or copied safely.
func checkInput(in schemas.Resized) error {
	var errs []error
	if !schemas.ValidImageID(in.ImageID) {
		errs = append(errs, fmt.Errorf("image id %q is not a lowercase hex sha256", in.ImageID))
	}
	if in.UploadID == "" {
		errs = append(errs, errors.New("upload id is missing"))
	}
	if in.Label != "" {
		if !validClass(in.Label) {
			errs = append(errs, fmt.Errorf("label %q cannot be a dataset folder name", in.Label))
		}
		if in.Processed.Bucket == "" || in.Processed.Key == "" {
			errs = append(errs, errors.New("processed image reference is missing"))
		}
	}
	return errors.Join(errs...)
}

// copyOnce places src at dst unless dst already holds the same bytes. The
// destination key depends only on the image, so a redelivery or a duplicate
// upload never makes a second object; skipping identical content also keeps
// the existing object's version, so nothing downstream sees a rewrite. On a
// store that links (the JetStream object store) dst becomes a link to src,
// one small meta message instead of reading and writing every byte again
// (BENCHMARKS.md, "Pixels carried once"); elsewhere (S3: a server-side
// CopyObject) and over an object of its own, it is a copy.
func (s *Splitter) copyOnce(ctx context.Context, src schemas.ObjectRef, dst string) error {
	// One placement per destination at a time: the same image twice in a
	// batch (a duplicate upload) is placed once, and the second waits for it.
	_, err, _ := s.placing.Do(dst, func() (any, error) { return nil, s.place(ctx, src, dst) })
	return err
}

func (s *Splitter) place(ctx context.Context, src schemas.ObjectRef, dst string) error {
	etag, size := src.ETag, src.Size
	l, links := s.store.(objstore.Linker)
	if links && etag != "" {
		// The common case, a new image, in one round trip: resize stored
		// the PNG the event names (with its ETag) before publishing it.
		// Only a destination that exists (a redelivery, a duplicate upload)
		// is looked at below.
		err := l.LinkNew(ctx, src.Bucket, src.Key, s.cfg.Bucket, dst)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, objstore.ErrExists):
			return fmt.Errorf("link: %w", err)
		}
	}
	if etag == "" {
		// An event without the processed object's ETag (another producer):
		// ask the store.
		si, err := s.store.Stat(ctx, src.Bucket, src.Key)
		if err != nil {
			// Resize writes the PNG before publishing, so a missing source is
			// an outage or a deletion: retried, then dead-lettered.
			return fmt.Errorf("source: %w", err)
		}
		etag, size = si.ETag, si.Size
	}
	di, err := s.store.Stat(ctx, s.cfg.Bucket, dst)
	switch {
	case err == nil && di.ETag != "" && strings.EqualFold(di.ETag, etag) && (size == 0 || di.Size == size):
		return nil
	case err != nil && !errors.Is(err, objstore.ErrNotFound):
		return fmt.Errorf("destination: %w", err)
	}
	if links {
		_, err := l.Link(ctx, src.Bucket, src.Key, s.cfg.Bucket, dst)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, objstore.ErrNotFound):
			return fmt.Errorf("source: %w", err)
		case !errors.Is(err, objstore.ErrNotLinkable):
			return fmt.Errorf("link: %w", err)
		}
	}
	if _, err := s.store.Copy(ctx, src.Bucket, src.Key, s.cfg.Bucket, dst); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return nil
}
