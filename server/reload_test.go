package server

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

func TestParseDenyList(t *testing.T) {
	d, err := ParseDenyList(strings.NewReader(`# leaked laptop
serial=0A1B2C3D4E5F60718293A4B5C6D7E8F9
serial:de:ad:be:ef:00:11:22:33   # colons, lower case
0123456789abcdef0123
mallory          # a name
user:deadbeefdeadbeefdead
   
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"0A1B2C3D4E5F60718293A4B5C6D7E8F9", "DEADBEEF00112233", "0123456789ABCDEF0123"} {
		if !d.serials[s] {
			t.Errorf("serial %s not denied: %v", s, d.serials)
		}
	}
	for _, id := range []string{"mallory", "deadbeefdeadbeefdead"} {
		if !d.identities[id] {
			t.Errorf("identity %s not denied: %v", id, d.identities)
		}
	}
	if len(d.serials) != 3 || len(d.identities) != 2 {
		t.Errorf("parsed %v and %v", d.serials, d.identities)
	}
	for _, bad := range []string{"serial=xyz\n", "alice bob\n", "user:\n", "serial=\n",
		"\ufeffserial=0A1B2C3D\n", "serialnumber=0A1B\n", "Serial:=0A\n", "user:a=b\n", "al\x1bice\n", "user:\xff\n"} {
		if _, err := ParseDenyList(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("ParseDenyList(%q): %v, want an error naming line 1", bad, err)
		}
	}
}

// TestDenyListAndReload: a certificate that verifies is refused once its
// serial (or its identity) is on the deny list and the server reloaded, on
// a connection opened before the reload too; others keep working; a failed
// reload keeps the previous state; a renewed server certificate is served
// to new connections.
func TestDenyListAndReload(t *testing.T) {
	deny := ""
	ts := startServer(t, func(c *Config) {
		deny = c.CAFile + ".deny"
		if err := os.WriteFile(deny, []byte("# nobody yet\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.DenyListFile = deny
	})
	ctx := testCtx(t)
	aliceKP, err := certgen.NewClientCert(ts.ca, certgen.User{Name: "alice"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := ts.dial(t, ts.clientTLS(tlsCert(t, aliceKP)))
	bob := ts.as(t, "bob", certgen.RoleUser)
	list := func(c pb.ForemanClient) error {
		_, err := c.ListJobs(ctx, &pb.ListJobsRequest{})
		return err
	}
	if err := list(alice); err != nil {
		t.Fatalf("alice before the deny list: %v", err)
	}
	srv := ts.server

	os.WriteFile(deny, []byte("serial="+certgen.SerialHex(aliceKP.Cert.SerialNumber)+"\n"), 0o644)
	if err := list(alice); err != nil {
		t.Fatalf("the deny list applied before a reload: %v", err)
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	st := wantCode(t, "alice after the reload", list(alice), codes.PermissionDenied)
	if !strings.Contains(st.Message(), "deny list") || !strings.Contains(st.Message(), "alice") {
		t.Errorf("refusal message %q", st.Message())
	}
	if !strings.Contains(ts.logs.String(), "deny list") {
		t.Errorf("the server log does not say why:\n%s", ts.logs)
	}
	if err := list(bob); err != nil {
		t.Errorf("bob after alice was denied: %v", err)
	}
	// A new certificate of alice works; denying her identity stops it too.
	alice2 := ts.as(t, "alice", certgen.RoleUser)
	if err := list(alice2); err != nil {
		t.Errorf("alice's new certificate: %v", err)
	}
	os.WriteFile(deny, []byte("user:alice\n"), 0o644)
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "alice's new certificate, identity denied", list(alice2), codes.PermissionDenied)

	// A broken deny list or certificate is refused; the old state stays.
	os.WriteFile(deny, []byte("serial=nothex\n"), 0o644)
	if err := srv.Reload(); err == nil {
		t.Error("a broken deny list was loaded")
	}
	wantCode(t, "alice after a failed reload", list(alice2), codes.PermissionDenied)
	os.WriteFile(deny, nil, 0o644)
	keyPEM, _ := os.ReadFile(ts.path("server.key"))
	os.WriteFile(ts.path("server.key"), []byte("garbage"), 0o600)
	if err := srv.Reload(); err == nil {
		t.Error("a broken server key was loaded")
	}
	wantCode(t, "alice after a failed certificate reload", list(alice2), codes.PermissionDenied)
	os.WriteFile(ts.path("server.key"), keyPEM, 0o600)

	// A renewed server certificate reaches new connections.
	renewed, err := certgen.NewServerCert(ts.ca, nil, time.Now(), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts.write(t, "server", renewed)
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := list(alice2); err != nil {
		t.Errorf("alice after the deny list emptied: %v", err)
	}
	conn, err := tls.Dial("tcp", ts.addr, ts.clientTLS(ts.client(t, "carol", certgen.RoleUser)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0]; got.SerialNumber.Cmp(renewed.Cert.SerialNumber) != 0 {
		t.Errorf("served certificate serial %v, want the renewed %v", got.SerialNumber, renewed.Cert.SerialNumber)
	}
}

// TestReloadEndsDeniedStreams: a watch opened before its certificate was
// denied ends at the reload that denies it, with PermissionDenied naming
// the deny list, instead of streaming on; another user's watch goes on.
func TestReloadEndsDeniedStreams(t *testing.T) {
	deny := ""
	ts := startServer(t, func(c *Config) {
		deny = c.CAFile + ".deny"
		if err := os.WriteFile(deny, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		c.DenyListFile = deny
	})
	ctx := testCtx(t)
	watch := func(c pb.ForemanClient) pb.Foreman_WatchJobOutputClient {
		t.Helper()
		job, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Args: []string{"first"}})
		if err != nil {
			t.Fatal(err)
		}
		stream, err := c.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: job.GetJob().GetName()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("first message: %v", err)
		}
		return stream
	}
	alice := watch(ts.as(t, "alice", certgen.RoleUser))
	bob := watch(ts.as(t, "bob", certgen.RoleUser))

	os.WriteFile(deny, []byte("user:alice\n"), 0o644)
	if err := ts.server.Reload(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := alice.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		st := wantCode(t, "alice's watch after the reload", err, codes.PermissionDenied)
		if !strings.Contains(st.Message(), "deny list") {
			t.Errorf("message %q does not name the deny list", st.Message())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("alice's watch still open 30s after the reload that denied her")
	}
	go func() {
		_, err := bob.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Errorf("bob's watch ended with the reload: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	ts.server.streamsMu.Lock()
	n := len(ts.server.streams)
	ts.server.streamsMu.Unlock()
	if n != 1 {
		t.Errorf("%d streams tracked, want bob's alone", n)
	}
}

// TestReloadNewCAEndsOldCertificates: once the server reloaded another CA
// (the old one's key leaked, say), certificates of the old CA are refused
// on connections opened before the reload too, and their open watch ends;
// a certificate of the new CA works.
func TestReloadNewCAEndsOldCertificates(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	oldCA := ts.ca
	alice := ts.as(t, "alice", certgen.RoleUser)
	job, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Args: []string{"first"}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := alice.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: job.GetJob().GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}

	newCA, err := certgen.NewCA(time.Now(), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvKP, err := certgen.NewServerCert(newCA, nil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ts.write(t, "ca", newCA)
	ts.write(t, "server", srvKP)
	if err := ts.server.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err = alice.ListJobs(ctx, &pb.ListJobsRequest{})
	st := wantCode(t, "a certificate of the old CA on an open connection", err, codes.PermissionDenied)
	if !strings.Contains(st.Message(), "no longer trusts") {
		t.Errorf("message %q", st.Message())
	}
	_, err = stream.Recv()
	wantCode(t, "the old certificate's open watch", err, codes.PermissionDenied)

	ts.ca = newCA
	if _, err := ts.as(t, "alice", certgen.RoleUser).ListJobs(ctx, &pb.ListJobsRequest{}); err != nil {
		t.Errorf("a certificate of the new CA: %v", err)
	}
	ts.ca = oldCA
}

// TestExpiredCertificateOnOpenConnection: a certificate that expires while
// its connection is open is refused from then on, on that connection too,
// and its open watch ends (short-lived certificates bound a leak only if
// a connection cannot outlive them).
func TestExpiredCertificateOnOpenConnection(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	kp, err := certgen.NewClientCert(ts.ca, certgen.User{Name: "alice"}, time.Now(), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := ts.dial(t, ts.clientTLS(tlsCert(t, kp)))
	job, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Args: []string{"first"}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := alice.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: job.GetJob().GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv() // blocks until the certificate expires
	st := wantCode(t, "the watch of an expired certificate", err, codes.PermissionDenied)
	if !strings.Contains(st.Message(), "expired") {
		t.Errorf("message %q", st.Message())
	}
	if time.Now().Before(kp.Cert.NotAfter) {
		t.Errorf("the watch ended before the certificate expired (%v)", kp.Cert.NotAfter)
	}
	_, err = alice.ListJobs(ctx, &pb.ListJobsRequest{})
	wantCode(t, "a call with an expired certificate on its open connection", err, codes.PermissionDenied)
}
