package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// pki is a deployment's certificates, made at test time with certgen.
type pki struct {
	dir string
	ca  certgen.KeyPair
}

// newPKI makes a CA and a server certificate in a temporary directory.
func newPKI(t *testing.T) *pki {
	t.Helper()
	now := time.Now()
	ca, err := certgen.NewCA(now, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), ca: ca}
	p.write(t, "ca", ca)
	srv, err := certgen.NewServerCert(ca, nil, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p.write(t, "server", srv)
	return p
}

func (p *pki) write(t *testing.T, name string, kp certgen.KeyPair) {
	t.Helper()
	key, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.path(name+".crt"), kp.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.path(name+".key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *pki) path(name string) string { return filepath.Join(p.dir, name) }

// client makes a client certificate for name with role, valid now.
func (p *pki) client(t *testing.T, name, role string) tls.Certificate {
	t.Helper()
	kp, err := certgen.NewClientCert(p.ca, certgen.User{Name: name, Role: role}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tlsCert(t, kp)
}

func tlsCert(t *testing.T, kp certgen.KeyPair) tls.Certificate {
	t.Helper()
	key, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(kp.CertPEM(), key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clientTLS is what a well-behaved client uses: TLS 1.3, the deployment's
// CA, the server's name.
func (p *pki) clientTLS(certs ...tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.Cert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		ServerName:   "127.0.0.1",
		Certificates: certs,
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a Server on 127.0.0.1:0 with a fake runner.
type testServer struct {
	*pki
	runner *fakeRunner
	server *Server
	addr   string
	logs   *syncBuffer
	cancel context.CancelFunc
	served chan error
}

// startServer serves on a free loopback port until the test ends; edit may
// change the Config first.
func startServer(t *testing.T, edit func(*Config)) *testServer {
	t.Helper()
	ts := &testServer{pki: newPKI(t), runner: newFakeRunner(), logs: &syncBuffer{}, served: make(chan error, 1)}
	cfg := Config{
		Listen:   "127.0.0.1:0",
		CAFile:   ts.path("ca.crt"),
		CertFile: ts.path("server.crt"),
		KeyFile:  ts.path("server.key"),
		Runner:   ts.runner,
		Logger:   slog.New(slog.NewJSONHandler(ts.logs, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.server, ts.addr = s, s.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel = cancel
	go func() { ts.served <- s.Serve(ctx) }()
	t.Cleanup(func() {
		ts.stop(t)
	})
	return ts
}

// stop shuts the server down and checks Serve returned nil (once).
func (ts *testServer) stop(t *testing.T) {
	t.Helper()
	ts.cancel()
	select {
	case err, ok := <-ts.served:
		if ok && err != nil {
			t.Errorf("Serve: %v", err)
		}
		if ok {
			close(ts.served)
		}
	case <-time.After(30 * time.Second):
		t.Error("Serve did not return 30s after its context ended")
	}
}

// dial connects as a client certificate and returns the Foreman client.
func (ts *testServer) dial(t *testing.T, cfg *tls.Config) (pb.ForemanClient, *grpc.ClientConn) {
	t.Helper()
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewForemanClient(conn), conn
}

// as connects as a fresh certificate for name with role.
func (ts *testServer) as(t *testing.T, name, role string) pb.ForemanClient {
	t.Helper()
	c, _ := ts.dial(t, ts.clientTLS(ts.client(t, name, role)))
	return c
}

// ctx is a context that ends with the test (or after a minute).
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails the test unless err is a status with code.
func wantCode(t *testing.T, what string, err error, code codes.Code) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("%s: error %v is not a gRPC status", what, err)
	}
	if st.Code() != code {
		t.Fatalf("%s: code %v (%q), want %v", what, st.Code(), st.Message(), code)
	}
	return st
}

// watchAll reads a whole WatchJobOutput stream and returns its output
// messages. A stream that ends cleanly must end with exactly one final
// message (the job, at the output's end offset, without data): it is
// checked and left out.
func watchAll(ctx context.Context, c pb.ForemanClient, name string, off int64) ([]*pb.WatchJobOutputResponse, error) {
	msgs, _, err := watchFinal(ctx, c, name, off)
	return msgs, err
}

// watchFinal is watchAll that also returns the stream's final job.
func watchFinal(ctx context.Context, c pb.ForemanClient, name string, off int64) ([]*pb.WatchJobOutputResponse, *pb.Job, error) {
	stream, err := c.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: name, Offset: off})
	if err != nil {
		return nil, nil, err
	}
	var msgs []*pb.WatchJobOutputResponse
	for {
		m, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return msgs, nil, err
			}
			if len(msgs) == 0 || msgs[len(msgs)-1].GetJob() == nil {
				return msgs, nil, fmt.Errorf("the stream of %s ended without its final message: %v", name, msgs)
			}
			final := msgs[len(msgs)-1]
			msgs = msgs[:len(msgs)-1]
			if len(final.Data) != 0 || final.Offset != final.GetJob().GetStatus().GetOutputBytes() ||
				!refersTo(final.GetJob(), name) || final.GetJob().GetStatus().GetState() == pb.State_STATE_RUNNING {
				return msgs, nil, fmt.Errorf("the final message of %s's stream is malformed: %v", name, final)
			}
			for _, m := range msgs {
				if m.GetJob() != nil {
					return msgs, nil, fmt.Errorf("a job in a message before the last: %v", m)
				}
			}
			return msgs, final.GetJob(), nil
		}
		msgs = append(msgs, m)
	}
}

// refersTo reports whether the reference name (jobs/ID, an id, an id
// prefix or a display name) can mean job.
func refersTo(job *pb.Job, name string) bool {
	id := strings.TrimPrefix(job.GetName(), namePrefix)
	ref := strings.TrimPrefix(name, namePrefix)
	return strings.HasPrefix(id, ref) || job.GetDisplayName() == name
}
