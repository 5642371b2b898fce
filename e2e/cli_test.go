//go:build linux

package e2e

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serialRE finds the serial certgen prints for a certificate it wrote.
var serialRE = regexp.MustCompile(`(?m)^(?:wrote|renewed) \S+/(\S+)\.crt and .*serial ([0-9A-F]+),`)

// serials returns the serial certgen printed per name.
func serials(out string) map[string]string {
	m := map[string]string{}
	for _, s := range serialRE.FindAllStringSubmatch(out, -1) {
		m[s[1]] = s[2]
	}
	return m
}

// copyCert copies name.crt and name.key of certs to dir/name.*.
func copyCert(t *testing.T, certs, dir, name string) {
	t.Helper()
	for _, ext := range []string{".crt", ".key"} {
		data, err := os.ReadFile(filepath.Join(certs, name+ext))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+ext), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCertificateLifecycleAndCLI drives certgen's add and renew, the deny
// list reloaded on SIGHUP, contexts, global flags, --timeout and the exit
// codes through the real binary.
func TestCertificateLifecycleAndCLI(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("e2e: not in -short mode")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := buildBinary(t, dir)
	certs := filepath.Join(dir, "certs")
	anon := env{t: t, bin: bin}
	r := anon.run("certgen", "--out", certs, "--user", "alice", "--user", "admin:admin").want(t, "certgen", 0)
	first := serials(r.stdout)
	if first["alice"] == "" || !strings.Contains(r.stdout, "made a new CA") {
		t.Fatalf("certgen printed no serial for alice: %v", r)
	}
	deny := filepath.Join(dir, "deny")
	if err := os.WriteFile(deny, []byte("# revoked certificates\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	srv := startServer(t, bin, dir, addr, "--deny-list", deny)
	certEnv := func(certDir, user string) env {
		return env{t: t, bin: bin, vars: []string{
			"XDG_CONFIG_HOME=" + filepath.Join(dir, "no-config"),
			"TELEHANDLER_ADDR=" + addr,
			"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
			"TELEHANDLER_CERT=" + filepath.Join(certDir, user+".crt"),
			"TELEHANDLER_KEY=" + filepath.Join(certDir, user+".key"),
		}}
	}
	old := filepath.Join(dir, "old")
	os.Mkdir(old, 0o700)
	copyCert(t, certs, old, "alice") // alice's first certificate, kept after her renewal

	t.Run("certgen adds a user to the CA and renews one; old certificates keep working", func(t *testing.T) {
		caBefore, _ := os.ReadFile(filepath.Join(certs, "ca.key"))
		r := anon.run("certgen", "--out", certs, "--user", "bob").want(t, "certgen --user bob", 0)
		if !strings.Contains(r.stdout, "signed with the CA") {
			t.Errorf("certgen --user bob: %v", r)
		}
		if caAfter, _ := os.ReadFile(filepath.Join(certs, "ca.key")); string(caAfter) != string(caBefore) {
			t.Error("adding bob rewrote the CA key")
		}
		bob, oldAlice := certEnv(certs, "bob"), certEnv(old, "alice")
		bob.t, oldAlice.t = t, t
		bob.run("list").want(t, "bob, added to the CA", 0)
		oldAlice.run("list").want(t, "alice's certificate after bob was added", 0)

		r = anon.run("certgen", "--out", certs, "--user", "alice").want(t, "certgen of an existing user", 1)
		if !strings.Contains(r.stderr, "--renew alice") {
			t.Errorf("certgen of an existing user: %v", r)
		}
		r = anon.run("certgen", "--out", certs, "--renew", "alice").want(t, "certgen --renew alice", 0)
		renewed := serials(r.stdout)["alice"]
		if renewed == "" || renewed == first["alice"] || !strings.Contains(r.stdout, "renewed") {
			t.Fatalf("renew: %v", r)
		}
		alice := certEnv(certs, "alice")
		alice.t = t
		alice.run("list").want(t, "alice's renewed certificate", 0)
		oldAlice.run("list").want(t, "alice's first certificate, not yet revoked", 0)
	})

	t.Run("a deny-listed certificate is refused after SIGHUP", func(t *testing.T) {
		oldAlice, alice := certEnv(old, "alice"), certEnv(certs, "alice")
		oldAlice.t, alice.t = t, t
		if err := os.WriteFile(deny, []byte("serial="+first["alice"]+"  # alice's laptop\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		oldAlice.run("list").want(t, "old alice before SIGHUP", 0)
		srv.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(srv.logs(), "reloaded certificates and deny list") {
			if time.Now().After(deadline) {
				t.Fatalf("no reload in the server log:\n%s", srv.logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
		r := oldAlice.run("list").want(t, "old alice after SIGHUP", 1)
		if !strings.Contains(r.stderr, "revoked") || !strings.Contains(r.stderr, first["alice"]) {
			t.Errorf("refusal of a revoked certificate: %v", r)
		}
		alice.run("list").want(t, "alice's renewed certificate after SIGHUP", 0)
		if !strings.Contains(srv.logs(), "deny list") || !strings.Contains(srv.logs(), "PermissionDenied") {
			t.Errorf("the server log does not name the refusal:\n%s", srv.logs())
		}
		// A deny list that does not parse is refused; the previous one stays.
		os.WriteFile(deny, []byte("serial=not-hex\n"), 0o644)
		srv.cmd.Process.Signal(syscall.SIGHUP)
		for !strings.Contains(srv.logs(), "reload failed") {
			if time.Now().After(deadline) {
				t.Fatalf("no failed reload in the server log:\n%s", srv.logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
		oldAlice.run("list").want(t, "old alice after a failed reload", 1)
	})

	t.Run("contexts, global flags and --timeout", func(t *testing.T) {
		xdg := filepath.Join(dir, "xdg")
		plain := env{t: t, bin: bin, vars: []string{"XDG_CONFIG_HOME=" + xdg, "TELEHANDLER_ADDR=", "TELEHANDLER_CA=", "TELEHANDLER_CERT=", "TELEHANDLER_KEY="}}
		plain.run("list").want(t, "list without any configuration", 1)
		plain.run("context", "add", "--addr", addr, "--ca", filepath.Join(certs, "ca.crt"),
			"--cert", filepath.Join(certs, "bob.crt"), "--key", filepath.Join(certs, "bob.key"), "bob").want(t, "context add bob", 0)
		plain.run("context", "add", "--addr", "127.0.0.1:1", "--ca", filepath.Join(certs, "ca.crt"),
			"--cert", filepath.Join(certs, "admin.crt"), "--key", filepath.Join(certs, "admin.key"), "broken").want(t, "context add broken", 0)
		bobJob := plain.start("true") // the first context added is current
		if r := plain.run("context", "list").want(t, "context list", 0); !regexp.MustCompile(`(?m)^\*\s+bob\s`).MatchString(r.stdout) {
			t.Errorf("context list: %v", r)
		}
		r := plain.run("--context", "broken", "list").want(t, "--context broken", 1)
		if !strings.Contains(r.stderr, "127.0.0.1:1") {
			t.Errorf("--context broken: %v", r)
		}
		// A global --addr overrides the context's, and so does TELEHANDLER_ADDR.
		r = plain.run("--context", "broken", "--addr", addr, "list", "-o", "json").want(t, "--context broken --addr", 0)
		if !strings.Contains(r.stdout, bobJob) { // admin sees bob's job
			t.Errorf("admin through the broken context and --addr: %v", r)
		}
		withEnv := plain
		withEnv.vars = append(append([]string{}, plain.vars...), "TELEHANDLER_CONTEXT=broken", "TELEHANDLER_ADDR="+addr)
		withEnv.run("list").want(t, "TELEHANDLER_ADDR over the context", 0)
		plain.run("context", "use", "broken").want(t, "context use broken", 0)
		plain.run("list").want(t, "list through the broken context", 1)
		plain.run("list", "--context", "bob").want(t, "list --context bob", 0)
		r = plain.run("context", "show").want(t, "context show", 0)
		if !strings.Contains(r.stdout, "context: broken") || !strings.Contains(r.stdout, "[context broken]") {
			t.Errorf("context show: %v", r)
		}
		plain.run("context", "rm", "broken").want(t, "context rm", 0)
		plain.run("list").want(t, "list without a current context", 1)

		// A server that accepts TCP but never answers costs the timeout.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		start := time.Now()
		r = plain.run("--context", "bob", "--addr", l.Addr().String(), "--timeout", "1s", "list").want(t, "list against a silent server", 1)
		if took := time.Since(start); took > 8*time.Second { // 1s, with a wide margin for a loaded machine
			t.Errorf("a silent server cost %v with --timeout 1s", took)
		}
		if !strings.Contains(r.stderr, "within --timeout 1s") {
			t.Errorf("silent server: %v", r)
		}
	})

	t.Run("exit codes and hints", func(t *testing.T) {
		alice := certEnv(certs, "alice")
		alice.t = t
		r := alice.run("start", "--watch", "--", "telehandler-no-such-command").want(t, "start --watch of a missing command", 127)
		if !strings.Contains(r.stderr, "telehandler-no-such-command") {
			t.Errorf("missing command: %v", r)
		}
		r = alice.run("start", "--watch", "--", "/etc/passwd").want(t, "start --watch of a file that is not executable", 126)
		if !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("not executable: %v", r)
		}
		alice.run("start", "--", "telehandler-no-such-command").want(t, "start (no --watch) of a missing command", 1)
		job := alice.start("true")
		alice.run("watch", job).want(t, "watch", 0)
		r = alice.run("stop", job).want(t, "stop of an ended job", 0)
		if r.stdout != job+": COMPLETED (had already ended)\n" {
			t.Errorf("stop of an ended job: %v", r)
		}
		r = alice.run("start", "--watch", "--env", "A=1", "-e", "B=2", "--env", "C=3", "--", "sh", "-c", "echo $A$B$C").want(t, "mixed -e and --env", 0)
		if r.stdout != "123\n" {
			t.Errorf("mixed -e and --env: %v", r)
		}
		r = alice.run("--cert", filepath.Join(certs, "server.crt"), "--key", filepath.Join(certs, "server.key"), "list").want(t, "the server certificate as a client's", 1)
		if !strings.Contains(r.stderr, "is a server certificate") || strings.Contains(r.stderr, "is the server running") {
			t.Errorf("server certificate as a client's: %v", r)
		}
	})
}
