package server

import (
	"context"
	"crypto/tls"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// sessionClient is a client that keeps its TLS sessions, as the CLI does:
// each call goes over a new connection, which resumes the session of the
// one before when the server lets it.
type sessionClient struct {
	ts  *testServer
	cfg *tls.Config
}

func newSessionClient(ts *testServer, cert tls.Certificate) *sessionClient {
	cfg := ts.clientTLS(cert)
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return &sessionClient{ts: ts, cfg: cfg}
}

// call starts a job named name over a new connection; it returns the
// job's owner, whether the connection resumed a session, and the error.
func (c *sessionClient) call(t *testing.T, name string) (owner string, resumed bool, err error) {
	t.Helper()
	conn, err := grpc.NewClient(c.ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(c.cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var p peer.Peer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := pb.NewForemanClient(conn).StartJob(ctx, &pb.StartJobRequest{Command: "/bin/true", DisplayName: name}, grpc.Peer(&p))
	if info, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		resumed = info.State.DidResume
	}
	return resp.GetJob().GetOwner(), resumed, err
}

// TestSessionResumption: a second connection resumes the first one's
// session, as the same identity, and nothing else does: another client's
// certificate gets its own identity, a reload (new ticket keys) forces a
// full handshake, and so does a session older than sessionMaxAge.
func TestSessionResumption(t *testing.T) {
	ts := startServer(t, nil)
	alice := newSessionClient(ts, ts.client(t, "alice", certgen.RoleUser))
	if owner, resumed, err := alice.call(t, "a1"); err != nil || resumed || owner != "alice" {
		t.Fatalf("first call: owner %q, resumed %v, %v; want alice, a full handshake", owner, resumed, err)
	}
	owner, resumed, err := alice.call(t, "a2")
	if err != nil || !resumed || owner != "alice" {
		t.Fatalf("second call: owner %q, resumed %v, %v; want alice, resumed", owner, resumed, err)
	}
	// A resumed session's new ticket resumes too (the CLI keeps the last).
	if _, resumed, err := alice.call(t, "a3"); err != nil || !resumed {
		t.Fatalf("third call: resumed %v, %v", resumed, err)
	}

	// bob's sessions are his own: his first call is a full handshake.
	bob := newSessionClient(ts, ts.client(t, "bob", certgen.RoleUser))
	if owner, resumed, err := bob.call(t, "b1"); err != nil || resumed || owner != "bob" {
		t.Fatalf("bob: owner %q, resumed %v, %v", owner, resumed, err)
	}

	// A reload makes new ticket keys: no session from before it resumes.
	if err := ts.server.Reload(); err != nil {
		t.Fatal(err)
	}
	if owner, resumed, err := alice.call(t, "a4"); err != nil || resumed || owner != "alice" {
		t.Fatalf("after a reload: owner %q, resumed %v, %v; want a full handshake", owner, resumed, err)
	}
	if _, resumed, err := alice.call(t, "a5"); err != nil || !resumed {
		t.Fatalf("after a reload, again: resumed %v, %v; want resumed", resumed, err)
	}

	// Past sessionMaxAge after its full handshake a session does not resume,
	// however recently it was resumed.
	old := sessionMaxAge()
	t.Cleanup(func() { sessionMaxAgeNanos.Store(int64(old)) })
	sessionMaxAgeNanos.Store(int64(time.Nanosecond))
	if _, resumed, err := alice.call(t, "a6"); err != nil || resumed {
		t.Fatalf("a session past its age: resumed %v, %v; want a full handshake", resumed, err)
	}
}

// TestResumedSessionDenied: a certificate denied by a reload is refused on
// a connection that resumed its session before the reload (every call is
// checked), and cannot resume after it.
func TestResumedSessionDenied(t *testing.T) {
	deny := ""
	ts := startServer(t, func(c *Config) {
		deny = c.CAFile + ".deny"
		if err := os.WriteFile(deny, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		c.DenyListFile = deny
	})
	kp, err := certgen.NewClientCert(ts.ca, certgen.User{Name: "alice"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	alice := newSessionClient(ts, tlsCert(t, kp))
	if _, _, err := alice.call(t, "a1"); err != nil {
		t.Fatal(err)
	}
	// An open resumed connection, then the reload that denies alice.
	conn, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(credentials.NewTLS(alice.cfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewForemanClient(conn)
	var p peer.Peer
	if _, err := c.ListJobs(testCtx(t), &pb.ListJobsRequest{}, grpc.Peer(&p)); err != nil {
		t.Fatal(err)
	}
	if !p.AuthInfo.(credentials.TLSInfo).State.DidResume {
		t.Fatal("the connection did not resume the session")
	}
	if err := os.WriteFile(deny, []byte("serial="+certgen.SerialHex(kp.Cert.SerialNumber)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ts.server.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err = c.ListJobs(testCtx(t), &pb.ListJobsRequest{})
	wantCode(t, "a call on the resumed connection after the deny", err, codes.PermissionDenied)
	_, resumed, err := alice.call(t, "a2")
	wantCode(t, "a new connection after the deny", err, codes.PermissionDenied)
	if resumed {
		t.Error("a session from before the reload resumed")
	}
}

// TestResumedSessionNewCA: after a reload with another CA, the old
// certificate's session does not resume (its handshake then fails: the
// certificate is no longer trusted).
func TestResumedSessionNewCA(t *testing.T) {
	ts := startServer(t, nil)
	alice := newSessionClient(ts, ts.client(t, "alice", certgen.RoleUser))
	if _, _, err := alice.call(t, "a1"); err != nil {
		t.Fatal(err)
	}
	if _, resumed, err := alice.call(t, "a2"); err != nil || !resumed {
		t.Fatalf("second call: resumed %v, %v", resumed, err)
	}
	// The new CA signs a new server certificate; the client trusts both
	// CAs, so only the server's refusal of alice's certificate is tested.
	oldCA := ts.ca
	ca, err := certgen.NewCA(time.Now(), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts.ca = ca
	ts.write(t, "ca", ca)
	srv, err := certgen.NewServerCert(ca, nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts.write(t, "server", srv)
	if err := ts.server.Reload(); err != nil {
		t.Fatal(err)
	}
	alice.cfg.RootCAs.AddCert(ca.Cert)
	_, resumed, err := alice.call(t, "a3")
	if err == nil || resumed {
		t.Errorf("alice's certificate of the old CA %v after the CA changed: resumed %v, error %v; want refused", oldCA.Cert.Subject, resumed, err)
	}
}

// TestResumedSessionExpiredCertificate: a session does not outlive the
// client certificate it was made with.
func TestResumedSessionExpiredCertificate(t *testing.T) {
	ts := startServer(t, nil)
	// certgen backdates NotBefore; NotAfter is now + validity.
	kp, err := certgen.NewClientCert(ts.ca, certgen.User{Name: "alice"}, time.Now(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	alice := newSessionClient(ts, tlsCert(t, kp))
	if _, _, err := alice.call(t, "a1"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(kp.Cert.NotAfter) + 1100*time.Millisecond)
	if _, resumed, err := alice.call(t, "a2"); err == nil || resumed {
		t.Errorf("a session of an expired certificate: resumed %v, error %v; want refused", resumed, err)
	}
}
