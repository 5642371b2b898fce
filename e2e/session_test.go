//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain gives every CLI the tests run a session cache of its own
// (XDG_CACHE_HOME), so that no test writes TLS sessions into the home
// directory of whoever runs them.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "telehandler-e2e-cache-")
	if err == nil {
		os.Setenv("XDG_CACHE_HOME", dir)
	}
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// TestCLISessionResumption: the second CLI command resumes the first one's
// TLS session (the server's log says tls_resumed), --no-session-cache makes
// a full handshake, and a certificate denied on SIGHUP is refused at the
// next command although its session had resumed until then.
func TestCLISessionResumption(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("e2e: not in -short mode")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := buildBinary(t, dir)
	certs := filepath.Join(dir, "certs")
	r := env{t: t, bin: bin}.run("certgen", "--out", certs, "--user", "alice")
	r.want(t, "certgen", 0)
	alice := serials(r.stdout)["alice"]
	deny := filepath.Join(dir, "deny")
	if err := os.WriteFile(deny, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	srv := startServer(t, bin, dir, addr, "--deny-list", deny)
	cache := filepath.Join(dir, "cache")
	cli := env{t: t, bin: bin, vars: []string{
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "no-config"),
		"XDG_CACHE_HOME=" + cache,
		"TELEHANDLER_ADDR=" + addr,
		"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
		"TELEHANDLER_CERT=" + filepath.Join(certs, "alice.crt"),
		"TELEHANDLER_KEY=" + filepath.Join(certs, "alice.key"),
	}}
	resumed := func() int { return strings.Count(srv.logs(), "tls_resumed=true") }
	// The server logs a call once it answered it: wait for the line.
	waitResumed := func(what string, want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for resumed() != want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := resumed(); got != want {
			t.Errorf("%s: %d resumed calls in the server log, want %d:\n%s", what, got, want, srv.logs())
		}
	}

	cli.run("list").want(t, "first list", 0)
	waitResumed("first list (a full handshake)", 0)
	files, _ := filepath.Glob(filepath.Join(cache, "telehandler", "tls-sessions", "*"))
	if len(files) != 1 {
		t.Fatalf("session files after the first command: %v", files)
	}
	if fi, err := os.Stat(files[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("session file %s: %v %v, want mode 0600", files[0], fi.Mode(), err)
	}
	cli.run("list").want(t, "second list", 0)
	waitResumed("second list", 1)
	r = cli.run("start", "--watch", "--", "echo", "hi").want(t, "start --watch", 0)
	if r.stdout != "hi\n" {
		t.Errorf("start --watch over a resumed session: %v", r)
	}
	waitResumed("start --watch", 3) // StartJob and WatchJobOutput
	cli.run("--no-session-cache", "list").want(t, "list --no-session-cache", 0)
	time.Sleep(200 * time.Millisecond)
	waitResumed("list --no-session-cache", 3)

	if err := os.WriteFile(deny, []byte("serial="+alice+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(srv.logs(), "reloaded certificates and deny list") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload in the server log:\n%s", srv.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	r = cli.run("list").want(t, "list of a denied certificate", 1)
	if !strings.Contains(r.stderr, "revoked") {
		t.Errorf("refusal after SIGHUP: %v", r)
	}
	time.Sleep(200 * time.Millisecond)
	waitResumed("list of a denied certificate", 3)
}
