package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// handmadeClient is a client certificate signed by the CA whose subject has
// the given OUs (certgen itself always writes exactly one valid role).
func (p *pki) handmadeClient(t *testing.T, name string, ou []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: ou},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Cert, &key.PublicKey, p.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSRefusals connects to a real listener with certificates that must
// not get in. Each is refused during the TLS handshake (the raw TLS check
// reads the server's alert), no RPC reaches the service, and the server
// keeps serving a valid client afterwards.
func TestTLSRefusals(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	now := time.Now()

	other := newPKI(t) // another deployment's CA
	expired, err := certgen.NewClientCert(ts.ca, certgen.User{Name: "alice"}, now.Add(-2*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverOnly, err := certgen.NewServerCert(ts.ca, nil, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tls12 := ts.clientTLS(ts.client(t, "alice", certgen.RoleUser))
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	cases := []struct {
		name string
		cfg  *tls.Config
		// want is part of the error the client sees on the raw connection.
		want string
	}{
		{"no client certificate", ts.clientTLS(), "certificate required"},
		{"certificate from another CA", ts.clientTLS(other.client(t, "alice", certgen.RoleUser)), "unknown certificate authority"},
		{"expired certificate", ts.clientTLS(tlsCert(t, expired)), "expired certificate"},
		{"server-only certificate as a client", ts.clientTLS(tlsCert(t, serverOnly)), "bad certificate"},
		{"TLS 1.2 client", tls12, "protocol version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := rawTLS(ts.addr, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("raw TLS: error %v, want one containing %q", err, tc.want)
			}
			c, _ := ts.dial(t, tc.cfg)
			_, err = c.ListJobs(ctx, &pb.ListJobsRequest{})
			wantCode(t, "ListJobs", err, codes.Unavailable)
			_, err = c.StartJob(ctx, &pb.StartJobRequest{Command: "true"})
			wantCode(t, "StartJob", err, codes.Unavailable)
		})
	}
	if n := len(ts.runner.List()); n != 0 {
		t.Errorf("%d jobs started by refused clients", n)
	}
	// The server still serves a valid client.
	c := ts.as(t, "alice", certgen.RoleUser)
	if _, err := c.ListJobs(ctx, &pb.ListJobsRequest{}); err != nil {
		t.Fatalf("valid client after refusals: %v", err)
	}
}

// rawTLS completes a handshake and reads, returning the first error: with
// TLS 1.3 the server judges the client certificate after the client's side
// of the handshake is done, so its alert arrives on the first read.
func rawTLS(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg.Clone())
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	// gRPC speaks first as a client; the server answers a bogus preface by
	// closing, but a refused certificate is an alert before that.
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}

// TestServerTLSConfig checks the server's TLS settings themselves.
func TestServerTLSConfig(t *testing.T) {
	p := newPKI(t)
	cfg, err := serverTLS(p.path("ca.crt"), p.path("server.crt"), p.path("server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion %x, want TLS 1.3", cfg.MinVersion)
	}
	if cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("ClientAuth %v", cfg.ClientAuth)
	}
	if cfg.CipherSuites != nil || cfg.CurvePreferences != nil {
		t.Errorf("cipher suites or curves changed from Go's defaults")
	}
	if _, err := serverTLS(p.path("missing.crt"), p.path("server.crt"), p.path("server.key")); err == nil {
		t.Error("missing CA file accepted")
	}
	if _, err := serverTLS(p.path("server.key"), p.path("server.crt"), p.path("server.key")); err == nil {
		t.Error("a key as CA file accepted")
	}
}
