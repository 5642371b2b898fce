package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runApp runs the CLI in-process and returns its exit status and output.
func runApp(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := exitStatus(newApp(&stdout, &stderr).Run(append([]string{"telehandler"}, args...)), &stderr)
	return code, stdout.String(), stderr.String()
}

// TestHelp checks every command explains itself with an example.
func TestHelp(t *testing.T) {
	for _, cmd := range newApp(nil, nil).Commands {
		if cmd.Name == "version" {
			continue
		}
		code, out, _ := runApp(t, cmd.Name, "--help")
		if code != 0 || !strings.Contains(out, "Example") || !strings.Contains(out, "telehandler "+cmd.Name) {
			t.Errorf("%s --help: exit %d, no example:\n%s", cmd.Name, code, out)
		}
	}
	if code, out, _ := runApp(t, "--help"); code != 0 || !strings.Contains(out, "start") {
		t.Errorf("--help: %d %s", code, out)
	}
	// help and help CMD, as git and docker users type them.
	if code, out, _ := runApp(t, "help"); code != 0 || !strings.Contains(out, "context") {
		t.Errorf("help: %d %s", code, out)
	}
	if code, out, _ := runApp(t, "help", "certgen"); code != 0 || !strings.Contains(out, "--renew") {
		t.Errorf("help certgen: %d %s", code, out)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	if code, out, _ := runApp(t, "--version"); code != 0 || out != "telehandler version "+version+"\n" {
		t.Errorf("--version: %d %q", code, out)
	}
	if code, out, _ := runApp(t, "version"); code != 0 || out != "telehandler "+version+"\n" {
		t.Errorf("version: %d %q", code, out)
	}
	for sh, want := range map[string]string{"bash": "complete -o bashdefault -o default -F _telehandler telehandler", "zsh": "compdef _telehandler telehandler"} {
		if code, out, _ := runApp(t, "completion", sh); code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "--generate-bash-completion") {
			t.Errorf("completion %s: %d\n%s", sh, code, out)
		}
	}
	// What the scripts ask for: the commands, then a command's flags.
	// urfave/cli reads the word being completed from os.Args.
	args := os.Args
	t.Cleanup(func() { os.Args = args })
	os.Args = []string{"telehandler", "--generate-bash-completion"}
	if code, out, _ := runApp(t, "--generate-bash-completion"); code != 0 || !strings.Contains(out, "\nstart\n") || !strings.Contains(out, "\ncontext\n") {
		t.Errorf("command completion: %d %q", code, out)
	}
	os.Args = []string{"telehandler", "stop", "-", "--generate-bash-completion"}
	if code, out, _ := runApp(t, "stop", "-", "--generate-bash-completion"); code != 0 || !strings.Contains(out, "--grace") {
		t.Errorf("flag completion of stop: %d %q", code, out)
	}
}

func TestParseLongDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"168h": 168 * time.Hour, "30d": 30 * 24 * time.Hour, "10y": 3650 * 24 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseLongDuration(in); err != nil || got != want {
			t.Errorf("parseLongDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "y", "-1d", "0d", "0s", "1.5y", "soon", "99999999999y"} {
		if got, err := parseLongDuration(in); err == nil {
			t.Errorf("parseLongDuration(%q) = %v, want an error", in, got)
		}
	}
	for d, want := range map[time.Duration]string{7 * 24 * time.Hour: "7d", 3650 * 24 * time.Hour: "10y", 90 * time.Minute: "1h30m0s"} {
		if got := formatLongDuration(d); got != want {
			t.Errorf("formatLongDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestUsageErrors checks command line mistakes: one "telehandler: ..."
// message on stderr naming the fix, exit 1, nothing on stdout.
func TestUsageErrors(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("TELEHANDLER_CA", "")
	t.Setenv("TELEHANDLER_CERT", "")
	t.Setenv("TELEHANDLER_KEY", "")
	cases := map[string][]string{
		`unknown command "frobnicate"`:  {"frobnicate"},
		"missing COMMAND":               {"start"},
		"--memory":                      {"start", "--memory", "lots", "--", "true"},
		"flag provided but not defined": {"start", "--bogus", "--", "true"},
		"missing JOB":                   {"status"},
		"takes one JOB":                 {"stop", "a", "b"},
		`-o "yaml"`:                     {"list", "-o", "yaml"},
		"no CA certificate: set --ca":   {"list"},
		// "h" and "help" are job references (a name, an id prefix), not
		// help: they reach the connection (and need a certificate).
		"set --ca or TELEHANDLER_CA to the ca.crt":             {"status", "h"},
		"no CA certificate: set --ca or TELEHANDLER_CA to the": {"watch", "help"},
		"--env \"=x\"": {"start", "--env", "=x", "--", "true"},
		// -e and --env mixed parse (and then need a certificate).
		"no CA certificate: set --ca or TELEHANDLER_CA": {"start", "--env", "A=1", "-e", "B=2", "--", "true"},
		"completion \"fish\"":                           {"completion", "fish"},
		"--validity":                                    {"certgen", "--out", "x", "--validity", "soon"},
	}
	for want, args := range cases {
		code, out, errOut := runApp(t, args...)
		if code != 1 || out != "" || !strings.HasPrefix(errOut, "telehandler: ") || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, out, errOut, want)
		}
	}
}

// TestServeRefuses checks serve's refusals before it touches anything.
func TestServeRefuses(t *testing.T) {
	t.Setenv("TELEHANDLER_SERVER_CA", "")
	want := "telehandler certgen" // a missing certificate names the tool
	if os.Geteuid() != 0 {
		want = "must run as root"
	}
	code, _, errOut := runApp(t, "serve")
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("serve without certificates: exit %d, %q; want %q", code, errOut, want)
	}
	if os.Geteuid() == 0 {
		dir := t.TempDir()
		code, _, errOut = runApp(t, "serve", "--ca", dir+"/ca.crt", "--cert", dir+"/server.crt", "--key", dir+"/server.key")
		if code != 1 || !strings.Contains(errOut, "--ca") || !strings.Contains(errOut, want) {
			t.Errorf("serve with missing files: exit %d, %q", code, errOut)
		}
	}
}

func TestParseRunAs(t *testing.T) {
	for in, want := range map[string][2]int64{
		"root": {-1, -1}, "0:0": {-1, -1}, "65534:65534": {65534, 65534}, "1000": {1000, 1000},
		"1000:100": {1000, 100}, "nobody": {65534, 65534}, "root:0": {0, 0},
	} {
		uid, gid, err := parseRunAs(in)
		got := [2]int64{-1, -1}
		if uid != nil {
			got = [2]int64{int64(*uid), int64(*gid)}
		}
		if err != nil || got != want {
			t.Errorf("parseRunAs(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":", "nosuchuser-xyz", "1:nosuchgroup-xyz", "-1"} {
		if _, _, err := parseRunAs(in); err == nil {
			t.Errorf("parseRunAs(%q) accepted", in)
		}
	}
}

func TestValidCgroupParent(t *testing.T) {
	for _, ok := range []string{"telehandler", "telehandler-test-1a2b", "telehandler.dev"} {
		if !validCgroupParent(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "system.slice", "telehandler/..", "telehandler/x", "../telehandler", "tele", "telehandler.."} {
		if validCgroupParent(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCertgenWarnsLooseFiles: certgen keeps the modes of a directory or CA
// key that exist, and says when others may change the certificates or
// read the CA's key; the files it makes itself draw no warning.
func TestCertgenWarnsLooseFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	if code, _, errOut := runApp(t, "certgen", "--out", dir, "--user", "alice"); code != 0 || errOut != "" {
		t.Fatalf("certgen into a new directory: %d, stderr %q", code, errOut)
	}
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Join(dir, "ca.key"), 0o644)
	code, _, errOut := runApp(t, "certgen", "--out", dir, "--user", "bob")
	if code != 0 {
		t.Fatalf("certgen --user bob: %d %s", code, errOut)
	}
	for _, want := range []string{"chmod go-w " + dir, "chmod 600 " + filepath.Join(dir, "ca.key")} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
}
