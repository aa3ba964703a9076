package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"eyeflow/internal/machine"
	"eyeflow/objstore"
	"eyeflow/schemas"
	"eyeflow/stage"

	"github.com/rs/zerolog"
)

// Ledger records the identities of uploads that have an eye.uploads event.
type Ledger struct {
	kv      stage.KeyValue
	streams stage.StreamReader
}

// NewLedger is the ledger in kv, the topology's bucket KVUploads;
// streams tell how far the ledger's consumer is behind (Backlog).
func NewLedger(kv stage.KeyValue, streams stage.StreamReader) *Ledger {
	return &Ledger{kv: kv, streams: streams}
}

// ledgerKey hashes the identity: keys may hold any character, KV keys may not.
func ledgerKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// Has reports whether the upload has an event.
func (l *Ledger) Has(ctx context.Context, uploadID string) (bool, error) {
	_, err := l.kv.Get(ctx, ledgerKey(uploadID))
	if errors.Is(err, stage.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ledger get %s: %w", uploadID, err)
	}
	return true, nil
}

// Mark records that the upload has an event.
func (l *Ledger) Mark(ctx context.Context, uploadID string) error {
	if _, err := l.kv.Put(ctx, ledgerKey(uploadID), []byte(uploadID)); err != nil {
		return fmt.Errorf("ledger mark %s: %w", uploadID, err)
	}
	return nil
}

// UploadMsgID is the Msg-Id of the event eyeflow publishes for an upload:
// the watcher, the reconciler and a re-run put all produce the same one.
func UploadMsgID(uploadID string) string { return "upload:" + ledgerKey(uploadID)[:32] }

// Publisher publishes upload events for stored objects.
type Publisher struct {
	pub    stage.Publisher
	ledger *Ledger
}

// NewPublisher publishes with pub and records in ledger.
func NewPublisher(pub stage.Publisher, ledger *Ledger) *Publisher {
	return &Publisher{pub: pub, ledger: ledger}
}

// UploadFromInfo is the upload an object describes.
func UploadFromInfo(info objstore.Info) schemas.Upload {
	return schemas.Upload{
		Bucket:      info.Bucket,
		Key:         info.Key,
		Size:        info.Size,
		ETag:        info.ETag,
		VersionID:   info.VersionID,
		ContentType: info.ContentType,
		Metadata:    info.Metadata,
	}
}

// Publish publishes the object's upload event unless the ledger says it has
// one. It reports whether it published.
func (p *Publisher) Publish(ctx context.Context, info objstore.Info) (bool, error) {
	up := UploadFromInfo(info)
	id := up.ID()
	has, err := p.ledger.Has(ctx, id)
	if err != nil || has {
		return false, err
	}
	data, err := json.Marshal(schemas.NewUploadEvent(up))
	if err != nil {
		return false, fmt.Errorf("encode upload event %s: %w", id, err)
	}
	msg := stage.Message{Subject: schemas.SubjectUploads, Data: data, MsgID: UploadMsgID(id), Stage: StageIngest}
	if err := p.pub.Publish(ctx, msg); err != nil {
		return false, fmt.Errorf("publish upload event %s: %w", id, err)
	}
	// Marked after the event is stored: a crash in between republishes
	// under the same Msg-Id, which the stream drops.
	return true, p.ledger.Mark(ctx, id)
}

// LedgerProcessor is the stage that records every upload event, whoever
// published it (MinIO's notifications included), so the reconciler leaves
// those objects alone.
func LedgerProcessor(ledger *Ledger, log zerolog.Logger, m *stage.Metrics) stage.Processor[schemas.S3Event] {
	return stage.Processor[schemas.S3Event]{
		Stage:  StageIngest,
		Decode: schemas.DecodeS3Event,
		Handle: func(ctx context.Context, ev schemas.S3Event) ([]stage.Output, error) {
			ups, err := ev.Uploads()
			if err != nil {
				return nil, err
			}
			for _, u := range ups {
				if err := ledger.Mark(ctx, u.ID()); err != nil {
					return nil, err
				}
			}
			return nil, nil
		},
		Concurrency: machine.Detect().IOConcurrency(),
		RetryBase:   time.Second,
		Logger:      log,
		Metrics:     m,
	}
}

// StageIngest names ingest in dead letters and metrics.
const StageIngest = schemas.StageIngest
