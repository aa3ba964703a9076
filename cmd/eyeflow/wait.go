package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"eyeflow/objstore"
	"eyeflow/telemetry"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// readiness is what /readyz answers while a process starts: not ready,
// with what it waits for, until every dependency is there; then ready
// while NATS is connected.
type readiness struct {
	mu      sync.Mutex
	waiting string
	nc      *nats.Conn
}

func newReadiness() *readiness { return &readiness{waiting: "start"} }

// wait records what the process waits for.
func (r *readiness) wait(what string) {
	r.mu.Lock()
	r.waiting = what
	r.mu.Unlock()
}

// connected records the connection whose state readiness follows.
func (r *readiness) connected(nc *nats.Conn) {
	r.mu.Lock()
	r.nc = nc
	r.mu.Unlock()
}

// ready marks the start done.
func (r *readiness) ready() { r.wait("") }

func (r *readiness) check(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting != "" {
		return errors.New("waiting for " + r.waiting)
	}
	if r.nc != nil && !r.nc.IsConnected() {
		return errors.New("NATS is not connected")
	}
	return nil
}

// retryDelays is the backoff between attempts to reach a dependency.
func nextDelay(d time.Duration) time.Duration { return min(2*d, 5*time.Second) }

const firstDelay = 250 * time.Millisecond

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// natsConfigError reports whether a failed NATS connection is the
// configuration's fault (credentials, TLS), which waiting does not fix.
func natsConfigError(err error) bool {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, nats.ErrNkeysNotSupported), errors.Is(err, nats.ErrSecureConnRequired), errors.Is(err, nats.ErrSecureConnWanted),
		errors.Is(err, nats.ErrInvalidConnection),
		errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "authorization violation") || strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:")
}

// waitNATS connects with backoff until NATS answers, logging what it waits
// for; a configuration error (credentials, TLS) ends it at once.
func waitNATS(ctx context.Context, log zerolog.Logger, ready *readiness, n *natsFlags, url, name string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	delay := firstDelay
	for attempt := 1; ; attempt++ {
		nc, js, err := n.dial(url, name, log, extra...)
		if err == nil {
			if attempt > 1 {
				log.Info().Str("nats", redactURL(url)).Msg("NATS is there")
			}
			ready.connected(nc)
			return nc, js, nil
		}
		if natsConfigError(err) || ctx.Err() != nil {
			return nil, nil, err
		}
		ready.wait("NATS at " + redactURL(url))
		log.Warn().Err(err).Str("nats", redactURL(url)).Str("retry_in", delay.String()).Msg("waiting for NATS")
		if serr := sleepCtx(ctx, delay); serr != nil {
			return nil, nil, fmt.Errorf("gave up waiting for NATS: %w (last: %w)", serr, err)
		}
		delay = nextDelay(delay)
	}
}

// s3ConfigError reports whether an S3 error is the configuration's fault:
// wrong credentials or a refused request, which waiting does not fix.
func s3ConfigError(err error) bool {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidBucketName", "AuthorizationHeaderMalformed":
			return true
		}
	}
	return false
}

// waitStore waits until the object store answers: S3 until a request on
// the raw bucket gets an answer (a missing bucket is an answer: `eyeflow
// buckets init` may come later); the JetStream object store is there when
// NATS is.
func waitStore(ctx context.Context, log zerolog.Logger, ready *readiness, store objstore.Store, endpoint string) error {
	s3, ok := store.(*objstore.S3Store)
	if !ok {
		return nil
	}
	delay := firstDelay
	for attempt := 1; ; attempt++ {
		_, err := s3.Client().BucketExists(ctx, objstore.BucketRaw)
		if err == nil {
			if attempt > 1 {
				log.Info().Str("s3", redactURL(endpoint)).Msg("S3 is there")
			}
			return nil
		}
		if s3ConfigError(err) {
			return fmt.Errorf("S3 at %s refused eyeflow's requests (check EYEFLOW_S3_ACCESS_KEY/EYEFLOW_S3_SECRET_KEY or the --s3-*-key-file flags): %w", redactURL(endpoint), err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ready.wait("S3 at " + redactURL(endpoint))
		log.Warn().Err(err).Str("s3", redactURL(endpoint)).Str("retry_in", delay.String()).Msg("waiting for S3")
		if serr := sleepCtx(ctx, delay); serr != nil {
			return fmt.Errorf("gave up waiting for S3 at %s: %w (last: %w)", redactURL(endpoint), serr, err)
		}
		delay = nextDelay(delay)
	}
}

// jetStreamUnavailable reports whether a JetStream API error means the
// service is not there yet (a server starting, a cluster electing its
// meta leader, a new leader that has not heard from its peers, a peer
// offline), which waiting fixes. Placement tags that match no server do
// not fix themselves.
func jetStreamUnavailable(err error) bool {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "temporarily unavailable") || strings.Contains(msg, "no suitable peers") && !strings.Contains(msg, "tags")
}

// retryJetStream runs op until it succeeds, fails for a reason waiting
// does not fix, or ctx ends, logging each wait.
func retryJetStream(ctx context.Context, log zerolog.Logger, what string, op func(context.Context) error) error {
	delay := firstDelay
	for {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := op(octx)
		cancel()
		if err == nil || !jetStreamUnavailable(err) || ctx.Err() != nil {
			return err
		}
		log.Warn().Err(err).Str("retry_in", delay.String()).Msg("waiting for JetStream: " + what)
		if serr := sleepCtx(ctx, delay); serr != nil {
			return fmt.Errorf("gave up waiting for JetStream (%s): %w (last: %w)", what, serr, err)
		}
		delay = nextDelay(delay)
	}
}

// consumerRef names a durable consumer a process reads.
type consumerRef struct{ stream, name string }

// waitConsumers waits until the topology's consumers the process reads
// exist (`eyeflow topology apply` may run after the process starts).
func waitConsumers(ctx context.Context, log zerolog.Logger, ready *readiness, js jetstream.JetStream, refs ...consumerRef) error {
	for _, ref := range refs {
		delay := firstDelay
		for {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := js.Consumer(cctx, ref.stream, ref.name)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			what := fmt.Sprintf("consumer %s on stream %s", ref.name, ref.stream)
			hint := "run `eyeflow topology apply`"
			if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
				hint = "is JetStream enabled on the server (nats-server --jetstream)?"
			}
			ready.wait(what)
			log.Warn().Err(err).Str("retry_in", delay.String()).Str("hint", hint).Msg("waiting for " + what)
			if err := sleepCtx(ctx, delay); err != nil {
				return err
			}
			delay = nextDelay(delay)
		}
	}
	return nil
}

// listenHTTP binds the process's HTTP endpoint; /readyz follows ready.
func listenHTTP(addr string, p *proc, ready *readiness) (*telemetry.Server, error) {
	return telemetry.Listen(addr, p.reg, ready.check)
}

// serveEarly serves srv from now on, before the process's tasks exist, so
// /readyz can say what it waits for. The task watches the server; stop
// shuts it down and waits.
func serveEarly(ctx context.Context, srv *telemetry.Server) (watch task, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var served error
	go func() {
		served = srv.Serve(ctx)
		close(done)
	}()
	watch = task{name: "http", run: func(tctx context.Context) error {
		select {
		case <-tctx.Done():
			return nil
		case <-done:
			return served
		}
	}}
	return watch, func() { cancel(); <-done }
}
