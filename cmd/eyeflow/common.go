package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"eyeflow/internal/deployment"
	"eyeflow/objstore"
	"eyeflow/security/natsauth"
	"eyeflow/stage"
	"eyeflow/telemetry"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// defaultListen is where `eyeflow up`'s embedded NATS server listens
// unless --nats-listen / $EYEFLOW_NATS_LISTEN say otherwise.
const defaultListen = "127.0.0.1:4222"

// envNATSListen is the variable of `eyeflow up --nats-listen`.
const envNATSListen = "EYEFLOW_NATS_LISTEN"

// defaultNATS is where client commands connect unless --nats / $EYEFLOW_NATS
// say otherwise: where `eyeflow up` listens, so exporting
// EYEFLOW_NATS_LISTEN once moves the server and its clients together.
func defaultNATS() string {
	if l := strings.TrimSpace(os.Getenv(envNATSListen)); l != "" {
		return listenURL(l)
	}
	return listenURL(defaultListen)
}

// listenURL is the URL a client on this machine reaches a listen address
// at: an unspecified host (0.0.0.0, ::, none) is reached on 127.0.0.1.
func listenURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "nats://" + listen
	}
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "127.0.0.1"
	}
	return "nats://" + net.JoinHostPort(host, port)
}

type logFlags struct{ level, format string }

func (l *logFlags) register(fs *flagSet) {
	fs.stringVar(&l.level, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.stringVar(&l.format, "log-format", "auto", "log format: auto (console on a terminal, else JSON), json, console")
}

func (l *logFlags) logger(w io.Writer) (zerolog.Logger, error) {
	return telemetry.NewLogger(w, l.level, l.format)
}

type natsFlags struct {
	url string
	// urlFlag is the name of the URL flag: "nats", or up's "nats-external".
	urlFlag string
	creds   string
	// user logs in with a password from $EYEFLOW_NATS_PASSWORD or the
	// password file; the command line refuses it, so it is not in ps.
	user         string
	passwordEnv  string
	passwordFile string
	inboxPrefix  string
	tlsCA        string
	tlsCert      string
	tlsKey       string
}

// envNATSPassword holds the password of --nats-user: credentials come
// only from the environment or files.
const envNATSPassword = "EYEFLOW_NATS_PASSWORD"

func (n *natsFlags) register(fs *flagSet, def string, usage string) {
	n.registerURL(fs, "nats", def, usage)
}

// registerURL registers the URL under another flag name (up's
// --nats-external, so that $EYEFLOW_NATS, where clients connect, never
// turns `eyeflow up` into a client of another server).
func (n *natsFlags) registerURL(fs *flagSet, urlFlag, def string, usage string) {
	n.urlFlag = urlFlag
	fs.stringVar(&n.url, urlFlag, def, usage)
	fs.stringVar(&n.creds, "nats-creds", "", "NATS credentials file (user JWT and nkey seed)")
	fs.stringVar(&n.user, "nats-user", "", "NATS user name (see deploy/nats/auth.conf); the password comes from $"+envNATSPassword+" or --nats-password-file")
	fs.secretVar(&n.passwordEnv, "nats-password", "password of --nats-user")
	fs.stringVar(&n.passwordFile, "nats-password-file", "", "file holding the password of --nats-user")
	fs.stringVar(&n.inboxPrefix, "nats-inbox-prefix", "", "reply subject prefix (default with --nats-user: _INBOX_<user>, the only inbox its permissions allow)")
	fs.stringVar(&n.tlsCA, "nats-tls-ca", "", "PEM file of the CA that signed the NATS server certificate (enables TLS)")
	fs.stringVar(&n.tlsCert, "nats-tls-cert", "", "PEM client certificate for NATS servers that verify clients (with --nats-tls-key)")
	fs.stringVar(&n.tlsKey, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
}

func (n *natsFlags) validate() error {
	if n.url != "" {
		for _, u := range strings.Split(n.url, ",") {
			p, err := url.Parse(strings.TrimSpace(u))
			if err != nil || p.Host == "" {
				return fmt.Errorf("--%s %q: want a URL such as nats://host:4222", n.urlFlag, u)
			}
		}
	}
	_, err := n.options()
	return err
}

// password reads the password of --nats-user: the file wins over the
// environment. Errors name where it was looked for, never its value.
func (n *natsFlags) password() (string, error) {
	if n.passwordFile != "" {
		b, err := os.ReadFile(n.passwordFile)
		if err != nil {
			return "", fmt.Errorf("--nats-password-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return n.passwordEnv, nil
}

// options turns the authentication and TLS flags into client options.
func (n *natsFlags) options() ([]nats.Option, error) {
	var opts []nats.Option
	if n.creds != "" {
		if _, err := os.Stat(n.creds); err != nil {
			return nil, fmt.Errorf("--nats-creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(n.creds))
	}
	switch {
	case n.user != "" && n.creds != "":
		return nil, errors.New("--nats-user and --nats-creds are exclusive: log in with a password or with a credentials file")
	case n.user != "":
		pw, err := n.password()
		if err != nil {
			return nil, err
		}
		if pw == "" {
			return nil, fmt.Errorf("--nats-user %q needs a password: set $%s or --nats-password-file", n.user, envNATSPassword)
		}
		opts = append(opts, nats.UserInfo(n.user, pw))
	case n.passwordFile != "":
		return nil, errors.New("--nats-password-file needs --nats-user")
	}
	if prefix := n.inbox(); prefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	if (n.tlsCert == "") != (n.tlsKey == "") {
		return nil, errors.New("--nats-tls-cert and --nats-tls-key go together")
	}
	for flag, f := range map[string]string{"--nats-tls-ca": n.tlsCA, "--nats-tls-cert": n.tlsCert, "--nats-tls-key": n.tlsKey} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
	}
	if n.tlsCA != "" {
		opts = append(opts, nats.RootCAs(n.tlsCA))
	}
	if n.tlsCert != "" {
		opts = append(opts, nats.ClientCert(n.tlsCert, n.tlsKey))
	}
	return opts, nil
}

// inbox is the reply prefix: the flag, else the user's own (natsauth
// permissions let a user subscribe only to _INBOX_<user>.>).
func (n *natsFlags) inbox() string {
	if n.inboxPrefix != "" {
		return n.inboxPrefix
	}
	if n.user != "" {
		return natsauth.InboxPrefix(n.user)
	}
	return ""
}

// dial connects to url with the flags' credentials and TLS settings.
func (n *natsFlags) dial(url, name string, log zerolog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := n.options()
	if err != nil {
		return nil, nil, err
	}
	nc, js, err := connect(url, name, "", log, append(opts, extra...)...)
	if err != nil && natsConfigError(err) && (n.user != "" || n.creds != "") {
		who := "user " + n.user
		if n.creds != "" {
			who = "credentials " + n.creds
		}
		return nil, nil, fmt.Errorf("%w: NATS refused the login with %s (check --nats-user and $%s or --nats-password-file, or --nats-creds)", err, who, envNATSPassword)
	}
	return nc, js, err
}

// connect opens a NATS connection that reconnects forever: processors
// outlive server restarts and cluster node failures. Commands with
// natsFlags use natsFlags.dial, which adds the user, TLS and inbox options.
func connect(url, name, creds string, log zerolog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("nats disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info().Str("server", c.ConnectedUrlRedacted()).Msg("nats reconnected") }),
		// Permission violations arrive asynchronously: log them, they mean
		// the permission table and the code disagree.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Error().Err(err).Msg("nats error")
		}),
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, nats.ErrAuthorization):
			hint = " (the server requires a login: --nats-user with $" + envNATSPassword + ", or --nats-creds)"
		case errors.Is(err, nats.ErrNoServers), strings.Contains(err.Error(), "connection refused"):
			hint = " (is `eyeflow up` or a NATS server listening there? --nats or $EYEFLOW_NATS names the server)"
		}
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w%s", redactURL(url), err, hint)
	}
	// A generous default: object-store reads of large models and API calls
	// on a busy or recovering cluster take longer than the client's 5s.
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}

type storeFlags struct {
	endpoint                     string
	accessKey, secretKey         string
	accessKeyFile, secretKeyFile string
	region                       string
}

func (s *storeFlags) register(fs *flagSet) {
	fs.stringVar(&s.endpoint, "s3", "", "S3 endpoint URL (e.g. http://minio:9000) instead of the JetStream object store")
	fs.stringVar(&s.accessKey, "s3-access-key", "", "S3 access key (prefer the environment or a file)")
	fs.secretVar(&s.secretKey, "s3-secret-key", "S3 secret key; never logged")
	fs.stringVar(&s.accessKeyFile, "s3-access-key-file", "", "file holding the S3 access key")
	fs.stringVar(&s.secretKeyFile, "s3-secret-key-file", "", "file holding the S3 secret key")
	fs.stringVar(&s.region, "s3-region", "", "S3 region (default: ask the server)")
}

// describe names the store for logs: the S3 endpoint, or the JetStream
// object store.
func (s *storeFlags) describe() string {
	if s.endpoint == "" {
		return "JetStream object store"
	}
	return "S3 at " + redactURL(s.endpoint)
}

func (s *storeFlags) validate() error {
	if s.endpoint == "" {
		return nil
	}
	u, err := url.Parse(s.endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--s3 %q: want http(s)://host:port", s.endpoint)
	}
	ak, sk, err := s.credentials()
	if err != nil {
		return err
	}
	if ak == "" || sk == "" {
		return errors.New("--s3 needs credentials: set EYEFLOW_S3_ACCESS_KEY and EYEFLOW_S3_SECRET_KEY, or the _FILE variants")
	}
	return nil
}

func (s *storeFlags) credentials() (string, string, error) {
	ak, sk := s.accessKey, s.secretKey
	if s.accessKeyFile != "" {
		b, err := os.ReadFile(s.accessKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("--s3-access-key-file: %w", err)
		}
		ak = strings.TrimSpace(string(b))
	}
	if s.secretKeyFile != "" {
		b, err := os.ReadFile(s.secretKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("--s3-secret-key-file: %w", err)
		}
		sk = strings.TrimSpace(string(b))
	}
	return ak, sk, nil
}

// open returns the S3 store when --s3 is set, else the JetStream object store.
func (s *storeFlags) open(js jetstream.JetStream, replicas int) (objstore.Store, error) {
	if s.endpoint == "" {
		return objstore.NewJetStream(js, objstore.WithReplicas(replicas)), nil
	}
	ak, sk, err := s.credentials()
	if err != nil {
		return nil, err
	}
	return objstore.NewS3(objstore.S3Config{Endpoint: s.endpoint, AccessKey: ak, SecretKey: sk, Region: s.region})
}

// checkStore refuses a store that is not the one the deployment's stages
// use (recorded once in the cluster by `eyeflow buckets init` / `eyeflow
// up`), with the reason and the remedy. A check that cannot be made (no
// answer in time, a user without the permission) is reported to warn and
// passes: the record only ever adds a refusal.
func checkStore(ctx context.Context, js jetstream.JetStream, sf *storeFlags, store objstore.Store, warn func(error)) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _, err := deployment.Check(ctx, js, deployment.Target{Store: store, Endpoint: sf.endpoint})
	if err == nil || errors.Is(err, deployment.ErrWrongStore) {
		return err
	}
	if warn != nil {
		warn(fmt.Errorf("could not check the object store against the deployment's: %w", err))
	}
	return nil
}

// proc is what every long-running command shares.
type proc struct {
	log     zerolog.Logger
	reg     *prometheus.Registry
	metrics *stage.Metrics
}

func newProc(log zerolog.Logger) *proc {
	reg := telemetry.NewRegistry()
	return &proc{log: log, reg: reg, metrics: stage.NewMetrics(reg)}
}

// task is one long-running part of a process.
type task struct {
	name string
	run  func(ctx context.Context) error
}

// runTasks runs every task until ctx ends or one fails; then it stops the
// others and waits for them.
func runTasks(ctx context.Context, log zerolog.Logger, tasks ...task) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, t := range tasks {
		wg.Go(func() {
			err := t.run(ctx)
			if err != nil && ctx.Err() == nil {
				log.Error().Err(err).Str("task", t.name).Msg("stopped with an error")
				cancel(fmt.Errorf("%s: %w", t.name, err))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// stageTask runs a processor on the consumer the catalogue declares for
// its stage (the runtime binds it: stage.Run, pipeline.Bind).
func stageTask[In any](js jetstream.JetStream, p stage.Processor[In]) task {
	return task{name: p.Stage, run: func(ctx context.Context) error { return stage.Run(ctx, js, p) }}
}

func nopLogger() zerolog.Logger { return zerolog.Nop() }

// storeClient reaches the object store alone, for commands that only read
// or write objects: the JetStream object store through NATS, or S3. NATS
// is dialled with S3 too, to check the store is the deployment's.
type storeClient struct {
	nats  natsFlags
	store storeFlags
}

func (c *storeClient) register(fs *flagSet) {
	c.nats.register(fs, defaultNATS(), natsClientUsage)
	c.store.register(fs)
}

func (c *storeClient) validate() error {
	if err := c.nats.validate(); err != nil {
		return err
	}
	return c.store.validate()
}

// open connects and checks the store; close releases the connection.
// Warnings (a check that could not be made) go to errOut.
func (c *storeClient) open(ctx context.Context, name string, errOut io.Writer) (store objstore.Store, close func(), err error) {
	close = func() {}
	nc, js, err := c.nats.dial(c.nats.url, "eyeflow-"+name, nopLogger())
	if err != nil {
		if c.store.endpoint == "" {
			return nil, nil, err
		}
		// S3 alone still works; only the check needs NATS.
		fmt.Fprintf(errOut, "eyeflow %s: warning: cannot check that %s is the deployment's object store: %v\n", name, c.store.describe(), err)
	} else {
		close = nc.Close
	}
	store, err = c.store.open(js, 1)
	if err != nil {
		close()
		return nil, nil, err
	}
	if js != nil {
		if err := checkStore(ctx, js, &c.store, store, func(err error) { fmt.Fprintf(errOut, "eyeflow %s: warning: %v\n", name, err) }); err != nil {
			close()
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return store, close, nil
}
