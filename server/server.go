// Package server is Telehandler's gRPC front: it serves the Foreman API over
// mutual TLS 1.3, derives each caller's identity and role from the verified
// client certificate, authorizes every call (a user sees only its own jobs,
// an admin sees all), validates requests, and maps errors to gRPC status
// codes in one place. It owns no job state: a JobRunner (the jobrunner
// package) does the work. It never touches cgroups or execs anything.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/sandbox"
)

// Defaults for the zero values of Config.
const (
	DefaultListen          = "127.0.0.1:7443"
	DefaultMaxJobs         = 1000
	DefaultShutdownTimeout = 30 * time.Second
	// maxRecvMsgSize bounds a request; StartJob's own checks allow 1 MiB
	// of command line, so this leaves room and refuses anything absurd.
	maxRecvMsgSize = 4 << 20
)

// Config configures a Server. New validates it and fills the defaults.
type Config struct {
	// Listen is the TCP address to listen on ("" = DefaultListen).
	Listen string
	// CAFile is the PEM CA that client certificates must chain to;
	// CertFile and KeyFile are the server's certificate and key. Required.
	// Reload reads them again.
	CAFile, CertFile, KeyFile string
	// DenyListFile, when set, lists client certificates refused although
	// they verify (ParseDenyList's format). Reload reads it again.
	DenyListFile string
	// Runner runs the jobs. Required.
	Runner JobRunner
	// DefaultLimits apply to the fields a StartJob request leaves zero; a
	// zero field here means sandbox.DefaultLimits' value.
	DefaultLimits sandbox.Limits
	// MaxLimits are the most a request may ask for; a zero field means
	// DefaultMaxLimits' value. Every default must be within the maxima.
	MaxLimits sandbox.Limits
	// MaxJobs is the most jobs that may run at once (0 = DefaultMaxJobs);
	// StartJob beyond it is ResourceExhausted.
	MaxJobs int
	// RunAsUID and RunAsGID are the credentials jobs run with; nil means
	// the server's own (root). Set both or neither.
	RunAsUID, RunAsGID *uint32
	// Logger receives one structured line per call (nil = discard).
	Logger *slog.Logger
	// ShutdownTimeout bounds stopping the jobs and draining the calls
	// when Serve's context ends (0 = DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
}

// Server serves the Foreman API. Make one with New, run it with Serve.
type Server struct {
	cfg    Config
	log    *slog.Logger
	lis    net.Listener
	grpc   *grpc.Server
	health *health.Server
	// files and tls are what Reload reads and replaces; every handshake
	// and call loads the current state.
	files tlsFiles
	tls   atomic.Pointer[tlsState]
}

// New validates cfg, loads the certificates and listens on cfg.Listen. The
// caller must call Serve (which closes the listener when it returns).
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, health: health.NewServer(),
		files: tlsFiles{ca: cfg.CAFile, cert: cfg.CertFile, key: cfg.KeyFile, deny: cfg.DenyListFile}}
	st, err := s.files.load()
	if err != nil {
		return nil, err
	}
	s.tls.Store(st)
	s.logState("loaded certificates and deny list", st)
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(dynamicTLS(&s.tls))),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.UnaryInterceptor(s.unaryInterceptor),
		grpc.StreamInterceptor(s.streamInterceptor),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
	)
	pb.RegisterForemanServer(s.grpc, &foreman{
		runner:        cfg.Runner,
		log:           cfg.Logger,
		defaultLimits: cfg.DefaultLimits,
		maxLimits:     cfg.MaxLimits,
		maxJobs:       cfg.MaxJobs,
		uid:           cfg.RunAsUID,
		gid:           cfg.RunAsGID,
	})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	s.lis, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	return s, nil
}

// validate checks c and fills its defaults.
func (c *Config) validate() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.CAFile == "" || c.CertFile == "" || c.KeyFile == "" {
		return errors.New("server: the CA, certificate and key files are required")
	}
	if c.Runner == nil {
		return errors.New("server: a Runner is required")
	}
	if (c.RunAsUID == nil) != (c.RunAsGID == nil) {
		return errors.New("server: set both RunAsUID and RunAsGID, or neither")
	}
	if c.MaxJobs < 0 {
		return fmt.Errorf("server: MaxJobs %d is negative", c.MaxJobs)
	}
	if c.MaxJobs == 0 {
		c.MaxJobs = DefaultMaxJobs
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.DefaultLimits = fillLimits(c.DefaultLimits, sandbox.DefaultLimits())
	c.MaxLimits = fillLimits(c.MaxLimits, DefaultMaxLimits())
	if err := checkLimits(c.DefaultLimits, c.MaxLimits); err != nil {
		return fmt.Errorf("server: default %w", err)
	}
	if err := c.DefaultLimits.Validate(); err != nil {
		return fmt.Errorf("server: default limits: %w", err)
	}
	return nil
}

// serverTLS is TLS 1.3 only, with a client certificate required and
// verified against the CA (Go also checks it has the clientAuth usage). Go's
// default TLS 1.3 cipher suites and key exchanges are kept.
func serverTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("server: load certificate: %w", err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("server: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("server: %s holds no PEM certificate", caFile)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Serve serves until ctx ends, then shuts down: it stops accepting
// connections and calls, stops every job and removes its cgroup
// (Runner.Shutdown), lets the remaining calls (watchers of the now ended
// jobs) finish, and returns. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(pb.Foreman_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	s.log.Info("serving", "addr", s.lis.Addr().String(), "max_jobs", s.cfg.MaxJobs)

	served := make(chan error, 1)
	go func() { served <- s.grpc.Serve(s.lis) }()

	select {
	case err := <-served:
		// The listener failed; jobs must not outlive the server.
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		return errors.Join(fmt.Errorf("server: %w", err), s.cfg.Runner.Shutdown(sctx))
	case <-ctx.Done():
	}

	s.log.Info("shutting down: stopping jobs")
	s.health.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		s.grpc.GracefulStop() // no new connections or calls from here on
		close(drained)
	}()
	err := s.cfg.Runner.Shutdown(sctx)
	select {
	case <-drained:
	case <-sctx.Done():
		s.grpc.Stop()
		<-drained
	}
	<-served
	if err != nil {
		s.log.Error("shutdown", "error", err.Error())
		return fmt.Errorf("server: shutdown: %w", err)
	}
	s.log.Info("shut down")
	return nil
}
