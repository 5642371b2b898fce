package client

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/drrev/telehandler/certgen"
)

// tlsPeer is a TLS 1.3 server requiring a client certificate of its CA,
// as Telehandler's is; it tells each client whom it saw.
type tlsPeer struct {
	addr string
	dir  string // ca.crt, NAME.crt, NAME.key
	ca   certgen.KeyPair
	cfg  *tls.Config
	seen chan string // the client certificate's name per connection
}

func writePair(t *testing.T, dir, name string, kp certgen.KeyPair) {
	t.Helper()
	key, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), kp.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
}

func newTLSPeer(t *testing.T, users ...string) *tlsPeer {
	t.Helper()
	now := time.Now()
	ca, err := certgen.NewCA(now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &tlsPeer{dir: t.TempDir(), ca: ca, seen: make(chan string, 16)}
	if err := os.WriteFile(filepath.Join(p.dir, "ca.crt"), ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := certgen.NewServerCert(ca, nil, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, p.dir, "server", srv)
	for _, u := range users {
		kp, err := certgen.NewClientCert(ca, certgen.User{Name: u}, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		writePair(t, p.dir, u, kp)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(p.dir, "server.crt"), filepath.Join(p.dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	p.cfg = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	p.addr = l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, p.cfg)
				if err := tc.Handshake(); err != nil {
					p.seen <- "refused: " + err.Error()
					return
				}
				p.seen <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
				tc.Write([]byte("x")) // after the session ticket
				tc.Read(make([]byte, 1))
			}()
		}
	}()
	return p
}

// dialResult is what one CLI-like connection did.
type dialResult struct {
	seen       string // whom the server saw
	resumed    bool
	keyLoaded  bool // the client parsed its key before the handshake
	sessionErr error
}

// dial does what a CLI command does: a new TLS configuration (reading
// the session cache), a connection, its first byte (and the ticket before
// it), and the end.
func (p *tlsPeer) dial(t *testing.T, user string) dialResult {
	t.Helper()
	cfg, err := clientTLS(filepath.Join(p.dir, "ca.crt"), filepath.Join(p.dir, user+".crt"), filepath.Join(p.dir, user+".key"), "127.0.0.1", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", p.addr, cfg)
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read as %s: %v", user, err)
	}
	return dialResult{seen: <-p.seen, resumed: c.ConnectionState().DidResume, keyLoaded: len(cfg.Certificates) > 0}
}

// sessionFiles are the files of the session cache directory.
func sessionFiles(t *testing.T) []string {
	t.Helper()
	dir, err := sessionDir()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := filepath.Glob(filepath.Join(dir, "*"))
	return m
}

// TestSessionCacheResumes: the second command resumes the first one's
// session without parsing its key; the file and its directory are
// private.
func TestSessionCacheResumes(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	p := newTLSPeer(t, "alice")
	if r := p.dial(t, "alice"); r.resumed || r.seen != "alice" || !r.keyLoaded {
		t.Fatalf("first command: %+v; want a full handshake as alice", r)
	}
	files := sessionFiles(t)
	if len(files) != 1 {
		t.Fatalf("session files %v, want one", files)
	}
	for path, want := range map[string]os.FileMode{files[0]: 0o600, filepath.Dir(files[0]): 0o700, filepath.Dir(filepath.Dir(files[0])): 0o700} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %04o", path, fi.Mode().Perm(), err, want)
		}
	}
	before, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if r := p.dial(t, "alice"); !r.resumed || r.seen != "alice" || r.keyLoaded {
			t.Fatalf("command %d after the first: %+v; want resumed as alice, the key not parsed", i+2, r)
		}
	}
	// A resumed session's ticket is not written: the file is the same.
	if after, err := os.Stat(files[0]); err != nil || !os.SameFile(before, after) {
		t.Errorf("the session file was rewritten by commands that resumed (%v)", err)
	}
}

// TestSessionCacheIdentity: a session is never presented for another
// certificate: bob gets his own, and alice's session file put in the place
// of bob's does not open with bob's key.
func TestSessionCacheIdentity(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	p := newTLSPeer(t, "alice", "bob")
	p.dial(t, "alice")
	aliceFile := sessionFiles(t)[0]
	if r := p.dial(t, "bob"); r.resumed || r.seen != "bob" {
		t.Fatalf("bob after alice: %+v; want a full handshake as bob", r)
	}
	var bobFile string
	for _, f := range sessionFiles(t) {
		if f != aliceFile {
			bobFile = f
		}
	}
	if bobFile == "" {
		t.Fatal("bob has no session file")
	}
	data, err := os.ReadFile(aliceFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bobFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := p.dial(t, "bob"); r.resumed || r.seen != "bob" {
		t.Fatalf("bob with alice's session file: %+v; want a full handshake as bob", r)
	}
	if r := p.dial(t, "bob"); !r.resumed || r.seen != "bob" {
		t.Fatalf("bob again: %+v; want his own session resumed", r)
	}
	// A new key for the same certificate file name (a renewal) does not
	// open the old session either.
	kp, err := certgen.NewClientCert(p.ca, certgen.User{Name: "alice"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, p.dir, "alice", kp)
	if r := p.dial(t, "alice"); r.resumed || r.seen != "alice" || !r.keyLoaded {
		t.Fatalf("alice renewed: %+v; want a full handshake", r)
	}
}

// TestSessionCacheUnsafeFiles: a session file or directory others could
// have written or read is not used, and a corrupt file is ignored; each
// costs a full handshake and nothing else.
func TestSessionCacheUnsafeFiles(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	p := newTLSPeer(t, "alice")
	p.dial(t, "alice")
	file := sessionFiles(t)[0]
	dir := filepath.Dir(file)
	fullHandshake := func(what string) {
		t.Helper()
		if r := p.dial(t, "alice"); r.resumed || r.seen != "alice" {
			t.Errorf("%s: %+v; want a full handshake", what, r)
		}
	}
	resumes := func(what string) {
		t.Helper()
		if r := p.dial(t, "alice"); !r.resumed || r.seen != "alice" {
			t.Errorf("%s: %+v; want resumed", what, r)
		}
	}

	os.Chmod(file, 0o640)
	fullHandshake("a session file others may read")
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the file was not replaced by a private one: %v %v", fi.Mode(), err)
	}
	resumes("the replaced file")

	os.Chmod(dir, 0o755)
	fullHandshake("a session directory others may list")
	fullHandshake("a session directory others may list, again (nothing is written there)")
	os.Chmod(dir, 0o700)
	resumes("the directory private again")

	data, _ := os.ReadFile(file)
	data[len(data)-1] ^= 1
	os.WriteFile(file, data, 0o600)
	fullHandshake("a corrupt session file")
	os.WriteFile(file, []byte("garbage"), 0o600)
	fullHandshake("a garbage session file")
	resumes("the file the full handshake wrote")

	// A symbolic link is not followed.
	real, _ := os.ReadFile(file)
	elsewhere := filepath.Join(t.TempDir(), "session")
	os.WriteFile(elsewhere, real, 0o600)
	os.Remove(file)
	if err := os.Symlink(elsewhere, file); err != nil {
		t.Fatal(err)
	}
	fullHandshake("a session file that is a symbolic link")

	if os.Geteuid() == 0 {
		// A cache directory of another user (sudo with the user's HOME)
		// gets no directories or files of ours.
		theirs := filepath.Join(t.TempDir(), "theirs")
		os.Mkdir(theirs, 0o700)
		os.Chown(theirs, 65534, 65534)
		t.Setenv("XDG_CACHE_HOME", theirs)
		fullHandshake("a cache directory of another user")
		if entries, _ := os.ReadDir(theirs); len(entries) != 0 {
			t.Errorf("the session cache wrote into another user's cache directory: %v", entries)
		}
		t.Setenv("XDG_CACHE_HOME", filepath.Dir(filepath.Dir(dir)))

		// Another user's file, even private, is not ours.
		p.dial(t, "alice")
		if err := os.Chown(file, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		fullHandshake("a session file owned by another user")
	}
}

// TestSessionCacheRefused: when the server does not resume (it restarted,
// reloaded), the full handshake parses the key then and the session is
// replaced.
func TestSessionCacheRefused(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	p := newTLSPeer(t, "alice")
	p.dial(t, "alice")
	p.cfg.SetSessionTicketKeys([][32]byte{{42}})
	cfg, err := clientTLS(filepath.Join(p.dir, "ca.crt"), filepath.Join(p.dir, "alice.crt"), filepath.Join(p.dir, "alice.key"), "127.0.0.1", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 0 || cfg.GetClientCertificate == nil {
		t.Fatal("with a session the key is parsed before the handshake")
	}
	c, err := tls.Dial("tcp", p.addr, cfg)
	if err != nil {
		t.Fatalf("a refused session: %v", err)
	}
	c.Read(make([]byte, 1))
	c.Close()
	if seen := <-p.seen; seen != "alice" || c.ConnectionState().DidResume {
		t.Fatalf("a refused session: the server saw %q, resumed %v; want a full handshake as alice", seen, c.ConnectionState().DidResume)
	}
	if r := p.dial(t, "alice"); !r.resumed {
		t.Errorf("after the new session: %+v; want resumed", r)
	}
}
