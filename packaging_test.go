package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestInstall runs make install into a temporary DESTDIR, checks what it
// wrote, that a second install keeps edited settings, that the installed
// bash completion completes (and runs nothing after "--"), and (with
// systemd-analyze, which make check-unit installs) that systemd accepts the
// unit without a single warning.
func TestInstall(t *testing.T) {
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
		if code, _, stderr := runApp(t, "serve", "--"+flag+"=1", "--help"); code != 0 { // "=": bool flags too
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

	testBashCompletion(t, dest)

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

// testBashCompletion sources the installed bash completion and completes
// words the way bash does, through a telehandler on PATH that logs each
// run: after "--" comes a job's command line, which must not be run.
func testBashCompletion(t *testing.T, dest string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Log("bash is not installed: completion not checked")
		return
	}
	bin := t.TempDir()
	runs := filepath.Join(bin, "runs")
	wrapper := "#!/bin/sh\necho \"$*\" >> " + runs + "\nexec " + filepath.Join(dest, "usr/local/bin/telehandler") + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "telehandler"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		script := "source " + filepath.Join(dest, "usr/local/share/bash-completion/completions/telehandler") + "\n" +
			"COMP_WORDS=(" + strings.Join(words, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) + "\n" +
			"_telehandler; echo \"${COMPREPLY[*]}\""
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("complete %v: %v\n%s", words, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := complete("telehandler", "st"); got != "start status stop" {
		t.Errorf("telehandler st<Tab>: %q", got)
	}
	if got := complete("telehandler", "stop", "--gr"); got != "--grace" {
		t.Errorf("telehandler stop --gr<Tab>: %q", got)
	}
	if got := complete("telehandler", "context", "u"); got != "use" {
		t.Errorf("telehandler context u<Tab>: %q", got)
	}
	before, _ := os.ReadFile(runs)
	if got := complete("telehandler", "start", "--", "touch", "x"); got != "" {
		t.Errorf("completion after --: %q", got)
	}
	if after, _ := os.ReadFile(runs); string(after) != string(before) {
		t.Errorf("completion after -- ran telehandler: %q", strings.TrimPrefix(string(after), string(before)))
	}
}
