//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// cliEnv is a server with users alice and bob, for the tests below.
func cliEnv(t *testing.T) (alice, bob env, srv *server) {
	t.Helper()
	requireRoot(t)
	if testing.Short() {
		t.Skip("e2e: not in -short mode")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := buildBinary(t, dir)
	certs := filepath.Join(dir, "certs")
	env{t: t, bin: bin}.run("certgen", "--out", certs, "--user", "alice", "--user", "bob").want(t, "certgen", 0)
	addr := freeAddr(t)
	srv = startServer(t, bin, dir, addr)
	as := func(user string) env {
		return env{t: t, bin: bin, vars: []string{
			"TELEHANDLER_ADDR=" + addr,
			"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
			"TELEHANDLER_CERT=" + filepath.Join(certs, user+".crt"),
			"TELEHANDLER_KEY=" + filepath.Join(certs, user+".key"),
		}}
	}
	return as("alice"), as("bob"), srv
}

// waitOutput polls the job's status until its output is at least n bytes
// (polling a condition with a deadline, not a fixed sleep).
func (e env) waitOutput(job string, n int) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.run("status", "-o", "json", job).want(e.t, "status", 0)
		var got int
		if i := strings.Index(r.stdout, `"outputBytes": "`); i >= 0 {
			got, _ = strconv.Atoi(strings.SplitN(r.stdout[i+len(`"outputBytes": "`):], `"`, 2)[0])
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s wrote %d bytes in 30s, want %d", job, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNamesAndPrefixes: start --name, names and id prefixes everywhere,
// scoped to the caller; status of several jobs; list in 100 columns.
func TestNamesAndPrefixes(t *testing.T) {
	alice, bob, _ := cliEnv(t)

	r := alice.run("start", "--name", "web", "--init", "--", "sleep", "1000").want(t, "start --name web", 0)
	web := strings.TrimSpace(r.stdout)
	webID := strings.TrimPrefix(web, "jobs/")
	if j := alice.status("web"); j.Name != web {
		t.Errorf("status web: %+v, want %s", j, web)
	}
	if r := alice.run("start", "--name", "web", "--", "true").want(t, "a second web", 1); !strings.Contains(r.stderr, "already has a job named") {
		t.Errorf("a second web: %v", r)
	}
	if r := alice.run("start", "--name", "-x", "--", "true"); r.code == 0 {
		t.Errorf("start --name -x: %v", r)
	}
	if r := alice.run("start", "--name", "a/b", "--", "true").want(t, "a bad name", 1); !strings.Contains(r.stderr, "may only hold") {
		t.Errorf("a bad name: %v", r)
	}
	// Names are per owner: bob's web is another job, and bob never
	// reaches alice's by name or by prefix.
	bobWeb := strings.TrimSpace(bob.run("start", "--name", "web", "--", "true").want(t, "bob's web", 0).stdout)
	if j := bob.status("web"); j.Name != bobWeb || j.Owner != "bob" {
		t.Errorf("bob's status web: %+v", j)
	}
	missing := bob.run("status", "zzzzzzzzzzzz").want(t, "bob: a missing prefix", 1)
	hidden := bob.run("status", webID[:12]).want(t, "bob: alice's prefix", 1)
	if hidden.stderr != strings.ReplaceAll(missing.stderr, "zzzzzzzzzzzz", webID[:12]) {
		t.Errorf("alice's job by prefix, as bob: %q; a missing job: %q", hidden.stderr, missing.stderr)
	}

	// Every command takes a prefix (here 12 characters, as list shows).
	if j := alice.status(webID[:12]); j.Name != web {
		t.Errorf("status by prefix: %+v", j)
	}
	// Until two of alice's jobs share a first character: that prefix is
	// ambiguous, and the error lists both (and nothing of bob's).
	byFirst := map[byte]string{webID[0]: web}
	var pair [2]string
	for i := 0; pair[0] == ""; i++ {
		if i > 40 {
			t.Fatal("41 jobs without two ids sharing a first character")
		}
		id := strings.TrimPrefix(alice.start("true"), "jobs/")
		if other, ok := byFirst[id[0]]; ok {
			pair = [2]string{other, "jobs/" + id}
		}
		byFirst[id[0]] = "jobs/" + id
	}
	prefix := strings.TrimPrefix(pair[0], "jobs/")[:1]
	r = alice.run("status", prefix).want(t, "an ambiguous prefix", 1)
	if !strings.Contains(r.stderr, "ambiguous") || !strings.Contains(r.stderr, pair[0]) || !strings.Contains(r.stderr, pair[1]) ||
		strings.Contains(r.stderr, bobWeb) {
		t.Errorf("ambiguous prefix %q: %v", prefix, r)
	}

	// status of several jobs.
	r = alice.run("status", "web", pair[1]).want(t, "status of two jobs", 0)
	if strings.Count(r.stdout, "owner:") != 2 || !strings.Contains(r.stdout, "job name: web") || !strings.Contains(r.stdout, "\n\nname:") {
		t.Errorf("status of two jobs:\n%s", r.stdout)
	}
	r = alice.run("status", "web", "nosuchjob").want(t, "status of a job and a missing one", 1)
	if !strings.Contains(r.stdout, web) || !strings.Contains(r.stderr, "nosuchjob not found") {
		t.Errorf("status of a job and a missing one: %v", r)
	}

	// list fits 100 columns and shows the name; -o wide the full name.
	r = alice.run("list").want(t, "list", 0)
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if utf8.RuneCountInString(line) > 100 {
			t.Errorf("list line of %d columns: %q", utf8.RuneCountInString(line), line)
		}
	}
	if !strings.HasPrefix(r.stdout, "ID") || !strings.Contains(r.stdout, webID[:12]+"  web") || strings.Contains(r.stdout, bobWeb[5:17]) {
		t.Errorf("list:\n%s", r.stdout)
	}
	if r := alice.run("list", "-o", "wide").want(t, "list -o wide", 0); !strings.Contains(r.stdout, web) {
		t.Errorf("list -o wide:\n%s", r.stdout)
	}

	// stop and watch by name.
	alice.run("stop", "--grace", "5s", "web").want(t, "stop web", 0)
	alice.run("watch", "web").want(t, "watch web", 128+int(syscall.SIGTERM))
	// rm by name prints the full name and frees the name.
	if r := alice.run("rm", "web").want(t, "rm web", 0); r.stdout != web+"\n" {
		t.Errorf("rm web: %v", r)
	}
	alice.run("start", "--name", "web", "--", "true").want(t, "start --name web after rm", 0)
}

// TestWatchTailNoFollow: --tail N prints the last N lines of the combined
// output, --no-follow exits at once: 0 while the job runs, its code after.
func TestWatchTailNoFollow(t *testing.T) {
	alice, _, _ := cliEnv(t)
	// Between stdout and stderr the log's order is the order the server
	// read the pipes: the combined tail is checked on one stream, the
	// per-stream tail on both.
	done := alice.start("sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; exit 4")
	alice.run("watch", done).want(t, "watch", 4)
	r := alice.run("watch", "--tail", "2", done).want(t, "watch --tail 2", 4)
	if r.stdout != "line4\nline5\n" || r.stderr != "" {
		t.Errorf("watch --tail 2: %v", r)
	}
	done = alice.start("sh", "-c", "for i in 1 2 3 4 5; do echo line$i; echo err$i >&2; done; exit 4")
	alice.run("watch", done).want(t, "watch", 4)
	r = alice.run("watch", "--tail", "2", "--tail-per-stream", done).want(t, "watch --tail 2 --tail-per-stream", 4)
	if r.stdout != "line4\nline5\n" || r.stderr != "err4\nerr5\n" {
		t.Errorf("watch --tail 2 --tail-per-stream: %v", r)
	}
	r = alice.run("watch", "--tail", "0", "--no-follow", done).want(t, "watch --tail 0 --no-follow", 4)
	if r.stdout != "" || r.stderr != "" {
		t.Errorf("watch --tail 0 --no-follow: %v", r)
	}
	r = alice.run("watch", "--tail", "100", "--no-follow", done).want(t, "watch --tail 100 --no-follow", 4)
	if r.stdout != "line1\nline2\nline3\nline4\nline5\n" || r.stderr != "err1\nerr2\nerr3\nerr4\nerr5\n" {
		t.Errorf("watch --tail 100: %v", r)
	}

	running := alice.start("sh", "-c", "echo a; echo b; exec sleep 1000")
	alice.waitOutput(running, 4)
	r = alice.run("watch", "--no-follow", running).want(t, "watch --no-follow of a running job", 0)
	if r.stdout != "a\nb\n" {
		t.Errorf("watch --no-follow: %v", r)
	}
	r = alice.run("watch", "--tail", "1", "--no-follow", running).want(t, "watch --tail 1 --no-follow", 0)
	if r.stdout != "b\n" {
		t.Errorf("watch --tail 1 --no-follow: %v", r)
	}
	alice.run("stop", running).want(t, "stop", 0)
}

// TestKillSignals: kill -s sends the signal to the job's command; the
// default is TERM; bad signals and ended jobs are errors.
func TestKillSignals(t *testing.T) {
	alice, bob, _ := cliEnv(t)
	job := alice.start("sh", "-c", `trap 'echo got USR1' USR1; trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done`)
	alice.waitOutput(job, len("ready\n"))
	alice.run("kill", "-s", "USR1", job).want(t, "kill -s USR1", 0)
	alice.waitOutput(job, len("ready\ngot USR1\n"))
	bob.run("kill", job).want(t, "bob: kill of alice's job", 1)
	if r := alice.run("kill", "-s", "SEGV", job).want(t, "kill -s SEGV", 1); !strings.Contains(r.stderr, "HUP INT QUIT KILL") {
		t.Errorf("kill -s SEGV: %v", r)
	}
	alice.run("kill", job).want(t, "kill (TERM)", 0)
	if r := alice.run("watch", job).want(t, "watch after kill", 7); r.stdout != "ready\ngot USR1\ngot TERM\n" {
		t.Errorf("watch after kill: %v", r)
	}
	if r := alice.run("kill", job).want(t, "kill of an ended job", 1); !strings.Contains(r.stderr, "not running") {
		t.Errorf("kill of an ended job: %v", r)
	}

	// Without --init a plain sleep is PID 1 and ignores TERM; --all
	// reaches every process, and KILL always ends it.
	plain := alice.start("sleep", "1000")
	alice.run("kill", plain).want(t, "kill of a plain sleep", 0)
	alice.run("kill", "-s", "9", "--all", plain).want(t, "kill -s 9 --all", 0)
	alice.run("watch", plain).want(t, "watch of a killed sleep", 128+9)
}

// TestStartWatchForwardsCtrlC: Ctrl-C of start --watch reaches the job; the
// CLI exits with the job's code. Two Ctrl-C within a second detach.
func TestStartWatchForwardsCtrlC(t *testing.T) {
	alice, _, _ := cliEnv(t)

	// sh waits on sleep in the background so that the trap runs at once.
	cmd, stdout, stderr := alice.startWatching(t, "--", "sh", "-c", `trap 'echo got INT; exit 3' INT; echo ready; sleep 1000 & wait`)
	if line, err := stdout.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("start --watch printed %q, %v", line, err)
	}
	cmd.Process.Signal(os.Interrupt)
	rest, _ := readRest(stdout)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || rest != "got INT\n" {
		t.Errorf("start --watch after Ctrl-C: %v, stdout %q, stderr %q; want exit 3 and got INT", err, rest, stderr.String())
	}

	// The README's: a plain sleep under --init ends on Ctrl-C.
	cmd, _, stderr = alice.startWatching(t, "--name", "sleeper", "--init", "--", "sleep", "1000")
	alice.waitJob("sleeper")
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || strings.Contains(stderr.String(), "detached") {
		t.Errorf("start --watch --init sleep after Ctrl-C: %v, stderr %q; want exit 130 (SIGINT)", err, stderr.String())
	}

	// No handler in the job: the first Ctrl-C is sent (and ignored by
	// PID 1), the second detaches; the job keeps running.
	// (A plain sleep: a shell would have a SIGINT handler until it execs.)
	cmd, _, stderr = alice.startWatching(t, "--name", "stays", "--", "sleep", "1000")
	alice.waitJob("stays")
	cmd.Process.Signal(os.Interrupt)
	time.Sleep(100 * time.Millisecond) // two distinct presses, well within the second
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "detached from") {
		t.Errorf("start --watch after two Ctrl-C: %v, stderr %q; want exit 130 and detached", err, stderr.String())
	}
	if j := alice.status("stays"); j.Status.State != "STATE_RUNNING" {
		t.Errorf("the job after detaching: %+v", j)
	}
	alice.run("stop", "stays").want(t, "stop", 0)
}

// waitJob waits until a job with that name exists: then StartJob has
// returned, and a start --watch that made it catches signals.
func (e env) waitJob(name string) {
	e.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); e.run("status", name).code != 0; {
		if time.Now().After(deadline) {
			e.t.Fatalf("the job named %s did not appear within 30s", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWatching starts `telehandler start --watch args...` in the
// background.
func (e env) startWatching(t *testing.T, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, e.bin, append([]string{"start", "--watch"}, args...)...)
	cmd.Env = append(os.Environ(), e.vars...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(out), &stderr
}

func readRest(r *bufio.Reader) (string, error) {
	var b strings.Builder
	_, err := r.WriteTo(&b)
	return b.String(), err
}

// TestInitStopsPlainSleep: under --init a plain sleep ends on stop's
// SIGTERM within the grace (without it, it would be SIGKILLed after the
// grace). The init's memory is logged for the README.
func TestInitStopsPlainSleep(t *testing.T) {
	alice, _, srv := cliEnv(t)
	job := strings.TrimSpace(alice.run("start", "--init", "--", "sleep", "1000").want(t, "start --init", 0).stdout)
	logInitMemory(t, srv.parent, strings.TrimPrefix(job, "jobs/"))

	const grace = 2 * time.Second
	begin := time.Now()
	r := alice.run("stop", "--grace", grace.String(), job).want(t, "stop --grace", 0)
	took := time.Since(begin)
	if r.stdout != job+": FAILED (exit code 143, stopped)\n" {
		t.Errorf("stop --grace of a sleep under init: %v, want exit code 143 (SIGTERM, forwarded)", r)
	}
	if took >= grace {
		t.Errorf("stop --grace %v took %v: the sleep did not end on SIGTERM", grace, took)
	}
}

// logInitMemory logs the RSS of the job's PID 1 (the waiting init).
func logInitMemory(t *testing.T, parent, id string) {
	for _, d := range cgroupDirs(parent) {
		procs, err := os.ReadFile(filepath.Join(d, id, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, pid := range strings.Fields(string(procs)) {
			cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			if !bytes.Contains(cmdline, []byte("__child")) {
				continue
			}
			status, _ := os.ReadFile("/proc/" + pid + "/status")
			for _, line := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(line, "VmRSS") || strings.HasPrefix(line, "RssAnon") || strings.HasPrefix(line, "RssFile") || strings.HasPrefix(line, "Threads") {
					t.Logf("init (pid %s) %s", pid, strings.Join(strings.Fields(line), " "))
				}
			}
			return
		}
	}
	t.Logf("init of %s not found (cgroup dirs %v)", id, cgroupDirs(parent))
}
