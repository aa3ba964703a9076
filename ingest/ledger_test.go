package ingest_test

import (
	"context"
	"errors"
	"testing"

	"eyeflow/ingest"
	"eyeflow/internal/stagetest"
	"eyeflow/objstore"
	"eyeflow/schemas"
)

// TestUploadMarkedOnlyOnceStored: the ledger is what stops the watcher and
// the reconciler from publishing an upload again, so an upload must enter
// it only after its event is stored; marked before, a failed publish
// would leave the upload without an event for good. Pure logic: the
// ledger and the stream are in memory.
func TestUploadMarkedOnlyOnceStored(t *testing.T) {
	ctx := context.Background()
	stream := &stagetest.Publisher{}
	ledger := ingest.NewLedger(stagetest.NewKeyValue(), nil)
	pub := ingest.NewPublisher(stream, ledger)
	info := objstore.Info{Bucket: objstore.BucketRaw, Key: "amd/a.jpg", ETag: "e1", Size: 3}
	id := ingest.UploadFromInfo(info).ID()

	stream.SetErr(errors.New("stream out of reach"))
	if ok, err := pub.Publish(ctx, info); err == nil || ok {
		t.Fatalf("publish with the stream out of reach: %v, %v; want an error", ok, err)
	}
	if has, err := ledger.Has(ctx, id); err != nil || has {
		t.Fatalf("ledger has the upload (%v, %v) though its event was not stored: nothing would publish it again", has, err)
	}

	stream.SetErr(nil)
	if ok, err := pub.Publish(ctx, info); err != nil || !ok {
		t.Fatalf("publish: %v, %v", ok, err)
	}
	if has, err := ledger.Has(ctx, id); err != nil || !has {
		t.Fatalf("ledger lacks the published upload (%v, %v)", has, err)
	}
	if ok, err := pub.Publish(ctx, info); err != nil || ok {
		t.Fatalf("second publish of a recorded upload: %v, %v; want nothing published", ok, err)
	}
	// New content under the same key is a new upload.
	info.ETag = "e2"
	if ok, err := pub.Publish(ctx, info); err != nil || !ok {
		t.Fatalf("publish of new content: %v, %v", ok, err)
	}
	msgs := stream.Messages()
	if len(msgs) != 2 || msgs[0].MsgID != ingest.UploadMsgID(id) || msgs[0].MsgID == msgs[1].MsgID ||
		msgs[0].Subject != schemas.SubjectUploads || msgs[0].Stage != ingest.StageIngest {
		t.Fatalf("stored %+v; want two upload events under their uploads' Msg-Ids", msgs)
	}
}
