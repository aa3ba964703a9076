package objstore

import (
	"context"
	"fmt"
)

// Watcher is implemented by stores that report objects as they are
// written, by any client (the JetStream object store; S3 stores notify
// through their own events instead).
type Watcher interface {
	// Watch calls fn with every object of bucket: first those already
	// stored, then each new one as it is written, until ctx ends (nil),
	// the watch fails, or fn returns an error (that error). Deletions are
	// not reported. An object that cannot be described comes with the
	// error why, and Bucket and Key only; the watch goes on.
	Watch(ctx context.Context, bucket string, fn func(Info, error) error) error
}

var _ Watcher = (*JetStreamStore)(nil)

// Watch watches the bucket's object store. Info is what Stat reports
// (ETag: hex SHA-256 of the bytes).
func (s *JetStreamStore) Watch(ctx context.Context, bucket string, fn func(Info, error) error) error {
	// Looked up afresh, not from the cache: a watch restarted after its
	// bucket was recreated must watch the new one.
	obs, err := s.js.ObjectStore(ctx, bucket)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bucket, s.mapErr(ctx, bucket, err))
	}
	w, err := obs.Watch(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case oi, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch %s: updates closed", bucket)
			}
			if oi == nil || oi.Deleted { // nil: the objects already stored are done
				continue
			}
			info, err := jsInfo(oi)
			if err != nil {
				info, err = Info{Bucket: bucket, Key: oi.Name}, fmt.Errorf("describe %s/%s: %w", bucket, oi.Name, err)
			}
			if err := fn(info, err); err != nil {
				return err
			}
		}
	}
}
