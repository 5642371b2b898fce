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
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/internal/watchcodec"
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

// Defaults of the fair-share bounds (zero fields of Config). SECURITY.md
// ("Fair shares") says what each defends against.
const (
	// DefaultMaxConns: connections open at once, TLS handshakes included.
	DefaultMaxConns = 1024
	// DefaultMaxConnsPerIP: of them from one source address (one IPv6
	// /64), authenticated or not: 8 sources are needed to fill
	// DefaultMaxConns, and one machine may still open a hundred `watch`
	// connections (make bench does).
	DefaultMaxConnsPerIP = 128
	// DefaultMaxStreamsPerConn: concurrent calls on one connection, the
	// HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS the RFC recommends at least.
	DefaultMaxStreamsPerConn = 100
	// DefaultMaxWatchersPerUser: concurrent WatchJobOutput streams of one
	// identity, over all its connections.
	DefaultMaxWatchersPerUser = 128
	// DefaultMaxHeaderBytes: the most header bytes of one call (HTTP/2
	// SETTINGS_MAX_HEADER_LIST_SIZE); our calls send well under 1 KiB.
	DefaultMaxHeaderBytes = 16 << 10
	// DefaultHandshakeTimeout: a connection must complete TLS and the
	// HTTP/2 preface within it, or it is closed.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultIdleTimeout: a connection without a call for that long is
	// closed (the client reconnects when it needs to).
	DefaultIdleTimeout = time.Minute
	// keepaliveTime and keepaliveTimeout: a connection silent for
	// keepaliveTime is pinged and closed unless it answers within
	// keepaliveTimeout, so that a vanished client's streams free their
	// slots. keepaliveMinTime is the most often a client may ping (it
	// gets GOAWAY otherwise); the CLI pings every 30 s.
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
	keepaliveMinTime = 10 * time.Second
)

// DefaultMaxJobsPerUser is the per-user cap when Config sets none: a
// quarter of maxJobs, rounded up, so that one user never takes more than a
// quarter of the server and at least four users can run their full share
// at once.
func DefaultMaxJobsPerUser(maxJobs int) int { return max(1, (maxJobs+3)/4) }

// DefaultAdminReservedJobs is how many of maxJobs are kept for admins when
// Config says nothing: a twentieth, at least one, none when maxJobs is 1
// (users need a slot too).
func DefaultAdminReservedJobs(maxJobs int) int {
	if maxJobs < 2 {
		return 0
	}
	return max(1, maxJobs/20)
}

// NoAdminReserve in Config.AdminReservedJobs keeps no job slot for admins.
const NoAdminReserve = -1

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
	// MaxJobsPerUser is the most jobs one user (a certificate's common
	// name with the user role) may run at once (0 =
	// DefaultMaxJobsPerUser(MaxJobs)). Admins have no per-user cap.
	MaxJobsPerUser int
	// AdminReservedJobs of MaxJobs are for admins only: jobs of users
	// start only while fewer than MaxJobs-AdminReservedJobs jobs run in all
	// (admins' jobs included), admins' while fewer than MaxJobs run. 0 =
	// DefaultAdminReservedJobs(MaxJobs); NoAdminReserve = none.
	AdminReservedJobs int
	// MaxNetworkJobsPerUser is the most networked jobs (start --network)
	// one identity, admins included, may run at once (0 = no cap of its
	// own).
	MaxNetworkJobsPerUser int

	// Bounds per client; zero = the Default* constant of the same name.
	// MaxConns is clamped to half the open-files limit.
	MaxConns, MaxConnsPerIP, MaxStreamsPerConn, MaxWatchersPerUser, MaxHeaderBytes int
	HandshakeTimeout, IdleTimeout                                                  time.Duration
	// RunAsUID and RunAsGID are the credentials jobs run with; nil means
	// the server's own (root, with Docker's default capabilities only) or,
	// with DynamicUsers, a uid of the job's own. Set both or neither.
	RunAsUID, RunAsGID *uint32
	// DynamicUsers runs every job as a uid of its own
	// (sandbox.Spec.DynamicUser); RunAsUID and RunAsGID must be nil.
	DynamicUsers bool
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
	lis    *connLimiter
	grpc   *grpc.Server
	health *health.Server
	// files and tls are what Reload reads and replaces; every handshake
	// and call loads the current state.
	files tlsFiles
	tls   atomic.Pointer[tlsState]
	// streams are the streaming calls in progress (reload.go).
	streamsMu sync.Mutex
	streams   map[*openStream]struct{}
}

// New validates cfg, loads the certificates and listens on cfg.Listen. The
// caller must call Serve (which closes the listener when it returns).
func New(cfg Config) (*Server, error) {
	clamps, err := cfg.validate(readHost())
	if err != nil {
		return nil, err
	}
	logClamps(cfg.Logger, clamps)
	s := &Server{cfg: cfg, log: cfg.Logger, health: health.NewServer(),
		files: tlsFiles{ca: cfg.CAFile, cert: cfg.CertFile, key: cfg.KeyFile, deny: cfg.DenyListFile}}
	st, err := s.files.load()
	if err != nil {
		return nil, err
	}
	s.tls.Store(st)
	s.logState("loaded certificates and deny list", st)
	s.grpc = grpc.NewServer(append(transportOptions(),
		grpc.Creds(credentials.NewTLS(dynamicTLS(&s.tls))),
		// WatchJobOutput's chunks go to the wire without a copy; every
		// other message through grpc-go's proto codec (watchcodec).
		grpc.ForceServerCodecV2(watchcodec.Codec{}),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.UnaryInterceptor(s.unaryInterceptor),
		grpc.StreamInterceptor(s.streamInterceptor),
		// The fair-share bounds of a connection (SECURITY.md).
		grpc.ConnectionTimeout(cfg.HandshakeTimeout),
		grpc.MaxConcurrentStreams(uint32(cfg.MaxStreamsPerConn)),
		grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderBytes)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: cfg.IdleTimeout,
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
		}),
	)...)
	pb.RegisterForemanServer(s.grpc, &foreman{
		runner:         cfg.Runner,
		log:            cfg.Logger,
		defaultLimits:  cfg.DefaultLimits,
		maxLimits:      cfg.MaxLimits,
		maxJobs:        cfg.MaxJobs,
		maxJobsPerUser: cfg.MaxJobsPerUser,
		adminReserved:  max(cfg.AdminReservedJobs, 0),
		maxNetJobs:     cfg.MaxNetworkJobsPerUser,
		maxWatchers:    cfg.MaxWatchersPerUser,
		uid:            cfg.RunAsUID,
		gid:            cfg.RunAsGID,
		dynamicUsers:   cfg.DynamicUsers,
	})
	healthpb.RegisterHealthServer(s.grpc, s.health)
	registerReflection(s.grpc)

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.lis = limitConns(lis, cfg.MaxConns, cfg.MaxConnsPerIP, keepaliveTimeout, cfg.Logger)
	return s, nil
}

// validate checks c and fills its defaults; it lowers the maxima to what
// h has and returns what it lowered.
func (c *Config) validate(h host) ([]clamp, error) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.CAFile == "" || c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("server: the CA, certificate and key files are required")
	}
	if c.Runner == nil {
		return nil, errors.New("server: a Runner is required")
	}
	if (c.RunAsUID == nil) != (c.RunAsGID == nil) {
		return nil, errors.New("server: set both RunAsUID and RunAsGID, or neither")
	}
	if c.DynamicUsers && c.RunAsUID != nil {
		return nil, errors.New("server: DynamicUsers and RunAsUID exclude each other")
	}
	if c.MaxJobs < 0 {
		return nil, fmt.Errorf("server: MaxJobs %d is negative", c.MaxJobs)
	}
	if c.MaxJobs == 0 {
		c.MaxJobs = DefaultMaxJobs
	}
	if err := c.fillShares(); err != nil {
		return nil, err
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.DefaultLimits = JobDefaultLimits(c.DefaultLimits)
	c.MaxLimits = fillLimits(c.MaxLimits, DefaultMaxLimits())
	clamps := c.clampToHost(h)
	if err := checkLimits(c.DefaultLimits, c.MaxLimits); err != nil {
		return nil, fmt.Errorf("server: default %w", err)
	}
	if err := c.DefaultLimits.Validate(); err != nil {
		return nil, fmt.Errorf("server: default limits: %w", err)
	}
	return clamps, nil
}

// fillShares checks the per-user and per-client bounds and fills their
// defaults; MaxJobs is set.
func (c *Config) fillShares() error {
	if c.MaxJobsPerUser == 0 {
		c.MaxJobsPerUser = DefaultMaxJobsPerUser(c.MaxJobs)
	}
	if c.MaxJobsPerUser < 0 || c.MaxJobsPerUser > c.MaxJobs {
		return fmt.Errorf("server: max jobs per user %d is outside [1, max jobs %d]", c.MaxJobsPerUser, c.MaxJobs)
	}
	switch {
	case c.AdminReservedJobs == 0:
		c.AdminReservedJobs = DefaultAdminReservedJobs(c.MaxJobs)
	case c.AdminReservedJobs == NoAdminReserve:
	case c.AdminReservedJobs < 0 || c.AdminReservedJobs >= c.MaxJobs:
		return fmt.Errorf("server: %d jobs reserved for admins leave users none of max jobs %d", c.AdminReservedJobs, c.MaxJobs)
	}
	for _, b := range []struct {
		name string
		v    *int
		def  int
	}{
		{"max connections", &c.MaxConns, DefaultMaxConns},
		{"max connections per IP", &c.MaxConnsPerIP, DefaultMaxConnsPerIP},
		{"max streams per connection", &c.MaxStreamsPerConn, DefaultMaxStreamsPerConn},
		{"max watchers per user", &c.MaxWatchersPerUser, DefaultMaxWatchersPerUser},
		{"max header bytes", &c.MaxHeaderBytes, DefaultMaxHeaderBytes},
	} {
		if *b.v < 0 || *b.v > 1<<30 {
			return fmt.Errorf("server: %s %d is outside [1, 2^30]", b.name, *b.v)
		}
		if *b.v == 0 {
			*b.v = b.def
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"handshake timeout", &c.HandshakeTimeout, DefaultHandshakeTimeout},
		{"idle timeout", &c.IdleTimeout, DefaultIdleTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("server: %s %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
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
	c := s.cfg
	s.log.Info("serving", "addr", s.lis.Addr().String(), "max_jobs", c.MaxJobs,
		"max_jobs_per_user", c.MaxJobsPerUser, "admin_reserved_jobs", max(c.AdminReservedJobs, 0),
		"max_conns", c.MaxConns, "max_conns_per_ip", c.MaxConnsPerIP, "max_streams_per_conn", c.MaxStreamsPerConn,
		"max_watchers_per_user", c.MaxWatchersPerUser, "max_header_bytes", c.MaxHeaderBytes,
		"handshake_timeout", c.HandshakeTimeout, "idle_timeout", c.IdleTimeout,
		"max_pids", c.MaxLimits.Pids, "max_memory", c.MaxLimits.MemoryBytes)

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
