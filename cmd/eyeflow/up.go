package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"eyeflow/bus"
	"eyeflow/ingest"
	"eyeflow/internal/deployment"
	"eyeflow/internal/machine"
	"eyeflow/objstore"
	"eyeflow/pipeline"
	"eyeflow/schemas"
	"eyeflow/security/natsauth"
	"eyeflow/stage"
	"eyeflow/telemetry"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type upFlags struct {
	log        logFlags
	data       string
	natsListen string
	// The embedded server's authentication and TLS (the client side of
	// `up` itself is in nats).
	natsAuthConfig string
	listenTLSCert  string
	listenTLSKey   string
	listenTLSCA    string
	nats           natsFlags
	store          storeFlags
	http           string
	replicas       int
	reconcile      time.Duration
	processors     string
	pprof          bool
	replaceStore   bool
	resize         resizeFlags
	split          splitFlags
	classifier     classifierFlags
	driftwatch     driftwatchFlags
	labelsink      labelsinkFlags
	trainer        trainerFlags
	dashboard      dashboardFlags
}

func runUp(ctx context.Context, args []string, out, errOut io.Writer) error {
	var f upFlags
	fs := newFlagSet("up", "", "Runs the whole pipeline in one process. By default NATS, JetStream and the object store are embedded\n"+
		"under --data; the NATS server listens on --nats-listen, where clients (eyeflow put, the nats CLI, downstream\n"+
		"consumers) connect. Listening and connecting are separate settings: $EYEFLOW_NATS_LISTEN moves the server (and\n"+
		"is where other eyeflow commands connect by default), $EYEFLOW_NATS only where clients connect.", out, errOut)
	f.log.register(fs)
	fs.stringVar(&f.data, "data", "eyeflow-data", "data directory of the embedded NATS server (streams, KV, objects)")
	fs.stringVar(&f.natsListen, "nats-listen", defaultListen, "client address the embedded NATS server listens on")
	fs.stringVar(&f.natsAuthConfig, "nats-auth-config", "", "nats-server config with the users and permissions the embedded server requires (`eyeflow nats-config`, deploy/nats/auth.conf); `up` logs in with --nats-user")
	fs.stringVar(&f.listenTLSCert, "nats-listen-tls-cert", "", "PEM certificate: the embedded server's client port requires TLS")
	fs.stringVar(&f.listenTLSKey, "nats-listen-tls-key", "", "PEM private key of --nats-listen-tls-cert")
	fs.stringVar(&f.listenTLSCA, "nats-listen-tls-ca", "", "PEM CA: the embedded server also requires client certificates signed by it")
	f.nats.registerURL(fs, "nats-external", "", "URL(s) of an external NATS server to use instead of the embedded one (not $EYEFLOW_NATS, which is where clients connect)")
	fs.deprecate("nats", "nats-external")
	f.store.register(fs)
	fs.stringVar(&f.http, "http", "127.0.0.1:8080", "address for /metrics, /healthz, /readyz, the dashboard and POST /predict")
	fs.intVar(&f.replicas, "replicas", 1, "stream and bucket replicas (3 on a three-node cluster)")
	fs.durationVar(&f.reconcile, "reconcile-interval", 5*time.Minute, "how often the reconciler lists the raw bucket for objects without an event (0: only at start)")
	fs.stringVar(&f.processors, "processors", strings.Join(processorNames(), ","), "processors to run in this process, comma-separated (run others as `eyeflow <processor>` elsewhere)")
	fs.boolVar(&f.pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the HTTP port")
	fs.boolVar(&f.replaceStore, "replace-store", false, "make this object store the deployment's even though another one is recorded in the cluster (after a migration)")
	f.resize.register(fs)
	f.split.register(fs, true)
	f.classifier.register(fs)
	f.classifier.registerUp(fs)
	f.driftwatch.register(fs)
	f.labelsink.register(fs)
	f.trainer.register(fs)
	f.dashboard.register(fs)
	if err := fs.parse(args, f.validate); err != nil {
		return err
	}
	log, err := f.log.logger(errOut)
	if err != nil {
		return err
	}
	p := newProc(log)
	ready := newReadiness()

	// HTTP first, so /readyz says what up waits for, and the first log
	// line says where everything listens and how to reach it.
	srv, err := listenHTTP(f.http, p, ready)
	if err != nil {
		return err
	}
	if f.pprof {
		srv.EnablePprof()
	}
	watchHTTP, stopHTTP := serveEarly(ctx, srv)
	defer stopHTTP()
	clientURL := listenURL(f.natsListen)
	if f.nats.url != "" {
		clientURL = f.nats.url
	}
	put := f.putCommand(clientURL)
	first := log.Info().Str("http", "http://"+srv.Addr()).Str("put", put).Str("store", f.store.describe())
	if f.nats.url == "" {
		first.Str("nats_listen", f.natsListen).Str("nats", clientURL).Str("data", f.data).
			Msg("eyeflow up: NATS listens on " + f.natsListen + ", HTTP on http://" + srv.Addr() + "; upload with: " + put)
	} else {
		first.Str("nats", redactURL(clientURL)).Msg("eyeflow up: using the NATS server at " + redactURL(clientURL) + ", HTTP on http://" + srv.Addr() + "; upload with: " + put)
	}
	if env := strings.TrimSpace(os.Getenv("EYEFLOW_NATS")); env != "" && f.nats.url == "" && env != clientURL {
		log.Warn().Str("EYEFLOW_NATS", redactURL(env)).Str("nats_listen", f.natsListen).
			Msg("$EYEFLOW_NATS (where clients connect) is not where this server listens: clients that read it will not find this server; " +
				"set EYEFLOW_NATS_LISTEN (or --nats-listen) to move the server, or EYEFLOW_NATS=" + clientURL)
	}
	f.logPlan(log)

	natsURL := f.nats.url
	var upClientOpts []nats.Option
	if natsURL == "" {
		dir := filepath.Join(f.data, "jetstream")
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		so := bus.ServerOptions{Name: "eyeflow", Listen: f.natsListen, StoreDir: dir, Logger: log,
			TLSCert: f.listenTLSCert, TLSKey: f.listenTLSKey, TLSCA: f.listenTLSCA}
		if f.natsAuthConfig != "" {
			if so.Users, err = bus.LoadUsers(f.natsAuthConfig); err != nil {
				return err
			}
		}
		ready.wait("the embedded NATS server")
		nsrv, err := bus.StartServer(so)
		if err != nil {
			return err
		}
		if f.listenTLSCert != "" && f.nats.tlsCA == "" {
			// up's own client trusts the certificate it serves (enough for
			// a self-signed one; a CA-signed one needs --nats-tls-ca).
			upClientOpts = append(upClientOpts, nats.RootCAs(f.listenTLSCert))
		}
		defer nsrv.Stop()
		natsURL = nsrv.ClientURL()
		log.Info().Str("nats", natsURL).Str("data", f.data).Msg("embedded NATS with JetStream started")
	}
	nc, js, err := waitNATS(ctx, log, ready, &f.nats, natsURL, "eyeflow-up", upClientOpts...)
	if err != nil {
		return ignoreCanceled(ctx, err)
	}
	defer nc.Close()

	topo := bus.DefaultOptions()
	topo.Replicas = f.replicas
	if f.nats.url == "" {
		// The embedded server stores under --data: every stream at its
		// byte bound fits there.
		topo = topo.FitDisk(machine.DiskFree(f.data))
	}
	log.Info().Dur("stream_max_age", topo.MaxAge).Int64("stream_max_bytes", topo.MaxBytes).Msg("retention")
	ready.wait("the JetStream topology")
	if err := retryJetStream(ctx, log, "apply the topology", func(ctx context.Context) error { return bus.Apply(ctx, js, pipeline.Topology(topo)) }); err != nil {
		return ignoreCanceled(ctx, err)
	}
	store, err := f.store.open(js, f.replicas)
	if err != nil {
		return err
	}
	if err := waitStore(ctx, log, ready, store, f.store.endpoint); err != nil {
		return ignoreCanceled(ctx, err)
	}
	depKV, err := bus.OpenKeyValue(ctx, js, pipeline.KeyValueConfig(bus.KVDeployment, f.replicas))
	if err != nil {
		return err
	}
	// The pseudonym key before the store record: a store recorded already
	// is how EnsurePseudonym tells a deployment made before keys.
	_, pdid, err := deployment.EnsurePseudonym(ctx, js, depKV, "eyeflow up")
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	log.Info().Msg(pdid)
	did, err := deployment.Record(ctx, depKV, deployment.Target{Store: store, Endpoint: f.store.endpoint}, "eyeflow up", f.replaceStore)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	log.Info().Msg(did)
	for _, b := range objstore.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			return err
		}
	}
	ledger, err := openLedger(ctx, js)
	if err != nil {
		return err
	}
	pub := ingest.NewPublisher(stage.PublisherOf(js), ledger)
	rec := &ingest.Reconciler{Store: store, Bucket: objstore.BucketRaw, Pub: pub, Grace: time.Minute, LedgerWait: defaultLedgerWait,
		Log: log.With().Str("component", "reconciler").Logger(), Metrics: ingest.NewReconcileMetrics(p.reg)}

	dash, err := f.dashboard.mount(p, nc, js, store, srv, f.split.prefix, nil)
	if err != nil {
		return err
	}
	tasks := []task{
		watchHTTP,
		dash,
		stageTask(js, ingest.LedgerProcessor(ledger, log, p.metrics)),
		{name: "reconciler", run: func(ctx context.Context) error {
			if f.reconcile <= 0 {
				_, err := rec.Once(ctx)
				return err
			}
			rec.Run(ctx, f.reconcile)
			return nil
		}},
	}
	if f.store.endpoint == "" {
		// The embedded store cannot notify: the watcher turns its writes into events.
		tasks = append(tasks, task{name: "watcher", run: func(ctx context.Context) error {
			return ingest.WatchJetStream(ctx, objstore.NewJetStream(js), objstore.BucketRaw, pub, log)
		}})
	}
	procTasks, err := f.processorTasks(ctx, p, js, store, srv)
	if err != nil {
		return err
	}
	tasks = append(tasks, procTasks...)
	ready.ready()
	log.Info().Str("http", "http://"+srv.Addr()).Str("nats", redactURL(clientURL)).Str("put", put).Msg("eyeflow is up; upload with: " + put)
	return runTasks(ctx, log, tasks...)
}

// putCommand is the exact command that uploads into this up: its NATS
// address, and the login and TLS flags a client needs.
func (f *upFlags) putCommand(url string) string {
	cmd := "eyeflow put --nats " + redactURL(url)
	if f.store.endpoint != "" {
		cmd += " --s3 " + redactURL(f.store.endpoint)
	}
	if f.natsAuthConfig != "" && f.nats.user != "" {
		cmd += " --nats-user " + f.nats.user
	}
	if f.listenTLSCert != "" {
		ca := f.nats.tlsCA
		if ca == "" {
			ca = f.listenTLSCert
		}
		cmd += " --nats-tls-ca " + ca
	}
	return cmd + " DIR"
}

func (f *upFlags) validate() error {
	if f.nats.url == "" && f.data == "" {
		return fmt.Errorf("--data is required for the embedded server")
	}
	if f.replicas < 1 || f.replicas > 5 {
		return fmt.Errorf("--replicas %d: must be 1..5", f.replicas)
	}
	if err := f.nats.validate(); err != nil {
		return err
	}
	if f.nats.url != "" && (f.natsAuthConfig != "" || f.listenTLSCert != "" || f.listenTLSKey != "" || f.listenTLSCA != "") {
		return fmt.Errorf("--nats-auth-config and --nats-listen-tls-* configure the embedded server: not with --nats-external")
	}
	if (f.listenTLSCert == "") != (f.listenTLSKey == "") || (f.listenTLSCA != "" && f.listenTLSCert == "") {
		return fmt.Errorf("--nats-listen-tls-cert and --nats-listen-tls-key go together (and --nats-listen-tls-ca needs them)")
	}
	if f.natsAuthConfig != "" && f.nats.user == "" && f.nats.creds == "" {
		return fmt.Errorf("--nats-auth-config: eyeflow up needs a user too: --nats-user (e.g. %s) with $%s", natsauth.UserName(natsauth.RoleAdmin), envNATSPassword)
	}
	if err := f.store.validate(); err != nil {
		return err
	}
	for _, n := range f.processorList() {
		if !slices.Contains(processorNames(), n) {
			return fmt.Errorf("--processors: %q is not one of %v", n, processorNames())
		}
	}
	if err := f.split.validate(); err != nil {
		return err
	}
	if err := f.classifier.validate(); err != nil {
		return err
	}
	if err := f.driftwatch.validate(); err != nil {
		return err
	}
	if err := f.labelsink.validate(); err != nil {
		return err
	}
	if err := f.trainer.validate(); err != nil {
		return err
	}
	return f.resize.validate()
}

// processorNames are the stages `eyeflow up` runs as --processors: the
// catalogue's, but ingest, which every up runs (the embedded store's
// uploads become events through it).
func processorNames() []string {
	return slices.DeleteFunc(pipeline.Names(), func(n string) bool { return n == schemas.StageIngest })
}

// processorTasks builds the processors named by --processors.
func (f *upFlags) processorTasks(ctx context.Context, p *proc, js jetstream.JetStream, store objstore.Store, srv *telemetry.Server) ([]task, error) {
	var tasks []task
	cmds := stageCmds()
	for _, name := range f.processorList() {
		build := cmds[name].up
		if build == nil {
			return nil, fmt.Errorf("up: stage %s is in the catalogue but up cannot build it", name)
		}
		t, err := build(ctx, f, upEnv{p: p, js: js, store: store, srv: srv})
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, t...)
	}
	return tasks, nil
}

func (f *upFlags) processorList() []string {
	var out []string
	for _, n := range strings.Split(f.processors, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
