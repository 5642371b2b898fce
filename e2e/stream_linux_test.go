package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cluster is a built binary, certificates for alice, bob and admin, and a
// running server.
type cluster struct {
	bin, dir, addr string
	srv            *server
}

// newCluster builds the binary, makes the certificates and starts serve
// with its state in stateDir ("" = a directory of the test).
func newCluster(t *testing.T, stateDir string, flags ...string) *cluster {
	t.Helper()
	requireRoot(t)
	if testing.Short() {
		t.Skip("e2e: not in -short mode")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	c := &cluster{bin: buildBinary(t, dir), dir: dir, addr: freeAddr(t)}
	env{t: t, bin: c.bin}.run("certgen", "--out", filepath.Join(dir, "certs"), "--user", "alice", "--user", "bob", "--user", "admin:admin").want(t, "certgen", 0)
	if stateDir == "" {
		stateDir = filepath.Join(dir, "state")
	}
	c.srv = startServerIn(t, c.bin, dir, c.addr, stateDir, flags...)
	return c
}

// as is the CLI as user.
func (c *cluster) as(t *testing.T, user string) env {
	certs := filepath.Join(c.dir, "certs")
	return env{t: t, bin: c.bin, vars: []string{
		"TELEHANDLER_ADDR=" + c.addr,
		"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
		"TELEHANDLER_CERT=" + filepath.Join(certs, user+".crt"),
		"TELEHANDLER_KEY=" + filepath.Join(certs, user+".key"),
	}}
}

// checkNothingLeft fails unless the server, now exited, left neither its
// parent cgroup (in any hierarchy) nor its lock file.
func checkNothingLeft(t *testing.T, srv *server) {
	t.Helper()
	if dirs := cgroupDirs(srv.parent); len(dirs) != 0 {
		t.Errorf("parent cgroups left after a clean shutdown: %v", dirs)
	}
	if _, err := os.Stat(lockFile(srv.parent)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock file %s after a clean shutdown: %v", lockFile(srv.parent), err)
	}
}

// watcher is a `telehandler args...` process (watch, start --watch) that
// streams a job's output.
type watcher struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr strings.Builder
}

// startWatcher runs `telehandler args...` and waits until its stdout
// printed the line want.
func (e env) startWatcher(want string, args ...string) *watcher {
	e.t.Helper()
	w := &watcher{cmd: exec.Command(e.bin, args...)}
	w.cmd.Env = append(os.Environ(), e.vars...)
	w.cmd.Stderr = &w.stderr
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
	})
	w.stdout = bufio.NewReader(out)
	line, err := w.stdout.ReadString('\n')
	if err != nil || line != want+"\n" {
		e.t.Fatalf("%s printed %q (%v), want %q", strings.Join(args, " "), line, err, want)
	}
	return w
}

// wait returns the watcher's exit code and stderr once it exited, within
// 30s.
func (w *watcher) wait(t *testing.T) (int, string) {
	t.Helper()
	io.Copy(io.Discard, w.stdout)
	done := make(chan error, 1)
	go func() { done <- w.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("watcher: %v", err)
		}
		return w.cmd.ProcessState.ExitCode(), w.stderr.String()
	case <-time.After(30 * time.Second):
		w.cmd.Process.Kill()
		<-done
		t.Fatalf("watcher still running 30s later; stderr %q", w.stderr.String())
		return 0, ""
	}
}

// TestShutdownTellsWatchers stops the server with SIGTERM while watchers
// follow running jobs: each learns from its stream that the server stopped
// the job ("stopped by server shutdown") and exits as for a stopped job
// (128+9), not with "cannot reach the server"; the server logs one line
// per job it stopped, and leaves no parent cgroup and no lock file.
func TestShutdownTellsWatchers(t *testing.T) {
	c := newCluster(t, "")
	alice, bob := c.as(t, "alice"), c.as(t, "bob")

	t.Run("start --merge keeps the order written", func(t *testing.T) {
		alice.t = t
		r := alice.run("start", "--watch", "--merge", "--cpu", "1", "--", "sh", "-c", `for i in $(seq 1000); do echo o$i; echo e$i >&2; done`).want(t, "start --watch --merge", 0)
		var want strings.Builder
		for i := 1; i <= 1000; i++ {
			fmt.Fprintf(&want, "o%d\ne%d\n", i, i)
		}
		if r.stdout != want.String() || r.stderr != "" {
			t.Errorf("--merge: %d stdout bytes in order: %v, stderr %q", len(r.stdout), r.stdout == want.String(), r.stderr)
		}
	})

	var jobs []string
	var watchers []*watcher
	for _, e := range []env{alice, alice, bob} {
		job := e.start("sh", "-c", "echo ready; exec sleep 1000")
		jobs = append(jobs, job)
		watchers = append(watchers, e.startWatcher("ready", "watch", job))
	}
	// A second watcher of the same job, and start --watch.
	watchers = append(watchers, alice.startWatcher("ready", "watch", jobs[0]))
	watchers = append(watchers, bob.startWatcher("ready", "start", "--watch", "--", "sh", "-c", "echo ready; exec sleep 1000"))

	if err := c.srv.terminate(t); err != nil {
		t.Errorf("serve after SIGTERM: %v, want exit 0", err)
	}
	for i, w := range watchers {
		code, stderr := w.wait(t)
		if code != 128+9 || !strings.Contains(stderr, "was stopped by server shutdown") || strings.Contains(stderr, "cannot reach") {
			t.Errorf("watcher %d: exit %d, stderr %q; want 137 and \"stopped by server shutdown\"", i, code, stderr)
		}
	}
	logs := c.srv.logs()
	if n := strings.Count(logs, `msg="job stopped by server shutdown"`); n != 4 {
		t.Errorf("the server logged %d jobs stopped by its shutdown, want 4:\n%s", n, logs)
	}
	for _, job := range jobs {
		if !strings.Contains(logs, `msg="job stopped by server shutdown" job_id=`+strings.TrimPrefix(job, "jobs/")) {
			t.Errorf("no shutdown line for %s", job)
		}
	}
	checkNothingLeft(t, c.srv)
}

// outputStatus is the output part of `status -o json`.
type outputStatus struct {
	State              string
	Stopped            bool
	OutputBytes        string
	OutputTruncated    bool
	OutputTruncation   string
	OutputDroppedBytes string
	OutputError        string
}

func (s outputStatus) bytes() int64 { n, _ := strconv.ParseInt(s.OutputBytes, 10, 64); return n }
func (s outputStatus) dropped() int64 {
	n, _ := strconv.ParseInt(s.OutputDroppedBytes, 10, 64)
	return n
}

// outputOf runs `status -o json` and returns its output fields.
func (e env) outputOf(name string) outputStatus {
	e.t.Helper()
	r := e.run("status", "-o", "json", name).want(e.t, "status -o json "+name, 0)
	var j struct{ Status outputStatus }
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		e.t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	return j.Status
}

// waitFor polls cond (a status call) every 100ms until it holds, for at
// most a minute: how fast a flood fills a disk depends on the machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after a minute", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeSurvivesClosedLog: a server whose log reader went away (serve
// | tee, then Ctrl-C) keeps serving and still shuts down cleanly on
// SIGTERM; it died of SIGPIPE at its next log line, leaving its parent
// cgroups and lock file behind.
func TestServeSurvivesClosedLog(t *testing.T) {
	c := newCluster(t, "")
	alice := c.as(t, "alice")
	c.srv.stderr.Close()
	// Each call logs a line, now into a closed pipe.
	for i := 0; i < 3; i++ {
		if r := alice.run("start", "--watch", "--", "echo", "hi").want(t, "start --watch after the log reader left", 0); r.stdout != "hi\n" {
			t.Errorf("start --watch: %v", r)
		}
	}
	alice.start("sleep", "1000") // a running job for the shutdown to stop
	if err := c.srv.terminate(t); err != nil {
		t.Errorf("serve after SIGTERM: %v, want a clean exit", err)
	}
	checkNothingLeft(t, c.srv)
}

// TestFullStateDisk runs the server on a 50 MiB tmpfs and a job that
// writes 200 MiB: the job keeps running, its output past the full disk is
// dropped, its status says truncated by a write error ("no space left on
// device", not the cap), the server logs it once; another job's output
// stays intact and the API answers; a job started on the full disk says
// its output is missing and exits non-zero; once space is back, output is
// kept again (after a gap its watchers are told about).
func TestFullStateDisk(t *testing.T) {
	requireRoot(t)
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", disk, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=50m,mode=0700"); err != nil {
		t.Fatalf("mount a 50 MiB tmpfs: %v", err)
	}
	// Registered first, so it runs last: after the server stopped.
	t.Cleanup(func() {
		if err := syscall.Unmount(disk, 0); err != nil {
			t.Errorf("unmount the test's tmpfs %s: %v", disk, err)
		}
	})
	// A filler outside the state directory, on the same disk: removed
	// later to give space back.
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, filepath.Join(disk, "state"))
	alice := c.as(t, "alice")

	// A job whose output must stay intact.
	intact := alice.start("seq", "1", "100000")
	var want strings.Builder
	for i := 1; i <= 100000; i++ {
		fmt.Fprintf(&want, "%d\n", i)
	}
	checkIntact := func(when string) {
		t.Helper()
		if r := alice.run("watch", intact).want(t, "watch of the intact job "+when, 0); r.stdout != want.String() || r.stderr != "" {
			t.Errorf("%s: the intact job's output is %d bytes (want %d), stderr %q", when, len(r.stdout), want.Len(), r.stderr)
		}
	}
	checkIntact("before the flood")

	// 200 MiB into what is left of 50, then 64 KiB every half second.
	flood := strings.TrimSpace(alice.run("start", "--cpu", "1", "--", "sh", "-c",
		"dd if=/dev/zero bs=1M count=200 2>/dev/null; while :; do dd if=/dev/zero bs=64k count=1 2>/dev/null; sleep 0.5; done").want(t, "start the flood", 0).stdout)
	waitFor(t, "flooded", func() bool {
		st := alice.outputOf(flood)
		return st.bytes()+st.dropped() >= 200<<20
	})
	st := alice.outputOf(flood)
	if st.State != "STATE_RUNNING" || !st.OutputTruncated || st.OutputTruncation != "TRUNCATION_REASON_WRITE_ERROR" ||
		st.OutputError != "no space left on device" || st.bytes() > 50<<20 || st.dropped() < 150<<20 {
		t.Errorf("status of the flood on a full disk: %+v; want running, truncated by a write error (no space left on device)", st)
	}
	if r := alice.run("status", flood).want(t, "status", 0); !strings.Contains(r.stdout, "no space left on device") || strings.Contains(r.stdout, "cap") {
		t.Errorf("status says:\n%s", r.stdout)
	}
	// The API answers, and the other job's output is still whole.
	if r := alice.run("list", "-o", "wide").want(t, "list on a full disk", 0); !strings.Contains(r.stdout, flood) {
		t.Errorf("list on a full disk:\n%s", r.stdout)
	}
	checkIntact("on a full disk")

	// Fill what the flood left (less than a write of its own) page by
	// page, so that a new job finds not one free page. Twice: a failed
	// write of the flood holds pages for a moment before it gives them
	// back, and the flood tries every half second.
	rest, err := os.Create(filepath.Join(disk, "rest"))
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	for range 2 {
		for {
			if _, err := rest.Write(page); err != nil {
				break
			}
		}
		time.Sleep(1200 * time.Millisecond)
	}
	rest.Close()
	r := alice.run("start", "--watch", "--", "echo", "hello").want(t, "start --watch on a full disk", 1)
	if r.stdout != "" || !strings.Contains(r.stderr, "is incomplete") || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("start --watch on a full disk: %v; want no output, a message and exit 1", r)
	}

	// Space is back: output is kept again.
	os.Remove(filler)
	os.Remove(filepath.Join(disk, "rest"))
	before := alice.outputOf(flood).bytes()
	waitFor(t, "keeping output again", func() bool { return alice.outputOf(flood).bytes() >= before+256<<10 })
	if r := alice.run("start", "--watch", "--", "echo", "hello").want(t, "start --watch once space is back", 0); r.stdout != "hello\n" || r.stderr != "" {
		t.Errorf("start --watch once space is back: %v", r)
	}
	alice.run("stop", flood).want(t, "stop the flood", 0)
	final := alice.outputOf(flood)
	r = alice.run("watch", flood).want(t, "watch of the flood", 128+9)
	if int64(len(r.stdout)) != final.bytes() || !strings.Contains(r.stderr, "bytes of output missing here") ||
		!strings.Contains(r.stderr, "is incomplete") || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("watch of the flood: %d bytes (status: %d), stderr %q", len(r.stdout), final.bytes(), r.stderr)
	}
	checkIntact("at the end")

	logs := c.srv.logs()
	floodID := strings.TrimPrefix(flood, "jobs/")
	if n := strings.Count(logs, `msg="job output dropped: its log cannot be written`); n != 2 {
		t.Errorf("%d log lines for dropped output, want 2 (the flood, the job started on the full disk):\n%s", n, logs)
	}
	if !strings.Contains(logs, "job_id="+floodID) || !strings.Contains(logs, `msg="job output kept again after failed writes" job_id=`+floodID) {
		t.Errorf("the server log does not tell the flood's story:\n%s", logs)
	}
}
