package bus

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// ServerOptions configure an embedded nats-server.
type ServerOptions struct {
	// Name identifies the server (and its JetStream node in a cluster).
	Name string
	// Listen is the client address, host:port; port 0 or -1 picks a free one.
	Listen string
	// StoreDir holds JetStream's file store: streams, KV and objects.
	StoreDir string
	// Cluster, when ClusterListen is set, joins a JetStream cluster.
	ClusterName   string
	ClusterListen string
	Routes        []string
	// MaxPayload bounds one message; 0 keeps the server default (1 MiB).
	MaxPayload int32
	// Users, when set, makes every client log in as one of them, with its
	// permissions (security/natsauth renders eyeflow's; LoadUsers reads a
	// rendered file). Empty: no authentication, the embedded default.
	Users []*server.User
	// TLSCert and TLSKey (PEM files) make the client port require TLS;
	// TLSCA, when also set, requires and verifies client certificates.
	TLSCert, TLSKey, TLSCA string
	Logger                 zerolog.Logger
}

// Server is a running embedded nats-server with JetStream.
type Server struct {
	*server.Server
}

// StartServer starts nats-server in-process with JetStream on opts.StoreDir
// and waits until it accepts clients.
func StartServer(opts ServerOptions) (*Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("embedded nats: store dir is required")
	}
	host, port, err := splitHostPort(opts.Listen, "127.0.0.1", -1)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen %q: %w", opts.Listen, err)
	}
	so := &server.Options{
		ServerName:             opts.Name,
		Host:                   host,
		Port:                   port,
		JetStream:              true,
		StoreDir:               opts.StoreDir,
		NoSigs:                 true,
		MaxPayload:             opts.MaxPayload,
		DisableJetStreamBanner: true,
	}
	if len(opts.Users) > 0 {
		so.Users = opts.Users
	}
	if opts.TLSCert != "" || opts.TLSKey != "" || opts.TLSCA != "" {
		if opts.TLSCert == "" || opts.TLSKey == "" {
			return nil, errors.New("embedded nats: TLS needs both a certificate and a key")
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: opts.TLSCert, KeyFile: opts.TLSKey, CaFile: opts.TLSCA, Verify: opts.TLSCA != "",
		})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: tls: %w", err)
		}
		so.TLSConfig, so.TLS, so.TLSVerify = tc, true, opts.TLSCA != ""
		so.TLSTimeout = 5
	}
	if opts.ClusterListen != "" {
		ch, cp, err := splitHostPort(opts.ClusterListen, "127.0.0.1", -1)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: cluster listen %q: %w", opts.ClusterListen, err)
		}
		so.Cluster = server.ClusterOpts{Name: opts.ClusterName, Host: ch, Port: cp}
		for _, r := range opts.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("embedded nats: route %q: %w", r, err)
			}
			so.Routes = append(so.Routes, u)
		}
	}
	s, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	s.SetLoggerV2(serverLogger{opts.Logger.With().Str("component", "nats-server").Logger()}, false, false, false)
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready for connections after 30s")
	}
	return &Server{Server: s}, nil
}

// Stop shuts the server down and waits for it to finish.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

func splitHostPort(addr, defHost string, defPort int) (string, int, error) {
	if addr == "" {
		return defHost, defPort, nil
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	if h == "" {
		h = defHost
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	if port == 0 {
		port = -1 // nats-server's "pick a free port"
	}
	return h, port, nil
}

// serverLogger routes nats-server's logs into zerolog.
type serverLogger struct{ l zerolog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Info().Msgf(format, v...) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn().Msgf(format, v...) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error().Msgf(format, v...) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error().Msgf(format, v...) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug().Msgf(format, v...) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Trace().Msgf(format, v...) }

// LoadUsers reads the users and permissions of a nats-server configuration
// file (an authorization block, as `eyeflow nats-config` writes it).
// $VARIABLE references are resolved from the environment; a missing one is
// an error, so no user is ever left without its password.
func LoadUsers(path string) ([]*server.User, error) {
	o, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("nats auth config %s: %w", path, err)
	}
	if len(o.Users) == 0 {
		return nil, fmt.Errorf("nats auth config %s: no users (want an authorization { users = [...] } block)", path)
	}
	for _, u := range o.Users {
		if u.Password == "" {
			return nil, fmt.Errorf("nats auth config %s: user %q has an empty password", path, u.Username)
		}
	}
	return o.Users, nil
}
