package main

import (
	"context"
	"fmt"
	"io"
	"slices"

	"eyeflow/bus"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/schemas"
	"eyeflow/telemetry"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// standalone holds what a long-running `eyeflow <processor>` needs: NATS, a
// store, HTTP.
type standalone struct {
	log   logFlags
	nats  natsFlags
	store storeFlags
	http  string
	// replicas of a bucket or consumer this process has to create because
	// the topology lacks it; existing ones are used as they are.
	replicas int
}

// natsClientUsage describes --nats of every client command.
const natsClientUsage = "NATS server URL(s), comma-separated (default: where `eyeflow up` listens, $" + envNATSListen + " or " + defaultListen + ")"

func (s *standalone) register(fs *flagSet) {
	s.registerHTTP(fs, "127.0.0.1:8080")
}

// registerHTTP registers the flags with another default for --http (""
// serves nothing unless --http is given).
func (s *standalone) registerHTTP(fs *flagSet, httpDefault string) {
	s.log.register(fs)
	s.nats.register(fs, defaultNATS(), natsClientUsage)
	s.store.register(fs)
	fs.stringVar(&s.http, "http", httpDefault, "address for /metrics, /healthz and /readyz (empty: none)")
	fs.intVar(&s.replicas, "replicas", 1, "replicas of a KV or object-store bucket this process must create because `eyeflow topology apply` / `buckets init` did not (existing ones are never changed)")
}

func (s *standalone) validate() error {
	if s.replicas < 1 || s.replicas > 5 {
		return fmt.Errorf("--replicas %d: must be 1..5", s.replicas)
	}
	if err := s.nats.validate(); err != nil {
		return err
	}
	return s.store.validate()
}

// standaloneEnv is what a standalone processor's tasks are built from.
type standaloneEnv struct {
	p     *proc
	nc    *nats.Conn
	js    jetstream.JetStream
	store objstore.Store
	srv   *telemetry.Server // nil without --http; handlers may be added before the tasks run
}

// run starts the process in an order that needs nothing to be up yet: it
// serves HTTP first and says in its first log line where, then waits for
// NATS, the object store and the topology's consumers in needs (each
// logged, and /readyz not ready meanwhile), builds the tasks and runs them
// until ctx ends. Only a configuration error ends it early.
func (s *standalone) run(ctx context.Context, name string, errOut io.Writer, needs []consumerRef, build func(e standaloneEnv) ([]task, error)) error {
	log, err := s.log.logger(errOut)
	if err != nil {
		return err
	}
	p := newProc(log.With().Str("process", name).Logger())
	ready := newReadiness()
	var srv *telemetry.Server
	var tasks []task
	first := p.log.Info().Str("nats", redactURL(s.nats.url)).Str("store", s.store.describe())
	msg := name + " starting"
	if s.http != "" {
		if srv, err = listenHTTP(s.http, p, ready); err != nil {
			return err
		}
		addr := "http://" + srv.Addr()
		first = first.Str("http", addr).Str("check", "curl "+addr+"/readyz")
		msg += ": HTTP on " + addr
		watch, stop := serveEarly(ctx, srv)
		defer stop()
		tasks = append(tasks, watch)
	}
	first.Msg(msg + "; connecting to NATS at " + redactURL(s.nats.url))

	nc, js, err := waitNATS(ctx, p.log, ready, &s.nats, s.nats.url, "eyeflow-"+name)
	if err != nil {
		return ignoreCanceled(ctx, err)
	}
	defer nc.Close()
	store, err := s.store.open(js, s.replicas)
	if err != nil {
		return err
	}
	if err := waitStore(ctx, p.log, ready, store, s.store.endpoint); err != nil {
		return ignoreCanceled(ctx, err)
	}
	if err := checkStore(ctx, js, &s.store, store, func(err error) { p.log.Warn().Err(err).Msg("object store not checked") }); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := waitConsumers(ctx, p.log, ready, js, needs...); err != nil {
		return ignoreCanceled(ctx, err)
	}
	built, err := build(standaloneEnv{p: p, nc: nc, js: js, store: store, srv: srv})
	if err != nil {
		return err
	}
	ready.ready()
	p.log.Info().Str("nats", nc.ConnectedUrlRedacted()).Msg(name + " running")
	return runTasks(ctx, p.log, append(built, tasks...)...)
}

// stageNeeds are the catalogue's consumers a stage's process waits for:
// its inputs that the topology applies (optional ones are its own to
// create), for a per-env input only those of envs (nil: every env).
func stageNeeds(name string, envs []string) []consumerRef {
	st, ok := pipeline.Find(name)
	if !ok {
		panic("eyeflow: no stage " + name + " in the catalogue")
	}
	var out []consumerRef
	for _, in := range st.Inputs {
		if in.Optional {
			continue
		}
		if !in.PerEnv {
			out = append(out, consumerRef{in.Stream, in.Consumer})
			continue
		}
		for _, env := range schemas.Envs() {
			if envs == nil || slices.Contains(envs, env) {
				out = append(out, consumerRef{in.Stream, bus.ClassifierConsumer(env)})
			}
		}
	}
	return out
}

// ignoreCanceled turns the error of a wait that ended because the process
// was stopped into a clean exit.
func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
