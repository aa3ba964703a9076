package objstore_test

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"eyeflow/objstore"
)

// BenchmarkJetStreamGet reads an object the size of a processed PNG (one
// chunk: one direct get) and one of several chunks (streamed by the client).
func BenchmarkJetStreamGet(b *testing.B) {
	for _, size := range []int{43 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			_, js := startNATS(b)
			s := objstore.NewJetStream(js, objstore.WithStorage(jetstream.FileStorage))
			ctx := b.Context()
			if err := s.EnsureBucket(ctx, objstore.BucketProcessed); err != nil {
				b.Fatal(err)
			}
			data := randomBytes(1, size)
			if _, err := s.Put(ctx, objstore.BucketProcessed, "a/b.png", bytes.NewReader(data), int64(size), objstore.PutOptions{}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				r, _, err := s.Get(ctx, objstore.BucketProcessed, "a/b.png")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
