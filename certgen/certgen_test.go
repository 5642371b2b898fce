package certgen

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixedNow is the clock of most tests: certificates are checked against it.
var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// generate runs Generate into a fresh directory with a fixed clock and
// returns the directory.
func generate(t *testing.T, opts Options) string {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "certs")
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	if _, err := Generate(opts); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return opts.Dir
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: want exactly one PEM CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

func readKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s: want exactly one PEM PRIVATE KEY (PKCS#8) block", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		t.Fatalf("%s: key is %T, want *ecdsa.PrivateKey", path, key)
	}
	return ec
}

// verify checks that cert chains to the CA in dir for usage at fixedNow.
func verify(cert *x509.Certificate, dir string, usage x509.ExtKeyUsage, dnsName string) error {
	data, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data) {
		return errors.New("no CA certificate in ca.crt")
	}
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		DNSName:     dnsName,
		CurrentTime: fixedNow,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	})
	return err
}

func TestGenerateWritesFilesWithModesAndP384Keys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	got, err := Generate(Options{
		Dir:   dir,
		Users: []User{{Name: "alice"}, {Name: "root", Role: RoleAdmin}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, name := range []string{"ca", "server", "alice", "root"} {
		want = append(want, filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	}
	if !slices.Equal(got.Files, want) {
		t.Fatalf("Generate wrote %q, want %q", got.Files, want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("output directory: %v, err %v; want mode 0700", fi.Mode(), err)
	}
	for _, path := range want {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		wantMode := os.FileMode(0o644)
		if strings.HasSuffix(path, ".key") {
			wantMode = 0o600
		}
		if fi.Mode() != wantMode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), wantMode)
		}
		if !strings.HasSuffix(path, ".key") {
			continue
		}
		key := readKey(t, path)
		if key.Curve != elliptic.P384() {
			t.Errorf("%s: curve %s, want P-384", path, key.Curve.Params().Name)
		}
		cert := readCert(t, strings.TrimSuffix(path, ".key")+".crt")
		pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
		if !ok || !pub.Equal(&key.PublicKey) {
			t.Errorf("%s: certificate's public key does not match the key", path)
		}
		if cert.SignatureAlgorithm != x509.ECDSAWithSHA384 {
			t.Errorf("%s: signature algorithm %v, want ECDSAWithSHA384", path, cert.SignatureAlgorithm)
		}
	}
}

func TestCA(t *testing.T) {
	dir := generate(t, Options{})
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.IsCA || !ca.BasicConstraintsValid {
		t.Errorf("IsCA %v, BasicConstraintsValid %v; want both true", ca.IsCA, ca.BasicConstraintsValid)
	}
	if ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("MaxPathLen %d (zero %v), want 0 and set", ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; ca.KeyUsage != want {
		t.Errorf("KeyUsage %v, want %v", ca.KeyUsage, want)
	}
	if len(ca.ExtKeyUsage) != 0 {
		t.Errorf("ExtKeyUsage %v, want none", ca.ExtKeyUsage)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if ca.SerialNumber.Sign() <= 0 || ca.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %v: want a positive random 128-bit number", ca.SerialNumber)
	}
}

func TestServerCert(t *testing.T) {
	dir := generate(t, Options{Hosts: []string{"worker1.example.com", "10.1.2.3", "fd00::7", "[fd00::8]", "localhost", "worker1.example.com"}})
	cert := readCert(t, filepath.Join(dir, "server.crt"))

	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage %v, want exactly [ServerAuth]", cert.ExtKeyUsage)
	}
	if cert.IsCA {
		t.Error("server certificate is a CA")
	}
	if want := []string{"localhost", "worker1.example.com"}; !slices.Equal(cert.DNSNames, want) {
		t.Errorf("DNS SANs %q, want %q", cert.DNSNames, want)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "10.1.2.3", "fd00::7", "fd00::8"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs %q, want %q", ips, want)
	}

	for _, name := range []string{"localhost", "127.0.0.1", "::1", "worker1.example.com", "10.1.2.3", "fd00::7"} {
		if err := verify(cert, dir, x509.ExtKeyUsageServerAuth, name); err != nil {
			t.Errorf("verify as server %q: %v", name, err)
		}
	}
	if err := verify(cert, dir, x509.ExtKeyUsageServerAuth, "other.example.com"); err == nil {
		t.Error("server certificate verified for a name it does not have")
	}
	if err := verify(cert, dir, x509.ExtKeyUsageClientAuth, ""); err == nil {
		t.Error("server certificate verified as a client certificate")
	}
}

func TestClientCerts(t *testing.T) {
	dir := generate(t, Options{Users: []User{{Name: "alice"}, {Name: "bob", Role: RoleUser}, {Name: "ops.admin-1", Role: RoleAdmin}}})
	for name, role := range map[string]string{"alice": RoleUser, "bob": RoleUser, "ops.admin-1": RoleAdmin} {
		cert := readCert(t, filepath.Join(dir, name+".crt"))
		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			t.Errorf("%s: ExtKeyUsage %v, want exactly [ClientAuth]", name, cert.ExtKeyUsage)
		}
		if cert.Subject.CommonName != name {
			t.Errorf("%s: CommonName %q", name, cert.Subject.CommonName)
		}
		if got, err := RoleOf(cert); err != nil || got != role {
			t.Errorf("%s: RoleOf = %q, %v; want %q", name, got, err, role)
		}
		if cert.IsCA {
			t.Errorf("%s: client certificate is a CA", name)
		}
		if len(cert.DNSNames)+len(cert.IPAddresses) != 0 {
			t.Errorf("%s: client certificate has SANs %v %v", name, cert.DNSNames, cert.IPAddresses)
		}
		if err := verify(cert, dir, x509.ExtKeyUsageClientAuth, ""); err != nil {
			t.Errorf("%s: verify as client: %v", name, err)
		}
		if err := verify(cert, dir, x509.ExtKeyUsageServerAuth, ""); err == nil {
			t.Errorf("%s: client certificate verified as a server certificate", name)
		}
	}
}

func TestCertificatesFromAnotherCADoNotVerify(t *testing.T) {
	dirA := generate(t, Options{Users: []User{{Name: "alice"}}})
	dirB := generate(t, Options{Users: []User{{Name: "alice"}}})
	if err := verify(readCert(t, filepath.Join(dirB, "alice.crt")), dirA, x509.ExtKeyUsageClientAuth, ""); err == nil {
		t.Error("a certificate of CA B verified against CA A")
	}
}

func TestValidity(t *testing.T) {
	for _, tc := range []struct {
		validity, want time.Duration
	}{
		{0, DefaultValidity},
		{90 * time.Minute, 90 * time.Minute},
		{30 * 24 * time.Hour, 30 * 24 * time.Hour},
	} {
		dir := generate(t, Options{Validity: tc.validity, Users: []User{{Name: "alice"}}})
		ca := readCert(t, filepath.Join(dir, "ca.crt"))
		if want := fixedNow.Add(DefaultCAValidity); !ca.NotAfter.Equal(want) {
			t.Errorf("validity %v: CA NotAfter %v, want %v", tc.validity, ca.NotAfter, want)
		}
		for _, name := range []string{"ca", "server", "alice"} {
			cert := readCert(t, filepath.Join(dir, name+".crt"))
			if want := fixedNow.Add(-time.Minute); !cert.NotBefore.Equal(want) {
				t.Errorf("validity %v: %s NotBefore %v, want %v", tc.validity, name, cert.NotBefore, want)
			}
			if name == "ca" {
				continue
			}
			if want := fixedNow.Add(tc.want); !cert.NotAfter.Equal(want) {
				t.Errorf("validity %v: %s NotAfter %v, want %v", tc.validity, name, cert.NotAfter, want)
			}
			if cert.NotAfter.After(ca.NotAfter) {
				t.Errorf("validity %v: %s outlives its CA", tc.validity, name)
			}
		}
	}

	// Expiry is enforced by verification, which is what the server relies on.
	dir := generate(t, Options{Validity: time.Hour, Users: []User{{Name: "alice"}}})
	cert := readCert(t, filepath.Join(dir, "alice.crt"))
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, "ca.crt")))
	for at, ok := range map[time.Time]bool{
		fixedNow.Add(59 * time.Minute):  true,
		fixedNow.Add(61 * time.Minute):  false,
		fixedNow.Add(-2 * time.Minute):  false,
		fixedNow.Add(-30 * time.Second): true, // clock skew allowance
	} {
		_, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if (err == nil) != ok {
			t.Errorf("verify at now%+v: err %v, want ok=%v", at.Sub(fixedNow), err, ok)
		}
	}

	if _, err := Generate(Options{Dir: t.TempDir(), Validity: -time.Hour}); !errors.Is(err, ErrInvalidValidity) {
		t.Errorf("negative validity: err %v, want ErrInvalidValidity", err)
	}
}

func TestRefusesToOverwrite(t *testing.T) {
	dir := generate(t, Options{Users: []User{{Name: "alice"}}})
	before := map[string][]byte{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		before[e.Name()] = data
	}
	unchanged := func(when string) {
		t.Helper()
		entries, _ := os.ReadDir(dir)
		if len(entries) != len(before) {
			t.Errorf("%s: directory has %d files, want %d", when, len(entries), len(before))
		}
		for name, data := range before {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: %s changed (err %v)", when, name, err)
			}
		}
	}

	// The same user again is refused, naming --renew; nothing changes.
	_, err := Generate(Options{Dir: dir, Users: []User{{Name: "alice"}}})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "alice.crt") || !strings.Contains(err.Error(), "--renew alice") {
		t.Fatalf("Generate of an existing user: err %v, want ErrExists naming alice.crt and --renew alice", err)
	}
	unchanged("after refusal")
	// --host with an existing CA belongs to a renewed server certificate.
	if _, err := Generate(Options{Dir: dir, Hosts: []string{"x.example.com"}}); err == nil || !strings.Contains(err.Error(), "--renew server") {
		t.Errorf("--host with an existing CA: err %v, want a hint at --renew server", err)
	}
	unchanged("after --host refusal")

	// ca.key alone is protected too.
	keyOnly := t.TempDir()
	if err := os.WriteFile(filepath.Join(keyOnly, "ca.key"), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(Options{Dir: keyOnly}); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "ca.crt is missing") {
		t.Errorf("Generate over an existing ca.key: err %v, want ErrExists naming the missing ca.crt", err)
	}
	if entries, _ := os.ReadDir(keyOnly); len(entries) != 1 {
		t.Errorf("refused Generate left %d files, want only ca.key", len(entries))
	}

	// Force replaces the CA and everything named, with the same modes.
	if _, err := Generate(Options{Dir: dir, Users: []User{{Name: "alice"}}, Force: true, Now: func() time.Time { return fixedNow }}); err != nil {
		t.Fatalf("Generate with Force: %v", err)
	}
	for _, name := range []string{"ca.crt", "ca.key", "server.key", "alice.crt"} {
		got, _ := os.ReadFile(filepath.Join(dir, name))
		if bytes.Equal(got, before[name]) {
			t.Errorf("Force did not replace %s", name)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode() != 0o600 {
		t.Errorf("ca.key after Force: mode %v, err %v; want 0600", fi.Mode(), err)
	}
	if err := verify(readCert(t, filepath.Join(dir, "alice.crt")), dir, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Errorf("alice.crt does not chain to the new CA: %v", err)
	}
}

func TestForceDoesNotWriteThroughSymlinks(t *testing.T) {
	dir := generate(t, Options{})
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte("untouched"), 0o644); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "server.key")
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, keyPath); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(Options{Dir: dir, Force: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); string(got) != "untouched" {
		t.Errorf("Generate wrote through a symlink: target now %q", got)
	}
	if fi, err := os.Lstat(keyPath); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key: %v, err %v; want a regular 0600 file", fi.Mode(), err)
	}
}

func TestUserNamesAndRoles(t *testing.T) {
	for _, name := range []string{"alice", "Bob", "a", "x1", "ops.admin-1", "under_score", "9lives", strings.Repeat("n", 64)} {
		if err := (User{Name: name}).Validate(); err != nil {
			t.Errorf("Validate(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", "ca", "server", "..", ".hidden", "-rf", "_x", "a/b", "../etc", "a b", "a:b", "é", "a\x00", strings.Repeat("n", 65)} {
		err := (User{Name: name}).Validate()
		if !errors.Is(err, ErrInvalidUser) {
			t.Errorf("Validate(%q): err %v, want ErrInvalidUser", name, err)
		}
		if _, err := Generate(Options{Dir: filepath.Join(t.TempDir(), "certs"), Users: []User{{Name: name}}}); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("Generate with user %q: err %v, want ErrInvalidUser", name, err)
		}
	}
	for _, role := range []string{"root", "Admin", "USER", " admin"} {
		if err := (User{Name: "alice", Role: role}).Validate(); !errors.Is(err, ErrInvalidRole) {
			t.Errorf("Validate(role %q): err %v, want ErrInvalidRole", role, err)
		}
	}

	dir := filepath.Join(t.TempDir(), "certs")
	if _, err := Generate(Options{Dir: dir, Users: []User{{Name: "alice"}, {Name: "alice", Role: RoleAdmin}}}); !errors.Is(err, ErrInvalidUser) {
		t.Errorf("duplicate user: err %v, want ErrInvalidUser", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rejected Generate created %s (err %v)", dir, err)
	}
}

func TestParseUser(t *testing.T) {
	for in, want := range map[string]User{
		"alice":       {Name: "alice", Role: RoleUser},
		"alice:user":  {Name: "alice", Role: RoleUser},
		"root:admin":  {Name: "root", Role: RoleAdmin},
		"ops.1:admin": {Name: "ops.1", Role: RoleAdmin},
		"bob:":        {Name: "bob", Role: RoleUser},
	} {
		got, err := ParseUser(in)
		if err != nil || got != want {
			t.Errorf("ParseUser(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, wantErr := range map[string]error{
		"":                ErrInvalidUser,
		":admin":          ErrInvalidUser,
		"ca:admin":        ErrInvalidUser,
		"alice:root":      ErrInvalidRole,
		"alice:admin:x":   ErrInvalidRole,
		"alice bob:admin": ErrInvalidUser,
	} {
		if _, err := ParseUser(in); !errors.Is(err, wantErr) {
			t.Errorf("ParseUser(%q): err %v, want %v", in, err, wantErr)
		}
	}
}

func TestRoleOf(t *testing.T) {
	cert := func(ous ...string) *x509.Certificate {
		c := &x509.Certificate{}
		c.Subject.CommonName = "alice"
		c.Subject.OrganizationalUnit = ous
		return c
	}
	for _, tc := range []struct {
		ous  []string
		want string
	}{
		{[]string{"user"}, RoleUser},
		{[]string{"admin"}, RoleAdmin},
		{[]string{"team-a", "admin"}, RoleAdmin},
	} {
		if got, err := RoleOf(cert(tc.ous...)); err != nil || got != tc.want {
			t.Errorf("RoleOf(OU %q) = %q, %v; want %q", tc.ous, got, err, tc.want)
		}
	}
	for _, ous := range [][]string{nil, {"root"}, {"Admin"}, {"user", "admin"}, {"admin", "admin"}} {
		if got, err := RoleOf(cert(ous...)); !errors.Is(err, ErrNoRole) {
			t.Errorf("RoleOf(OU %q) = %q, %v; want ErrNoRole", ous, got, err)
		}
	}
	if _, err := RoleOf(nil); !errors.Is(err, ErrNoRole) {
		t.Errorf("RoleOf(nil): err %v, want ErrNoRole", err)
	}
	// The server's certificate carries no role and must not pass as a user.
	dir := generate(t, Options{})
	if _, err := RoleOf(readCert(t, filepath.Join(dir, "server.crt"))); !errors.Is(err, ErrNoRole) {
		t.Errorf("RoleOf(server.crt): err %v, want ErrNoRole", err)
	}
}

// handshake runs a TLS handshake between a server and a client config over
// an in-memory pipe and returns the client certificate the server verified,
// or both sides' errors.
func handshake(t *testing.T, serverConf, clientConf *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv := tls.Server(sc, serverConf)
	cli := tls.Client(cc, clientConf)
	serverErr := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(ctx)
		if err != nil {
			sc.Close() // unblock the client
		}
		serverErr <- err
	}()
	clientErr := cli.HandshakeContext(ctx)
	if clientErr != nil {
		cc.Close() // unblock the server
	}
	// In TLS 1.3 the client is done before the server has checked the
	// client's certificate; read on, so that an alert the server sends over
	// the unbuffered pipe is consumed instead of blocking it.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		if clientErr == nil {
			io.Copy(io.Discard, cli)
		}
	}()
	err := <-serverErr
	cc.Close()
	<-drained
	if err != nil || clientErr != nil {
		return nil, errors.Join(clientErr, err)
	}
	if v := cli.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated TLS version %x, want TLS 1.3", v)
	}
	peers := srv.ConnectionState().PeerCertificates
	if len(peers) == 0 {
		return nil, errors.New("server saw no client certificate")
	}
	return peers[0], nil
}

func TestFilesMakeAWorkingMutualTLS13Handshake(t *testing.T) {
	dir := generate(t, Options{Now: time.Now, Hosts: []string{"worker1.example.com"}, Users: []User{{Name: "alice"}, {Name: "root", Role: RoleAdmin}}})
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no certificate in ca.crt")
	}
	load := func(name string) tls.Certificate {
		t.Helper()
		kp, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
		if err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
		return kp
	}
	serverConf := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{load("server")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
	clientConf := func(user, serverName string) *tls.Config {
		return &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{load(user)},
			RootCAs:      pool,
			ServerName:   serverName,
		}
	}

	for _, tc := range []struct{ user, serverName, role string }{
		{"alice", "localhost", RoleUser},
		{"root", "127.0.0.1", RoleAdmin},
		{"alice", "::1", RoleUser},
		{"root", "worker1.example.com", RoleAdmin},
	} {
		peer, err := handshake(t, serverConf, clientConf(tc.user, tc.serverName))
		if err != nil {
			t.Errorf("%s to %s: handshake: %v", tc.user, tc.serverName, err)
			continue
		}
		if peer.Subject.CommonName != tc.user {
			t.Errorf("%s to %s: server saw CN %q", tc.user, tc.serverName, peer.Subject.CommonName)
		}
		if role, err := RoleOf(peer); err != nil || role != tc.role {
			t.Errorf("%s to %s: role %q, %v; want %q", tc.user, tc.serverName, role, err, tc.role)
		}
	}

	// The client checks the server's name, and the server refuses its own
	// certificate used as a client certificate.
	if _, err := handshake(t, serverConf, clientConf("alice", "other.example.com")); err == nil {
		t.Error("handshake succeeded with a server name the certificate does not have")
	} else if !strings.Contains(err.Error(), "other.example.com") {
		t.Errorf("wrong server name: handshake failed for another reason: %v", err)
	}
	if _, err := handshake(t, serverConf, clientConf("server", "localhost")); err == nil {
		t.Error("server accepted the server certificate as a client certificate")
	} else if !strings.Contains(err.Error(), "key usage") {
		t.Errorf("server certificate as client: handshake failed for another reason: %v", err)
	}
}

// TestAddUsersToExistingCA: a new user is signed by the CA already in Dir
// (or in CADir) without rewriting it, and the old users' certificates keep
// verifying.
func TestAddUsersToExistingCA(t *testing.T) {
	dir := generate(t, Options{Users: []User{{Name: "alice"}}})
	before := map[string][]byte{}
	for _, name := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "alice.crt", "alice.key"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		before[name] = data
	}
	res, err := Generate(Options{Dir: dir, Users: []User{{Name: "bob", Role: RoleAdmin}}, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatalf("add bob: %v", err)
	}
	if res.NewCA || len(res.Issued) != 1 || res.Issued[0].Name != "bob" || res.Issued[0].Role != RoleAdmin || res.Issued[0].Serial == "" {
		t.Errorf("add bob: %+v", res)
	}
	for name, data := range before {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, data) {
			t.Errorf("adding bob changed %s", name)
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if err := verify(readCert(t, filepath.Join(dir, u+".crt")), dir, x509.ExtKeyUsageClientAuth, ""); err != nil {
			t.Errorf("%s does not chain to the CA: %v", u, err)
		}
	}
	if role, _ := RoleOf(readCert(t, filepath.Join(dir, "bob.crt"))); role != RoleAdmin {
		t.Errorf("bob's role %q", role)
	}

	// A CA kept elsewhere: carol's bundle gets her files and a ca.crt copy.
	out := filepath.Join(t.TempDir(), "carol")
	res, err = Generate(Options{Dir: out, CADir: dir, Users: []User{{Name: "carol"}}, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatalf("carol with --ca-dir: %v", err)
	}
	entries, _ := os.ReadDir(out)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"ca.crt", "carol.crt", "carol.key"}) {
		t.Errorf("carol's directory holds %v", names)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "ca.crt")); !bytes.Equal(got, before["ca.crt"]) {
		t.Error("carol's ca.crt is not the CA's")
	}
	if err := verify(readCert(t, filepath.Join(out, "carol.crt")), dir, x509.ExtKeyUsageClientAuth, ""); err != nil {
		t.Errorf("carol does not chain to the CA: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(got, before["ca.key"]) {
		t.Error("--ca-dir rewrote the CA key")
	}
}

// TestRenew: a renewed certificate has a new key and serial, keeps the
// user's role (or the server's names), and replaces the files atomically.
func TestRenew(t *testing.T) {
	dir := generate(t, Options{Hosts: []string{"worker1.example.com"}, Users: []User{{Name: "alice", Role: RoleAdmin}, {Name: "bob"}}})
	oldAlice := readCert(t, filepath.Join(dir, "alice.crt"))
	oldServer := readCert(t, filepath.Join(dir, "server.crt"))
	oldBob, _ := os.ReadFile(filepath.Join(dir, "bob.crt"))
	later := fixedNow.Add(3 * 24 * time.Hour)
	res, err := Generate(Options{Dir: dir, Renew: []string{"alice", "server"}, Hosts: []string{"10.0.0.7"}, Now: func() time.Time { return later }})
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	if len(res.Issued) != 2 || !res.Issued[0].Renewed || !res.Issued[1].Renewed {
		t.Errorf("renew: %+v", res.Issued)
	}
	alice := readCert(t, filepath.Join(dir, "alice.crt"))
	if alice.SerialNumber.Cmp(oldAlice.SerialNumber) == 0 || !alice.NotAfter.Equal(later.Add(DefaultValidity)) {
		t.Errorf("alice not renewed: serial %v, NotAfter %v", alice.SerialNumber, alice.NotAfter)
	}
	if role, _ := RoleOf(alice); role != RoleAdmin {
		t.Errorf("renewed alice lost her role: %q", role)
	}
	if pub := readKey(t, filepath.Join(dir, "alice.key")).PublicKey; !pub.Equal(alice.PublicKey) {
		t.Error("alice.key does not match the renewed alice.crt")
	}
	server := readCert(t, filepath.Join(dir, "server.crt"))
	if server.SerialNumber.Cmp(oldServer.SerialNumber) == 0 || !slices.Contains(server.DNSNames, "worker1.example.com") || len(server.IPAddresses) != 3 || server.IPAddresses[2].String() != "10.0.0.7" {
		t.Errorf("renewed server: names %v %v", server.DNSNames, server.IPAddresses)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "bob.crt")); !bytes.Equal(got, oldBob) {
		t.Error("renewing alice changed bob")
	}
	if _, err := Generate(Options{Dir: dir, Renew: []string{"nobody"}}); err == nil || !strings.Contains(err.Error(), "--user nobody") {
		t.Errorf("renew of a missing user: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

// TestCAValidity: the CA lives for years, leaves stay short, and a leaf
// never outlives its CA.
func TestCAValidity(t *testing.T) {
	dir := generate(t, Options{CAValidity: 48 * time.Hour, Validity: time.Hour})
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.NotAfter.Equal(fixedNow.Add(48 * time.Hour)) {
		t.Errorf("CA NotAfter %v", ca.NotAfter)
	}
	late := fixedNow.Add(47 * time.Hour)
	res, err := Generate(Options{Dir: dir, Users: []User{{Name: "alice"}}, Validity: 24 * time.Hour, Now: func() time.Time { return late }})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Issued[0].Shortened || !res.Issued[0].NotAfter.Equal(ca.NotAfter) {
		t.Errorf("a leaf past the CA's end: %+v, CA ends %v", res.Issued[0], ca.NotAfter)
	}
	if _, err := Generate(Options{Dir: dir, Users: []User{{Name: "bob"}}, Now: func() time.Time { return fixedNow.Add(49 * time.Hour) }}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("signing with an expired CA: %v", err)
	}
	if _, err := Generate(Options{Dir: t.TempDir(), CAValidity: time.Hour, Validity: 2 * time.Hour}); !errors.Is(err, ErrInvalidValidity) {
		t.Errorf("CA shorter than its leaves: %v", err)
	}
}

// TestLooseModes: the one rule for too-open key files and directories.
func TestLooseModes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for mode, want := range map[os.FileMode][2]bool{ // KeyExposed, WritableByOthers
		0o600: {false, false}, 0o400: {false, false}, 0o640: {true, false}, 0o644: {true, false},
		0o604: {true, false}, 0o620: {true, true}, 0o602: {true, true}, 0o666: {true, true},
	} {
		os.Chmod(p, mode)
		_, key := KeyExposed(p)
		_, w := WritableByOthers(p)
		if key != want[0] || w != want[1] {
			t.Errorf("mode %04o: KeyExposed %v, WritableByOthers %v; want %v", mode, key, w, want)
		}
	}
	if _, ok := KeyExposed(filepath.Join(dir, "missing")); ok {
		t.Error("a missing file is reported")
	}
}
