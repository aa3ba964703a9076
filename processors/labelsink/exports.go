package labelsink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/security/objkey"
	"eyeflow/stage"
)

// maxExportBytes bounds an export file read into memory.
const maxExportBytes = 32 << 20

// Label Studio's JSON, as its target storage writes it. Two shapes exist:
// an annotation with its task nested under "task" (one file per
// annotation, the classic target storage), and a task with its annotations
// under "annotations" (newer versions, and each element of a project's JSON
// export, which is an array of them). Both are read.
type lsTask struct {
	ID          json.RawMessage `json:"id"`
	Data        map[string]any  `json:"data"`
	Meta        map[string]any  `json:"meta"`
	Annotations []lsAnnotation  `json:"annotations"`
}

type lsAnnotation struct {
	ID           json.RawMessage `json:"id"`
	Result       []ChoiceResult  `json:"result"`
	WasCancelled bool            `json:"was_cancelled"`
	Task         json.RawMessage `json:"task"`
	// CompletedBy is the annotator: a user id, or (the dashboard's Label
	// page, expanded exports) an object with a username or email.
	CompletedBy json.RawMessage `json:"completed_by"`
}

// labelled is an export item that names an image and its class.
type labelled struct {
	ImageID string
	Source  schemas.ObjectRef
	Class   string
	// Annotator is who chose Class, as the export names them ("" when it
	// does not).
	Annotator string
	raw       []byte // the export item, for a dead letter
}

// rejection is an export item that cannot become a label.
type rejection struct {
	reason  string
	err     error
	imageID string // when known, the image is resolved as rejected
	payload []byte
}

func (r rejection) Error() string { return r.reason + ": " + r.err.Error() }

// parseExport reads one export file into labelled items and rejections.
func (s *Sink) parseExport(data []byte) ([]labelled, []rejection) {
	trimmed := bytes.TrimSpace(data)
	var raws []json.RawMessage
	switch {
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, []rejection{{reason: schemas.ReasonBadExport, err: fmt.Errorf("decode export array: %w", err), payload: data}}
		}
		if len(raws) == 0 {
			return nil, []rejection{{reason: schemas.ReasonEmptyAnnotation, err: errors.New("export holds no tasks"), payload: data}}
		}
	default:
		raws = []json.RawMessage{trimmed}
	}
	var (
		good []labelled
		bad  []rejection
	)
	for _, raw := range raws {
		l, err := s.parseItem(raw)
		if err != nil {
			var rj rejection
			if !errors.As(err, &rj) {
				rj = rejection{reason: schemas.ReasonBadExport, err: err}
			}
			rj.payload = raw
			bad = append(bad, rj)
			continue
		}
		l.raw = raw
		good = append(good, l)
	}
	return good, bad
}

func (s *Sink) parseItem(raw json.RawMessage) (labelled, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return labelled{}, rejection{reason: schemas.ReasonBadExport, err: fmt.Errorf("decode export: %w", err)}
	}
	var task lsTask
	var anns []lsAnnotation
	switch {
	case probe["annotations"] != nil || probe["data"] != nil:
		if err := json.Unmarshal(raw, &task); err != nil {
			return labelled{}, rejection{reason: schemas.ReasonBadExport, err: fmt.Errorf("decode task: %w", err)}
		}
		anns = task.Annotations
	case probe["result"] != nil || probe["task"] != nil:
		var a lsAnnotation
		if err := json.Unmarshal(raw, &a); err != nil {
			return labelled{}, rejection{reason: schemas.ReasonBadExport, err: fmt.Errorf("decode annotation: %w", err)}
		}
		if err := json.Unmarshal(a.Task, &task); err != nil || task.Data == nil {
			return labelled{}, rejection{reason: schemas.ReasonBadExport, err: errors.New("annotation without its task's data (is this a target storage export?)")}
		}
		anns = []lsAnnotation{a}
	default:
		return labelled{}, rejection{reason: schemas.ReasonBadExport, err: errors.New("neither a Label Studio task nor an annotation: no data, annotations, result or task")}
	}

	l := labelled{ImageID: str(task.Data, "image_id")}
	if l.ImageID == "" {
		l.ImageID = str(task.Meta, "image_id")
	}
	l.Source = schemas.ObjectRef{Bucket: str(task.Meta, "source_bucket"), Key: str(task.Meta, "source_key")}
	if l.Source.Key == "" {
		// Tasks made elsewhere: the image's s3:// URL.
		if u, ok := strings.CutPrefix(str(task.Data, DataImage), "s3://"); ok {
			l.Source.Bucket, l.Source.Key, _ = strings.Cut(u, "/")
		}
	}
	if l.ImageID == "" && l.Source.Key != "" {
		l.ImageID = imageIDFromKey(l.Source)
	}
	if !schemas.ValidImageID(l.ImageID) {
		return labelled{}, rejection{reason: schemas.ReasonBadExport, err: fmt.Errorf("image id %q missing or invalid", l.ImageID)}
	}
	if l.Source.Bucket == "" || l.Source.Key == "" {
		return labelled{}, rejection{reason: schemas.ReasonMissingSource, imageID: l.ImageID, err: fmt.Errorf("image %s: no source object in the task", l.ImageID)}
	}
	// The export is written by Label Studio (or anyone with write access to
	// the labelling bucket): its source reference is untrusted. The sink
	// copies only from the raw bucket, and only keys the pipeline accepts.
	if l.Source.Bucket != s.cfg.RawBucket {
		return labelled{}, rejection{reason: schemas.ReasonBadKey, imageID: l.ImageID, err: fmt.Errorf("image %s: source bucket %q is not the raw bucket %q", l.ImageID, l.Source.Bucket, s.cfg.RawBucket)}
	}
	if err := objkey.Check(l.Source.Key); err != nil {
		return labelled{}, rejection{reason: schemas.ReasonBadKey, imageID: l.ImageID, err: fmt.Errorf("image %s: source: %w", l.ImageID, err)}
	}

	var live []lsAnnotation
	cancelled := 0
	for _, a := range anns {
		if a.WasCancelled {
			cancelled++
			continue
		}
		live = append(live, a)
	}
	if len(live) == 0 {
		if cancelled > 0 {
			return labelled{}, rejection{reason: schemas.ReasonCancelledAnnotation, imageID: l.ImageID, err: fmt.Errorf("image %s: every annotation was cancelled (skipped)", l.ImageID)}
		}
		return labelled{}, rejection{reason: schemas.ReasonEmptyAnnotation, imageID: l.ImageID, err: fmt.Errorf("image %s: no annotation", l.ImageID)}
	}
	var chosen []string
	for _, a := range live {
		if l.Annotator == "" {
			l.Annotator = annotatorName(a.CompletedBy)
		}
		for _, r := range a.Result {
			if r.Type != "choices" {
				continue
			}
			for _, c := range r.Value.Choices {
				if !slices.Contains(chosen, c) {
					chosen = append(chosen, c)
				}
			}
		}
	}
	switch {
	case len(chosen) == 0:
		return labelled{}, rejection{reason: schemas.ReasonEmptyAnnotation, imageID: l.ImageID, err: fmt.Errorf("image %s: annotation has no choice", l.ImageID)}
	case len(chosen) > 1:
		return labelled{}, rejection{reason: schemas.ReasonConflictingAnnotations, imageID: l.ImageID, err: fmt.Errorf("image %s: annotations choose %q", l.ImageID, chosen)}
	case !s.classes[chosen[0]]:
		return labelled{}, rejection{reason: schemas.ReasonUnknownClass, imageID: l.ImageID, err: fmt.Errorf("image %s: class %q is not one of the %d classes", l.ImageID, chosen[0], len(s.cfg.Classes))}
	}
	l.Class = chosen[0]
	return l, nil
}

func str(m map[string]any, k string) string {
	v, _ := m[k].(string)
	return v
}

// exportRecord marks an export file (at one ETag) as processed.
type exportRecord struct {
	Key      string    `json:"key"`
	ETag     string    `json:"etag"`
	Labelled int       `json:"labelled"`
	Rejected int       `json:"rejected"`
	Time     time.Time `json:"time"`
}

// RunExports polls the export folder every PollInterval until ctx ends.
// Errors are logged and retried on the next poll: an export file is marked
// processed only once all its items are labelled or dead-lettered.
func (s *Sink) RunExports(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		if err := s.PollOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("export poll failed, will retry")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PollOnce processes every new or changed export file, then writes the
// manifests of the retrain events whose labels are all back (or overdue).
func (s *Sink) PollOnce(ctx context.Context) error {
	var errs []error
	for info, err := range s.cfg.Store.List(ctx, s.cfg.Bucket, s.cfg.ExportsPrefix) {
		if err != nil {
			errs = append(errs, fmt.Errorf("labelsink: list %s/%s: %w", s.cfg.Bucket, s.cfg.ExportsPrefix, err))
			break
		}
		if err := s.processExport(ctx, info); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.writeDueManifests(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Sink) processExport(ctx context.Context, info objstore.Info) error {
	mkey := kvKey("export", info.Key)
	var done exportRecord
	if _, ok, err := s.getJSON(ctx, mkey, &done); err != nil {
		return err
	} else if ok && done.ETag == info.ETag {
		return nil
	}
	rc, _, err := s.cfg.Store.Get(ctx, s.cfg.Bucket, info.Key)
	if err != nil {
		return fmt.Errorf("labelsink: read export %s/%s: %w", s.cfg.Bucket, info.Key, err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, maxExportBytes+1))
	rc.Close()
	if err != nil {
		return fmt.Errorf("labelsink: read export %s/%s: %w", s.cfg.Bucket, info.Key, err)
	}
	var good []labelled
	var bad []rejection
	if len(data) > maxExportBytes {
		bad = []rejection{{reason: schemas.ReasonBadExport, err: fmt.Errorf("export larger than %d bytes", maxExportBytes), payload: data[:4096]}}
	} else {
		good, bad = s.parseExport(data)
	}
	for _, l := range good {
		if err := s.applyLabel(ctx, info.Key, l); err != nil {
			var rj rejection
			if !errors.As(err, &rj) {
				return err // transient: the whole file is retried, copies are idempotent
			}
			rj.payload = l.raw
			bad = append(bad, rj)
		}
	}
	for i, rj := range bad {
		if err := s.deadLetter(ctx, info, i, rj); err != nil {
			return err
		}
		if rj.imageID != "" {
			if err := s.putJSON(ctx, kvKey("label", rj.imageID), labelRecord{ImageID: rj.imageID, Rejected: rj.reason, Export: info.Key, Time: s.now()}); err != nil {
				return err
			}
		}
	}
	s.log.Info().Str("export", info.Key).Int("labelled", len(good)).Int("rejected", len(bad)).Msg("export processed")
	return s.putJSON(ctx, mkey, exportRecord{Key: info.Key, ETag: info.ETag, Labelled: len(good), Rejected: len(bad), Time: s.now()})
}

// RawKey is where a labelled image is copied in the raw bucket:
// <class>/<image-id>.<ext>, the layout the resize stage reads a label from.
// The extension is kept only when it is short and alphanumeric: it comes
// from an untrusted key, and the file name may land on a file system.
func RawKey(class, imageID, sourceKey string) string {
	ext := strings.ToLower(path.Ext(sourceKey))
	if !safeExt(ext) {
		ext = ".jpg"
	}
	return class + "/" + imageID + ext
}

// safeExt reports whether ext is "." and 1 to 8 ASCII letters or digits.
func safeExt(ext string) bool {
	if len(ext) < 2 || len(ext) > 9 {
		return false
	}
	for _, c := range ext[1:] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// applyLabel copies the image into raw/<class>/ (once: an existing copy is
// kept, since a second one would be a second upload) and records the label.
func (s *Sink) applyLabel(ctx context.Context, exportKey string, l labelled) error {
	// An image is answered once, in Label Studio or on the dashboard's
	// Label page: a second answer from another export file agreeing with
	// the first changes nothing, one that disagrees is refused (and leaves
	// the first label in place). The same file rewritten (an annotation
	// updated in Label Studio) is applied as before.
	var prev labelRecord
	if _, ok, err := s.getJSON(ctx, kvKey("label", l.ImageID), &prev); err != nil {
		return err
	} else if ok && prev.Class != "" && prev.Export != exportKey {
		if prev.Class == l.Class {
			return nil
		}
		return rejection{reason: schemas.ReasonConflictingAnnotations, err: fmt.Errorf("image %s: already labelled %q by %s, this export chooses %q", l.ImageID, prev.Class, prev.Export, l.Class)}
	}
	dst := RawKey(l.Class, l.ImageID, l.Source.Key)
	if _, err := s.cfg.Store.Stat(ctx, s.cfg.RawBucket, dst); errors.Is(err, objstore.ErrNotFound) {
		if _, err := s.cfg.Store.Copy(ctx, l.Source.Bucket, l.Source.Key, s.cfg.RawBucket, dst); err != nil {
			if errors.Is(err, objstore.ErrNotFound) {
				return rejection{reason: schemas.ReasonObjectMissing, imageID: l.ImageID, err: fmt.Errorf("image %s: source %s/%s: %w", l.ImageID, l.Source.Bucket, l.Source.Key, err)}
			}
			return fmt.Errorf("labelsink: copy %s/%s to %s/%s: %w", l.Source.Bucket, l.Source.Key, s.cfg.RawBucket, dst, err)
		}
	} else if err != nil {
		return fmt.Errorf("labelsink: stat %s/%s: %w", s.cfg.RawBucket, dst, err)
	}
	return s.putJSON(ctx, kvKey("label", l.ImageID), labelRecord{ImageID: l.ImageID, Class: l.Class, Raw: dst, Export: exportKey, Time: s.now()})
}

// deadLetter publishes a rejected export item on eye.dlq.labelsink, in the
// runtime's DeadLetter shape. Export files do not arrive as messages, so
// Subject is the file's s3:// URL and Stream/Sequence are empty.
func (s *Sink) deadLetter(ctx context.Context, info objstore.Info, i int, rj rejection) error {
	dl := schemas.DeadLetter{
		Schema: schemas.SchemaDeadLetter, Stage: schemas.StageLabelsink,
		Subject: "s3://" + info.Bucket + "/" + info.Key, Deliveries: 1,
		Reason: rj.reason, Error: rj.Error(), Permanent: true, Payload: rj.payload, Time: s.now(),
	}
	data, err := json.Marshal(dl)
	if err != nil {
		return fmt.Errorf("labelsink: encode dead letter: %w", err)
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%s@%s#%d", info.Key, info.ETag, i))
	msg := stage.Message{Subject: schemas.DLQSubject(schemas.StageLabelsink), Data: data,
		MsgID: "dlq:labelsink:export:" + hex.EncodeToString(h[:16]), Stage: schemas.StageLabelsink}
	if err := s.pub.Publish(ctx, msg); err != nil {
		return fmt.Errorf("labelsink: dead-letter export %s: %w", info.Key, err)
	}
	s.log.Error().Err(rj).Str("export", info.Key).Str("reason", rj.reason).Msg("export dead-lettered")
	return nil
}

// ManifestKey is labeling/<retrain-prefix><event-id>/manifest.jsonl.
func (c Config) ManifestKey(eventID string) string {
	return c.RetrainPrefix + eventID + "/manifest.jsonl"
}

func (s *Sink) writeDueManifests(ctx context.Context) error {
	keys, err := s.kv.Keys(ctx, "event.>")
	if err != nil {
		return fmt.Errorf("labelsink: list events: %w", err)
	}
	var errs []error
	for _, k := range keys {
		var ev eventRecord
		if _, ok, err := s.getJSON(ctx, k, &ev); err != nil || !ok || ev.Manifest != "" {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := s.maybeManifest(ctx, k, ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// maybeManifest writes an event's manifest and announces it once every
// image of the event is labelled or rejected, or ManifestTimeout has passed.
func (s *Sink) maybeManifest(ctx context.Context, key string, ev eventRecord) error {
	var labels []labelRecord
	pending := 0
	for _, id := range ev.ImageIDs {
		var l labelRecord
		_, ok, err := s.getJSON(ctx, kvKey("label", id), &l)
		if err != nil {
			return err
		}
		if !ok {
			pending++
			continue
		}
		if l.Class != "" {
			labels = append(labels, l)
		}
	}
	if pending > 0 && s.now().Sub(ev.Requested) < s.cfg.ManifestTimeout {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	train := 0
	for info, err := range s.cfg.Store.List(ctx, s.cfg.DatasetBucket, s.cfg.TrainPrefix) {
		if err != nil {
			return fmt.Errorf("labelsink: list training split %s/%s: %w", s.cfg.DatasetBucket, s.cfg.TrainPrefix, err)
		}
		class, file, ok := strings.Cut(strings.TrimPrefix(info.Key, s.cfg.TrainPrefix), "/")
		if !ok || class == "" {
			continue
		}
		base := path.Base(file)
		_ = enc.Encode(schemas.ManifestLine{Bucket: info.Bucket, Key: info.Key, Class: class, ImageID: strings.TrimSuffix(base, path.Ext(base)), Origin: schemas.ManifestOriginTrain})
		train++
	}
	for _, l := range labels {
		_ = enc.Encode(schemas.ManifestLine{Bucket: s.cfg.RawBucket, Key: l.Raw, Class: l.Class, ImageID: l.ImageID, Origin: schemas.ManifestOriginLabelled})
	}
	mkey := s.cfg.ManifestKey(ev.EventID)
	info, err := s.cfg.Store.Put(ctx, s.cfg.Bucket, mkey, bytes.NewReader(buf.Bytes()), int64(buf.Len()), objstore.PutOptions{ContentType: "application/x-ndjson"})
	if err != nil {
		return fmt.Errorf("labelsink: write manifest %s/%s: %w", s.cfg.Bucket, mkey, err)
	}
	ready := schemas.Retrain{
		Schema: schemas.SchemaRetrain, EventID: ev.EventID, Kind: schemas.RetrainManifestReady,
		Reason: fmt.Sprintf("manifest with %d training objects and %d new labels (%d of %d images still unlabelled)", train, len(labels), pending, len(ev.ImageIDs)),
		Env:    ev.Env, ModelVersion: ev.ModelVersion, AlertID: ev.AlertID,
		Manifest: &schemas.ObjectRef{Bucket: info.Bucket, Key: info.Key, ETag: info.ETag, VersionID: info.VersionID, Size: info.Size},
		Labelled: len(labels), Time: s.now(),
	}
	data, err := json.Marshal(ready)
	if err != nil {
		return fmt.Errorf("labelsink: encode manifest_ready: %w", err)
	}
	// The Msg-Id is the event's: a crash before the record below is saved
	// republishes, and JetStream drops the copy.
	msg := stage.Message{Subject: schemas.SubjectRetrain, Data: data, MsgID: "labelsink:manifest:" + ev.EventID, Stage: schemas.StageLabelsink}
	if err := s.pub.Publish(ctx, msg); err != nil {
		return fmt.Errorf("labelsink: publish manifest_ready %s: %w", ev.EventID, err)
	}
	ev.Manifest = mkey
	s.log.Info().Str("event_id", ev.EventID).Str("manifest", mkey).Int("train", train).Int("labelled", len(labels)).Msg("retrain manifest ready")
	return s.putJSON(ctx, key, ev)
}
