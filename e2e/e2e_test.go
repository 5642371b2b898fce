//go:build linux

// Package e2e drives the real telehandler binary end to end, exactly as the
// README shows it: certgen, serve (as root, on a free loopback port, with
// its own cgroup parent), and the CLI's start, watch, status, stop and list
// as two users and an admin, then a SIGTERM of the server.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drrev/telehandler/sandbox"
)

// requireRoot skips a test that needs root, except under CI (env CI set),
// where it fails: CI runs as root, so a skip there would hide a regression.
func requireRoot(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("e2e: the server runs on Linux only")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("e2e: must run as root under CI (the server creates namespaces and cgroups)")
	}
	t.Skip("e2e: needs root (the server creates namespaces and cgroups); run as root, as CI does")
}

// env is one user's view: the binary and the TELEHANDLER_* variables the
// README exports.
type env struct {
	t    *testing.T
	bin  string
	vars []string
}

// result is what one CLI run produced.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %s, stderr %s", r.code, clip(r.stdout), clip(r.stderr))
}

// clip quotes s for a failure message, cut to its first and last 2 KiB
// (a flood's output would print hundreds of megabytes).
func clip(s string) string {
	const keep = 2 << 10
	if len(s) <= 2*keep {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q...(%d bytes)...%q", s[:keep], len(s)-2*keep, s[len(s)-keep:])
}

// run runs `telehandler args...` and returns its output and exit code.
func (e env) run(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(os.Environ(), e.vars...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("telehandler %s: %v", strings.Join(args, " "), err)
		}
		r.code = ee.ExitCode()
		if ctx.Err() != nil {
			e.t.Fatalf("telehandler %s: timed out: %v", strings.Join(args, " "), r)
		}
	}
	return r
}

// want fails unless the run exited with code.
func (r result) want(t *testing.T, what string, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: %v, want exit %d", what, r, code)
	}
	return r
}

// jobNameRE is what start prints: the job's name alone on a line.
var jobNameRE = regexp.MustCompile(`^jobs/[a-z0-9]{26}\n$`)

// start runs `telehandler start -- args...` and returns the job name.
func (e env) start(args ...string) string {
	e.t.Helper()
	r := e.run(append([]string{"start", "--"}, args...)...).want(e.t, "start "+strings.Join(args, " "), 0)
	if !jobNameRE.MatchString(r.stdout) || r.stderr != "" {
		e.t.Fatalf("start printed %v, want the job name alone", r)
	}
	return strings.TrimSpace(r.stdout)
}

// job is the subset of the protojson Job that the test reads.
type job struct {
	Name    string
	Owner   string
	Command string
	Args    []string
	Limits  struct{ CPUMilli, MemoryBytes, Pids string }
	Status  struct {
		State     string
		ExitCode  int
		Signal    int
		Stopped   bool
		StartTime string
		EndTime   string
	}
}

// status runs `status -o json` and parses it.
func (e env) status(name string) job {
	e.t.Helper()
	r := e.run("status", "-o", "json", name).want(e.t, "status -o json "+name, 0)
	var j job
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		e.t.Fatalf("status -o json is not JSON: %v\n%s", err, r.stdout)
	}
	return j
}

// list runs `list -o json` and returns the names.
func (e env) list() []string {
	e.t.Helper()
	r := e.run("list", "-o", "json").want(e.t, "list -o json", 0)
	var resp struct{ Jobs []job }
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil {
		e.t.Fatalf("list -o json is not JSON: %v\n%s", err, r.stdout)
	}
	var names []string
	for _, j := range resp.Jobs {
		names = append(names, j.Name)
	}
	return names
}

// server is a running `telehandler serve`.
type server struct {
	cmd    *exec.Cmd
	parent string // cgroup parent
	mu     sync.Mutex
	log    bytes.Buffer // guarded by mu
	ready  chan struct{}
	exited chan struct{}
	err    error // Wait's result, set before exited is closed
	// stderr is the read end of the server's stderr; closing it is a log
	// reader going away (serve | tee, then Ctrl-C).
	stderr io.ReadCloser
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// buildBinary builds the static telehandler binary into dir, or returns
// $TELEHANDLER_E2E_BIN when set: make test-cgroupv2 runs this test inside a
// VM that has the prebuilt binary but no Go toolchain.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	if bin := os.Getenv("TELEHANDLER_E2E_BIN"); bin != "" {
		return bin
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	bin := filepath.Join(dir, "telehandler")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/drrev/telehandler")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs serve in the background until the test ends and waits
// until it logged that it serves.
func startServer(t *testing.T, bin, dir, addr string, extra ...string) *server {
	t.Helper()
	return startServerIn(t, bin, dir, addr, filepath.Join(dir, "state"), extra...)
}

// lockFile is where serve keeps the lock of a cgroup parent.
func lockFile(parent string) string { return filepath.Join("/run/telehandler", parent+".lock") }

// startServerIn is startServer with the state directory stateDir and more
// serve flags.
func startServerIn(t *testing.T, bin, dir, addr, stateDir string, flags ...string) *server {
	t.Helper()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	return startServerParent(t, bin, dir, addr, stateDir, "telehandler-test-"+hex.EncodeToString(suffix), flags...)
}

// startServerParent is startServerIn with a given cgroup parent (a restart
// after a crash uses the crashed server's).
func startServerParent(t *testing.T, bin, dir, addr, stateDir, parent string, flags ...string) *server {
	t.Helper()
	s := &server{parent: parent, ready: make(chan struct{}), exited: make(chan struct{})}
	certs := filepath.Join(dir, "certs")
	s.cmd = exec.Command(bin, append([]string{"serve", "--listen", addr, "--state-dir", stateDir,
		"--ca", filepath.Join(certs, "ca.crt"), "--cert", filepath.Join(certs, "server.crt"), "--key", filepath.Join(certs, "server.key"),
		"--cgroup-parent", s.parent}, flags...)...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.stderr = stderr
	s.cmd.Stdout = io.Discard
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		announced := false
		for sc.Scan() {
			s.mu.Lock()
			s.log.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if !announced && strings.Contains(sc.Text(), "msg=serving") {
				announced = true
				close(s.ready)
			}
		}
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.terminate(t)
		removeCgroupParent(t, s.parent)
		// A server that exits cleanly removes its lock file; one that did
		// not must not leave it to pile up in /run/telehandler.
		os.Remove(lockFile(s.parent))
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs())
		}
	})
	select {
	case <-s.ready:
	case <-s.exited:
		t.Fatalf("serve exited: %v\n%s", s.err, s.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start within 30s\n%s", s.logs())
	}
	return s
}

// terminate sends SIGTERM (once) and waits for the server to exit; a
// server that does not exit in 30s is killed and the test fails.
func (s *server) terminate(t *testing.T) error {
	t.Helper()
	select {
	case <-s.exited:
		return s.err
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Error("serve still running 30s after SIGTERM; killing it")
		s.cmd.Process.Kill()
		<-s.exited
	}
	return s.err
}

// cgroupDirs lists the directories of the cgroup parent in every hierarchy
// (v1: one per controller; v2: one).
func cgroupDirs(parent string) []string {
	matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	// cpu and cpuacct are often symlinks to cpu,cpuacct: list each directory once.
	var dirs []string
	seen := map[string]bool{}
	for _, d := range matches {
		if real, err := filepath.EvalSymlinks(d); err == nil && !seen[real] {
			seen[real] = true
			dirs = append(dirs, real)
		}
	}
	if fi, err := os.Stat(filepath.Join("/sys/fs/cgroup", parent)); err == nil && fi.IsDir() {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
	}
	return dirs
}

// jobCgroups lists the job cgroups left under the parent.
func jobCgroups(parent string) []string {
	var left []string
	for _, d := range cgroupDirs(parent) {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.IsDir() {
				left = append(left, filepath.Join(d, e.Name()))
			}
		}
	}
	return left
}

// removeCgroupParent removes the test's own cgroup parent (and nothing else).
func removeCgroupParent(t *testing.T, parent string) {
	for _, d := range jobCgroups(parent) {
		if err := syscall.Rmdir(d); err != nil {
			t.Errorf("remove leftover cgroup %s: %v", d, err)
		}
	}
	for _, d := range cgroupDirs(parent) {
		if err := syscall.Rmdir(d); err != nil {
			t.Errorf("remove cgroup parent %s: %v", d, err)
		}
	}
}

// TestEndToEnd is the README's walk-through through the real binary.
func TestEndToEnd(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("e2e: not in -short mode")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // jobs run as nobody; nothing of theirs lives here, but keep it traversable
	bin := buildBinary(t, dir)
	certs := filepath.Join(dir, "certs")

	// telehandler certgen --out certs --user alice --user bob --user admin:admin
	anon := env{t: t, bin: bin}
	anon.run("certgen", "--out", certs, "--user", "alice", "--user", "bob", "--user", "admin:admin").want(t, "certgen", 0)

	addr := freeAddr(t)
	srv := startServer(t, bin, dir, addr)
	as := func(user string) env {
		return env{t: t, bin: bin, vars: []string{
			"TELEHANDLER_ADDR=" + addr,
			"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
			"TELEHANDLER_CERT=" + filepath.Join(certs, user+".crt"),
			"TELEHANDLER_KEY=" + filepath.Join(certs, user+".key"),
		}}
	}
	alice, bob, admin := as("alice"), as("bob"), as("admin")

	t.Run("start then watch: stdout, stderr and the exit code apart", func(t *testing.T) {
		alice.t = t
		// JOB=$(telehandler start -- sh -c 'echo out; echo err >&2; exit 3')
		job := alice.start("sh", "-c", "echo out; echo err >&2; exit 3")
		// telehandler watch $JOB; echo $?
		r := alice.run("watch", job).want(t, "watch", 3)
		if r.stdout != "out\n" || r.stderr != "err\n" {
			t.Errorf("watch: %v, want stdout %q, stderr %q", r, "out\n", "err\n")
		}
		// A second watcher, by bare id, sees the same bytes from byte 0.
		r2 := alice.run("watch", strings.TrimPrefix(job, "jobs/")).want(t, "watch ID", 3)
		if r2.stdout != r.stdout || r2.stderr != r.stderr {
			t.Errorf("second watch: %v", r2)
		}
		// telehandler status $JOB
		st := alice.run("status", job).want(t, "status", 0)
		for _, want := range []string{"name:     " + job, "owner:    alice", "state:    FAILED (exit code 3)", "command:  sh -c 'echo out; echo err >&2; exit 3'"} {
			if !strings.Contains(st.stdout, want) {
				t.Errorf("status does not show %q:\n%s", want, st.stdout)
			}
		}
		j := alice.status(job)
		if j.Status.State != "STATE_FAILED" || j.Status.ExitCode != 3 || j.Owner != "alice" || j.Status.EndTime == "" {
			t.Errorf("status -o json: %+v", j)
		}
	})

	t.Run("status and list escape a hostile command line; watch stays byte-exact", func(t *testing.T) {
		alice.t = t
		// telehandler start -- printf '%s' $'\e[2J\e]0;pwned\a\u202e'
		attack := "\x1b[2J\x1b]0;pwned\a\u202e"
		job := alice.start("printf", "%s", attack)
		if r := alice.run("watch", job).want(t, "watch", 0); r.stdout != attack {
			t.Errorf("watch: %q, want the job's bytes %q", r.stdout, attack)
		}
		shown := `printf %s $'\x1b[2J\x1b]0;pwned\a\u202e'`
		st := alice.run("status", job).want(t, "status", 0)
		ls := alice.run("list").want(t, "list", 0)
		js := alice.run("status", "-o", "json", job).want(t, "status -o json", 0)
		for what, out := range map[string]string{"status": st.stdout, "list": ls.stdout, "status -o json": js.stdout} {
			if strings.ContainsAny(out, "\x1b\a\u202e") {
				t.Errorf("%s prints the command's control characters raw:\n%q", what, out)
			}
		}
		if !strings.Contains(st.stdout, "command:  "+shown) || !strings.Contains(ls.stdout, shown) {
			t.Errorf("status or list do not show %s:\n%s\n%s", shown, st.stdout, ls.stdout)
		}
		if j := alice.status(job); len(j.Args) != 2 || j.Args[1] != attack {
			t.Errorf("status -o json args = %q, want [%%s %q]", j.Args, attack)
		}
	})

	t.Run("start --watch: the job runs in a sandbox as a user of its own", func(t *testing.T) {
		alice.t = t
		// telehandler start --watch -- sh -c 'echo hello from $(hostname)'
		// /proc/net/dev lists the interfaces of the job's network namespace.
		r := alice.run("start", "--watch", "--", "sh", "-c", "echo hello from $(hostname); id -u; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '").want(t, "start --watch", 0)
		lines := strings.Split(r.stdout, "\n")
		uid, err := strconv.ParseUint(lines[min(1, len(lines)-1)], 10, 32)
		if len(lines) != 4 || lines[0] != "hello from sandbox" || lines[2] != "lo" || r.stderr != "" ||
			err != nil || uid < uint64(sandbox.DefaultUIDRange.First) || uid > uint64(sandbox.DefaultUIDRange.Last()) {
			t.Errorf("start --watch: %v, want a uid of %s", r, sandbox.DefaultUIDRange)
		}
		// A few MB in many chunks arrive byte-exact, stdout and stderr apart.
		r = alice.run("start", "--watch", "--cpu", "1", "--", "sh", "-c", "seq 1 300000; seq 1 1000 >&2").want(t, "start --watch of seq", 0)
		var want, wantErr strings.Builder
		for i := 1; i <= 300000; i++ {
			fmt.Fprintf(&want, "%d\n", i)
			if i <= 1000 {
				fmt.Fprintf(&wantErr, "%d\n", i)
			}
		}
		if r.stdout != want.String() || r.stderr != wantErr.String() {
			t.Errorf("seq through watch: %d stdout bytes (want %d), %d stderr bytes (want %d)",
				len(r.stdout), want.Len(), len(r.stderr), wantErr.Len())
		}
		// Limits, environment and working directory as asked.
		r = alice.run("start", "--watch", "--memory", "64MiB", "--cpu", "20%", "--pids", "50", "--env", "GREETING=hi,there", "--dir", "/tmp",
			"--", "sh", "-c", `echo "$GREETING from $(pwd)"`).want(t, "start --watch with limits", 0)
		if r.stdout != "hi,there from /tmp\n" {
			t.Errorf("start --watch with env and dir: %v", r)
		}
	})

	t.Run("a command that cannot start is an error", func(t *testing.T) {
		alice.t = t
		r := alice.run("start", "--", "/no/such/binary").want(t, "start of a missing binary", 1)
		if r.stdout != "" || !strings.HasPrefix(r.stderr, "telehandler: ") || !strings.Contains(r.stderr, "/no/such/binary") {
			t.Errorf("start of a missing binary: %v", r)
		}
		r = alice.run("start", "--watch", "--", "/no/such/binary").want(t, "start --watch of a missing binary", 127)
		if r.stdout != "" || !strings.Contains(r.stderr, "/no/such/binary") {
			t.Errorf("start --watch of a missing binary: %v", r)
		}
		r = alice.run("start", "--memory", "-1", "--", "true").want(t, "start with a negative limit", 1)
		if !strings.Contains(r.stderr, "--memory") {
			t.Errorf("negative limit: %v", r)
		}
		r = alice.run("start", "--memory", "1PiB", "--", "true").want(t, "start with an absurd limit", 1)
		if !strings.Contains(r.stderr, "above the server's maximum") {
			t.Errorf("absurd limit: %v", r)
		}
		r = alice.run("status", "jobs/a/b").want(t, "status of a malformed name", 1)
		if !strings.Contains(r.stderr, "jobs/{id}") {
			t.Errorf("malformed name: %v", r)
		}
	})

	var sleeper string // alice's job, still running when the server stops
	t.Run("stop, users and admin", func(t *testing.T) {
		alice.t, bob.t, admin.t = t, t, t
		job := alice.start("sleep", "1000")
		if j := alice.status(job); j.Status.State != "STATE_RUNNING" || j.Status.ExitCode != -1 {
			t.Fatalf("status of a running job: %+v", j)
		}
		id := strings.TrimPrefix(job, "jobs/")
		if !hasJobCgroup(srv.parent, id) {
			t.Errorf("no cgroup for %s under %v", id, cgroupDirs(srv.parent))
		}

		// bob sees nothing of alice's job: the same answer as a missing job.
		ghost := "jobs/" + strings.Repeat("a", 26)
		missing := bob.run("status", ghost).want(t, "bob: status of a missing job", 1)
		hidden := bob.run("status", job).want(t, "bob: status of alice's job", 1)
		if hidden.stderr != strings.ReplaceAll(missing.stderr, ghost, job) || !strings.Contains(hidden.stderr, "not found") {
			t.Errorf("alice's job seen by bob: %q; a missing job: %q", hidden.stderr, missing.stderr)
		}
		bob.run("stop", job).want(t, "bob: stop of alice's job", 1)
		bob.run("watch", job).want(t, "bob: watch of alice's job", 1)
		if j := alice.status(job); j.Status.State != "STATE_RUNNING" {
			t.Fatalf("bob's stop stopped alice's job: %+v", j)
		}
		bobJob := bob.start("true")
		for _, n := range bob.list() {
			if n != bobJob {
				t.Errorf("bob's list shows %s", n)
			}
		}
		all := strings.Join(admin.list(), " ")
		for _, n := range []string{job, bobJob} {
			if !strings.Contains(all, n) {
				t.Errorf("admin's list lacks %s", n)
			}
		}
		if r := admin.run("status", bobJob).want(t, "admin: status of bob's job", 0); !strings.Contains(r.stdout, "owner:    bob") {
			t.Errorf("admin status of bob's job: %v", r)
		}

		// telehandler stop $JOB
		r := alice.run("stop", job).want(t, "stop", 0)
		if r.stdout != job+": FAILED (killed by SIGKILL, stopped)\n" {
			t.Errorf("stop printed %v", r)
		}
		j := alice.status(job)
		if j.Status.State != "STATE_FAILED" || !j.Status.Stopped || j.Status.Signal != 9 {
			t.Errorf("status after stop: %+v", j)
		}
		if !jobCgroupGone(srv.parent, id) {
			t.Errorf("cgroup of %s left after stop", id)
		}
		alice.run("watch", job).want(t, "watch of a stopped job", 128+9)
		if r := alice.run("stop", job).want(t, "stop of an ended job", 0); r.stdout != job+": FAILED (killed by SIGKILL, stopped) (had already ended)\n" {
			t.Errorf("stop of an ended job: %v", r)
		}

		// telehandler list -o wide (the default layout: e2e/clib_test.go)
		r = alice.run("list", "-o", "wide").want(t, "list", 0)
		if !strings.HasPrefix(r.stdout, "JOB") || !strings.Contains(r.stdout, job) || strings.Contains(r.stdout, bobJob) {
			t.Errorf("alice's list:\n%s", r.stdout)
		}

		// An admin may stop anyone's job; --grace sends SIGTERM first,
		// which a job that handles it can act on.
		other := alice.start("sh", "-c", "trap 'echo bye; exit 5' TERM; echo ready; while :; do sleep 0.1; done")
		if err := alice.watchUntil(other, "ready\n"); err != nil {
			t.Fatal(err)
		}
		r = admin.run("stop", "--grace", "20s", other).want(t, "admin: stop --grace of alice's job", 0)
		if r.stdout != other+": FAILED (exit code 5, stopped)\n" {
			t.Errorf("stop --grace printed %v", r)
		}
		if r := alice.run("watch", other).want(t, "watch of a job stopped with grace", 5); r.stdout != "ready\nbye\n" {
			t.Errorf("watch of a job stopped with grace: %v", r)
		}
		sleeper = alice.start("sh", "-c", "sleep 1000 & sleep 1000 & wait")
	})

	t.Run("Ctrl-C stops watching, not the job", func(t *testing.T) {
		alice.t = t
		job := alice.start("sh", "-c", "echo ready; exec sleep 1000")
		if err := alice.watchUntil(job, "ready\n"); err != nil {
			t.Error(err)
		}
		if j := alice.status(job); j.Status.State != "STATE_RUNNING" {
			t.Errorf("job after Ctrl-C of watch: %+v", j.Status)
		}
		alice.run("stop", job).want(t, "stop", 0)
	})

	t.Run("client errors name the fix", func(t *testing.T) {
		noCert := env{t: t, bin: bin, vars: []string{"TELEHANDLER_ADDR=" + addr, "TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt")}}
		if r := noCert.run("list").want(t, "list without a certificate", 1); !strings.Contains(r.stderr, "--cert") {
			t.Errorf("list without a certificate: %v", r)
		}
		wrongCA := as("alice")
		wrongCA.t = t
		wrongCA.vars[1] = "TELEHANDLER_CA=" + filepath.Join(certs, "alice.crt")
		if r := wrongCA.run("list").want(t, "list with the wrong CA", 1); !strings.Contains(r.stderr, "--ca") {
			t.Errorf("list with the wrong CA: %v", r)
		}
	})

	// SIGTERM: the server stops every job, removes its cgroups and exits 0.
	if j := alice.status(sleeper); j.Status.State != "STATE_RUNNING" {
		t.Fatalf("job before shutdown: %+v", j.Status)
	}
	if err := srv.terminate(t); err != nil {
		t.Errorf("serve after SIGTERM: %v, want exit 0", err)
	}
	if left := jobCgroups(srv.parent); len(left) != 0 {
		t.Errorf("job cgroups left after shutdown: %v", left)
	}
	checkNothingLeft(t, srv)
	if !strings.Contains(srv.logs(), "shut down") {
		t.Errorf("server log lacks the shutdown:\n%s", srv.logs())
	}
	if r := alice.run("list").want(t, "list after shutdown", 1); !strings.Contains(r.stderr, "is the server running") {
		t.Errorf("list after shutdown: %v", r)
	}
}

// watchUntil runs `telehandler watch job` until its stdout has printed
// want, then interrupts it as Ctrl-C would: watch must exit 130 and leave
// the job running.
func (e env) watchUntil(job, want string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, "watch", job)
	cmd.Env = append(os.Environ(), e.vars...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(out, got); err != nil || string(got) != want {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("watch %s printed %q (%v), want %q", job, got, err, want)
	}
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		return fmt.Errorf("watch after Ctrl-C: %v (stderr %q), want exit 130", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "keeps running") {
		return fmt.Errorf("watch after Ctrl-C printed %q", stderr.String())
	}
	return nil
}

// hasJobCgroup reports whether the job's cgroup exists in any hierarchy. A
// job started from a warm shim (serve --shim-pool) keeps the shim's cgroup,
// named pool-*: then any pool-* cgroup that holds something other than a
// waiting warm shim counts, so callers have at most one job running.
func hasJobCgroup(parent, id string) bool {
	for _, d := range cgroupDirs(parent) {
		if _, err := os.Stat(filepath.Join(d, id)); err == nil {
			return true
		}
	}
	for _, c := range busyCgroups(parent) {
		if strings.HasPrefix(filepath.Base(c), "pool-") {
			return true
		}
	}
	return false
}

// jobCgroupGone waits until hasJobCgroup is false, for at most 10 s: a
// warm shim the server is starting has a cgroup before it waits (a second
// or two on the slowest machine).
func jobCgroupGone(parent, id string) bool {
	for deadline := time.Now().Add(10 * time.Second); hasJobCgroup(parent, id); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// busyCgroupsLeft is busyCgroups once it is empty, or after 10 s (see
// jobCgroupGone).
func busyCgroupsLeft(parent string) []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := busyCgroups(parent)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// busyCgroups is jobCgroups without those of warm shims still waiting for
// a job (serve --shim-pool): they are no job's.
func busyCgroups(parent string) []string {
	var busy []string
	for _, c := range jobCgroups(parent) {
		if !waitingWarmShim(c) {
			busy = append(busy, c)
		}
	}
	return busy
}

// waitingWarmShim reports whether cgroup dir holds a warm shim waiting for
// its job and nothing else (its command line is BIN __child warm until it
// execs the job's command).
func waitingWarmShim(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	pids := strings.Fields(string(b))
	if err != nil || len(pids) == 0 {
		return false
	}
	for _, pid := range pids {
		cmdline, err := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		if err != nil || !strings.HasSuffix(string(cmdline), "\x00__child\x00warm\x00") {
			return false
		}
	}
	return true
}
