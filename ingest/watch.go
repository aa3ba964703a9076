package ingest

import (
	"context"
	"time"

	"eyeflow/objstore"

	"github.com/rs/zerolog"
)

// WatchJetStream publishes an upload event for every object in the embedded
// object-store bucket: first those already there, then each new one as it is
// written, by any NATS client. It returns when ctx ends.
func WatchJetStream(ctx context.Context, store objstore.Watcher, bucket string, pub *Publisher, log zerolog.Logger) error {
	log = log.With().Str("component", "watcher").Str("bucket", bucket).Logger()
	for {
		err := store.Watch(ctx, bucket, func(info objstore.Info, err error) error {
			if err != nil {
				log.Error().Err(err).Str("key", info.Key).Msg("describe object")
				return nil
			}
			return publishRetry(ctx, pub, info)
		})
		if ctx.Err() != nil {
			return nil
		}
		log.Warn().Err(err).Msg("object watch ended, restarting")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// publishRetry keeps trying: an object the watcher has seen must get its event.
func publishRetry(ctx context.Context, pub *Publisher, info objstore.Info) error {
	delay := 100 * time.Millisecond
	for {
		_, err := pub.Publish(ctx, info)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}
