package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"

	foremanv1alpha1 "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// server is a `telehandler serve` this run started, with throwaway
// certificates, its own state directory and its own cgroup parent.
type server struct {
	d            *daemon
	addr         string
	certs        string // directory with ca.crt, server.*, bench.* (admin)
	cgroupParent string
	log          string
	env          []string // TELEHANDLER_* for CLI processes
}

const benchUser = "bench"

func startServer(ctx context.Context, e *env, bin, cgroupParent string, outputCap int64) (*server, error) {
	certs := e.path("certs")
	if err := runQuiet(ctx, bin, "certgen", "--out", certs, "--user", benchUser+":admin"); err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	// Jobs see the host read-only but not its /tmp (theirs is private):
	// the fan-out data is shared with them through a read-only bind.
	shared := e.path("shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{
		addr:         net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		certs:        certs,
		cgroupParent: cgroupParent,
		log:          e.path("server.log"),
	}
	s.env = append(os.Environ(),
		"TELEHANDLER_ADDR="+s.addr,
		"TELEHANDLER_CA="+filepath.Join(certs, "ca.crt"),
		"TELEHANDLER_CERT="+filepath.Join(certs, benchUser+".crt"),
		"TELEHANDLER_KEY="+filepath.Join(certs, benchUser+".key"),
		// The CLI's TLS session cache is the run's own: the first CLI
		// command makes a full handshake, the next resume its session, as
		// a user's or a script's commands do.
		"XDG_CACHE_HOME="+e.path("cache"),
	)
	cmd := exec.Command(bin, "serve",
		"--listen", s.addr,
		"--state-dir", e.path("state"),
		"--ca", filepath.Join(certs, "ca.crt"),
		"--cert", filepath.Join(certs, "server.crt"),
		"--key", filepath.Join(certs, "server.key"),
		"--cgroup-parent", cgroupParent,
		"--output-cap", strconv.FormatInt(outputCap, 10),
		"--bind-ro", shared+":"+shared,
	)
	if s.d, err = startDaemon("telehandler serve", cmd, s.log); err != nil {
		return nil, err
	}
	e.defer_(s.stop)
	conn, err := s.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	health := grpc_health_v1.NewHealthClient(conn)
	err = waitFor(ctx, s.d, 20*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := health.Check(cctx, &grpc_health_v1.HealthCheckRequest{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("telehandler serve: %w (see %s)", err, s.log)
	}
	return s, nil
}

// stop shuts the server down with SIGTERM (it stops every job and removes
// its cgroups) and then removes whatever it left under its cgroup parent,
// reporting it.
func (s *server) stop() {
	if !s.d.stop(30 * time.Second) {
		logf("telehandler serve: no clean shutdown (see %s)", s.log)
	}
	if n, pids, err := removeCgroupTree(s.cgroupParent); n > 0 || pids > 0 || err != nil {
		logf("telehandler serve left %d cgroups and %d processes under %s (%v)", n, pids, s.cgroupParent, err)
	}
}

func (s *server) pid() int { return s.d.pid() }

// dial opens a new mTLS gRPC connection as the bench admin and connects it
// now, so that the handshake is not part of what is measured next.
func (s *server) dial() (*grpc.ClientConn, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.certs, benchUser+".crt"), filepath.Join(s.certs, benchUser+".key"))
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(s.certs, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA: no certificate in ca.crt")
	}
	creds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   "127.0.0.1",
		MinVersion:   tls.VersionTLS13,
	})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.addr, err)
	}
	conn.Connect()
	return conn, nil
}

// cli returns a telehandler CLI command pointed at the server.
func (s *server) cli(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = s.env
	return cmd
}

// drain reads a job's output from offset 0 to the end of the stream,
// checking that the pieces are contiguous, and passes each piece to sink
// (nil = discard). It returns the number of bytes received.
func drain(ctx context.Context, c foremanv1alpha1.ForemanClient, name string, sink func([]byte)) (int64, error) {
	stream, err := c.WatchJobOutput(ctx, &foremanv1alpha1.WatchJobOutputRequest{Name: name})
	if err != nil {
		return 0, fmt.Errorf("watch %s: %w", name, err)
	}
	var n int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("watch %s at byte %d: %w", name, n, err)
		}
		if msg.GetOffset() != n {
			return n, fmt.Errorf("watch %s: piece at offset %d, expected %d", name, msg.GetOffset(), n)
		}
		if sink != nil {
			sink(msg.GetData())
		}
		n += int64(len(msg.GetData()))
	}
}
