package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit runs make install into a temporary DESTDIR, checks what
// it wrote, that a second install keeps edited settings, and (with
// systemd-analyze, which make check-unit installs) that systemd accepts
// the unit without a single warning.
func TestSystemdUnit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary through make install")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dest := t.TempDir()
	install := func() string {
		t.Helper()
		cmd := exec.Command("make", "--no-print-directory", "install", "DESTDIR="+dest, "BIN="+filepath.Join(dest, "build", "telehandler"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/telehandler":                               0o755,
		"etc/systemd/system/telehandler.service":                  0o644,
		"etc/telehandler/serve.env":                               0o644,
		"etc/telehandler/deny-list":                               0o644,
		"usr/local/share/bash-completion/completions/telehandler": 0o644,
		"usr/local/share/zsh/site-functions/_telehandler":         0o644,
	} {
		fi, err := os.Stat(filepath.Join(dest, path))
		if err != nil || fi.Mode().Perm() != mode || fi.Size() == 0 {
			t.Errorf("%s: %v, err %v; want a non-empty file with mode %v", path, fi, err, mode)
		}
	}
	if fi, err := os.Stat(filepath.Join(dest, "etc/telehandler/certs")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("certs directory: %v, %v", fi, err)
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/telehandler.service"))
	env, _ := os.ReadFile(filepath.Join(dest, "etc/telehandler/serve.env"))
	if bytes.Contains(unit, []byte("@")) || bytes.Contains(env, []byte("@")) || !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/telehandler serve")) ||
		!bytes.Contains(env, []byte("TELEHANDLER_SERVER_CA=/etc/telehandler/certs/ca.crt")) {
		t.Errorf("placeholders left or paths wrong:\n%s\n%s", unit, env)
	}
	// The settings name only flags serve has.
	for _, line := range strings.Split(string(env), "\n") {
		name, _, ok := strings.Cut(strings.TrimPrefix(line, "# "), "=")
		if !ok || !strings.HasPrefix(name, "TELEHANDLER_") || strings.Contains(name, " ") {
			continue
		}
		flag := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "TELEHANDLER_"), "_", "-"))
		flag = strings.TrimPrefix(flag, "server-")
		if code, _, stderr := runApp(t, "serve", "--"+flag, "1", "--help"); code != 0 {
			t.Errorf("serve.env sets %s, but serve has no --%s: %s", name, flag, stderr)
		}
	}

	// A second install keeps the operator's settings.
	os.WriteFile(filepath.Join(dest, "etc/telehandler/serve.env"), []byte("# mine\n"), 0o644)
	if out := install(); !strings.Contains(out, "kept") {
		t.Errorf("second install: %s", out)
	}
	if got, _ := os.ReadFile(filepath.Join(dest, "etc/telehandler/serve.env")); string(got) != "# mine\n" {
		t.Errorf("make install overwrote serve.env: %q", got)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (make check-unit installs it): the unit's syntax is not verified")
	}
	// verify checks that ExecStart exists: point the unit at the DESTDIR.
	local := bytes.ReplaceAll(unit, []byte("/usr/local/bin/"), []byte(filepath.Join(dest, "usr/local/bin")+"/"))
	verifyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(verifyDir, "telehandler.service"), local, 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(analyze, "verify", filepath.Join(verifyDir, "telehandler.service"))
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, stderr.String())
	}
}
