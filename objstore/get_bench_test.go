package objstore_test

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"eyeflow/objstore"
)

// BenchmarkJetStreamGet reads an object the size of a processed PNG (one
// chunk: one direct get) and one of several chunks (streamed by the client).
func BenchmarkJetStreamGet(b *testing.B) {
	for _, size := range []int{43 << 10, 280 << 10, 1 << 20} {
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

// BenchmarkJetStreamGetParallel reads a raw JPEG's size (three chunks) from
// 16 goroutines at once, as resize does on 16 cores.
func BenchmarkJetStreamGetParallel(b *testing.B) {
	_, js := startNATS(b)
	s := objstore.NewJetStream(js, objstore.WithStorage(jetstream.FileStorage))
	ctx := b.Context()
	if err := s.EnsureBucket(ctx, objstore.BucketRaw); err != nil {
		b.Fatal(err)
	}
	const size = 280 << 10
	data := randomBytes(1, size)
	for i := range 64 {
		if _, err := s.Put(ctx, objstore.BucketRaw, fmt.Sprintf("a/%d.jpg", i), bytes.NewReader(data), int64(size), objstore.PutOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
	b.SetParallelism(8)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, _, err := s.Get(ctx, objstore.BucketRaw, fmt.Sprintf("a/%d.jpg", n.Add(1)%64))
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.Error(err)
			}
			r.Close()
		}
	})
}
