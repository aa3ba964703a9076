package ingest

import (
	"context"
	"fmt"
	"time"

	"eyeflow/objstore"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// WatchJetStream publishes an upload event for every object in the embedded
// object-store bucket: first those already there, then each new one as it is
// written, by any NATS client. It returns when ctx ends.
func WatchJetStream(ctx context.Context, js natsjs.JetStream, bucket string, pub *Publisher, log zerolog.Logger) error {
	log = log.With().Str("component", "watcher").Str("bucket", bucket).Logger()
	for {
		err := watchOnce(ctx, js, bucket, pub, log)
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

func watchOnce(ctx context.Context, js natsjs.JetStream, bucket string, pub *Publisher, log zerolog.Logger) error {
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return fmt.Errorf("open object store %s: %w", bucket, err)
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
				return fmt.Errorf("watch %s: updates closed", bucket)
			}
			if oi == nil {
				log.Debug().Msg("caught up with existing objects")
				continue
			}
			if oi.Deleted {
				continue
			}
			info, err := objstore.InfoFromObject(oi)
			if err != nil {
				log.Error().Err(err).Str("key", oi.Name).Msg("describe object")
				continue
			}
			if err := publishRetry(ctx, pub, info); err != nil {
				return err
			}
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
