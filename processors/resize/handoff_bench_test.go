package resize_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"testing"
	"time"

	"eyeflow/bus"
	"eyeflow/imaging"
	"eyeflow/internal/testenv"
	"eyeflow/objstore"
	"eyeflow/schemas"

	"github.com/nats-io/nats.go/jetstream"
)

// The two ways the classifier can get an image's pixels from the resize
// stage: inline in eye.resized (about 200 KB of JSON with base64), or a small
// event plus a read and decode of the stored PNG. Each op is one image: the
// resize side's PNG put and publish plus the classifier side's fetch and
// decode. Run: go test -run XXX -bench Handoff -benchtime 500x -count 6 ./processors/resize
func BenchmarkHandoff(b *testing.B) {
	rgb := make([]byte, 224*224*3)
	res, err := imaging.Decode(fundusJPEG(b, 1024, 768), imaging.DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	copy(rgb, res.RGB)
	var pngBuf bytes.Buffer
	if err := imaging.EncodePNG(&pngBuf, rgb, 224, 224); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"inline", "object-store"} {
		b.Run(mode, func(b *testing.B) {
			env := testenv.NATS(b, testenv.TopologyOptions())
			store := objstore.NewJetStream(env.JS)
			ctx := context.Background()
			if err := store.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
				b.Fatal(err)
			}
			cons, err := env.JS.Consumer(ctx, bus.StreamResized, "splitter")
			if err != nil {
				b.Fatal(err)
			}
			var size int
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				ev := schemas.Resized{Schema: schemas.SchemaResized, ImageID: "x", Processed: schemas.ObjectRef{Bucket: objstore.BucketProcessed, Key: "resized/x.png"}}
				if mode == "inline" {
					ev.RGB = rgb
				}
				// The stage stores the PNG either way (people and the dataset
				// layout read it); what differs is how the classifier gets pixels.
				if _, err := store.Put(ctx, objstore.BucketProcessed, "resized/x.png", bytes.NewReader(pngBuf.Bytes()), int64(pngBuf.Len()), objstore.PutOptions{}); err != nil {
					b.Fatal(err)
				}
				data, _ := json.Marshal(ev)
				size = len(data)
				if _, err := env.JS.Publish(ctx, schemas.SubjectResized, data); err != nil {
					b.Fatal(err)
				}
				msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
				if err != nil {
					b.Fatal(err)
				}
				got, err := schemas.DecodeResized(msg.Data())
				if err != nil {
					b.Fatal(err)
				}
				pix := got.RGB
				if mode != "inline" {
					rc, _, err := store.Get(ctx, got.Processed.Bucket, got.Processed.Key)
					if err != nil {
						b.Fatal(err)
					}
					im, err := png.Decode(rc)
					rc.Close()
					if err != nil {
						b.Fatal(err)
					}
					switch im := im.(type) {
					case *image.NRGBA:
						pix = im.Pix
					case *image.RGBA:
						pix = im.Pix
					}
				}
				if len(pix) == 0 {
					b.Fatal("no pixels")
				}
				_ = msg.Ack()
			}
			b.ReportMetric(float64(size), "event-bytes")
		})
	}
}
