//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// histJob is the part of the protojson Job the history test reads.
type histJob struct {
	Name   string
	Owner  string
	Args   []string
	Status struct {
		State            string
		ExitCode         int
		Stopped          bool
		EndReason        string
		CommandTruncated bool
		OutputBytes      string // int64: a string in protojson
	}
}

func (e env) histStatus(name string) histJob {
	e.t.Helper()
	r := e.run("status", "-o", "json", name).want(e.t, "status -o json "+name, 0)
	var j histJob
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		e.t.Fatalf("status -o json: %v\n%s", err, r.stdout)
	}
	return j
}

// names runs `list -q ARGS...` and returns the names, in order.
func (e env) names(args ...string) []string {
	e.t.Helper()
	r := e.run(append([]string{"list", "-q"}, args...)...).want(e.t, "list -q", 0)
	return strings.Fields(r.stdout)
}

// TestHistoryEndToEnd restarts the real server on the same state directory,
// cleanly and with kill -9, and checks that jobs keep their status and
// output (a job that ran when the server was killed comes back FAILED, the
// server stopped while it ran), then removes jobs with rm as their owner,
// another user and an admin, and with start --watch --rm.
func TestHistoryEndToEnd(t *testing.T) {
	requireRoot(t)
	if testing.Short() {
		t.Skip("e2e: not in -short mode")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := buildBinary(t, dir)
	certs := filepath.Join(dir, "certs")
	state := filepath.Join(dir, "state")
	anon := env{t: t, bin: bin}
	anon.run("certgen", "--out", certs, "--user", "alice", "--user", "bob", "--user", "admin:admin").want(t, "certgen", 0)
	addr := freeAddr(t)
	as := func(user string) env {
		return env{t: t, bin: bin, vars: []string{
			"TELEHANDLER_ADDR=" + addr,
			"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
			"TELEHANDLER_CERT=" + filepath.Join(certs, user+".crt"),
			"TELEHANDLER_KEY=" + filepath.Join(certs, user+".key"),
		}}
	}
	alice, bob, admin := as("alice"), as("bob"), as("admin")

	srv := startServer(t, bin, dir, addr)
	done := alice.start("sh", "-c", "echo out; echo err >&2; exit 3")
	alice.run("watch", done).want(t, "watch", 3)
	long := strings.Repeat("x", 20<<10)
	cut := alice.start("echo", long)
	alice.run("watch", cut).want(t, "watch of the long command", 0)
	running := alice.start("sh", "-c", "echo before; exec sleep 1000")
	if err := alice.watchUntil(running, "before\n"); err != nil {
		t.Fatal(err)
	}

	// A clean restart: the running job is stopped by the shutdown.
	if err := srv.terminate(t); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	srv = startServer(t, bin, dir, addr)
	if j := alice.histStatus(done); j.Status.State != "STATE_FAILED" || j.Status.ExitCode != 3 || j.Owner != "alice" {
		t.Errorf("ended job after a clean restart: %+v", j)
	}
	if r := alice.run("watch", done).want(t, "watch after a clean restart", 3); r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("output after a clean restart: %v", r)
	}
	if j := alice.histStatus(running); j.Status.State != "STATE_FAILED" || j.Status.EndReason == "END_REASON_SERVER_LOST" {
		t.Errorf("job stopped by the shutdown, after the restart: %+v", j)
	}
	j := alice.histStatus(cut)
	if !j.Status.CommandTruncated || len(strings.Join(j.Args, " ")) > 4<<10 || !strings.HasSuffix(j.Args[0], "...") {
		t.Errorf("long command line kept: truncated %v, %d bytes", j.Status.CommandTruncated, len(strings.Join(j.Args, " ")))
	}
	// The job ran with all of it.
	if r := alice.run("watch", cut).want(t, "watch of the long command", 0); r.stdout != long+"\n" {
		t.Errorf("the long command's output is %d bytes, want %d", len(r.stdout), len(long)+1)
	}
	if r := alice.run("status", cut).want(t, "status of the long command", 0); !strings.Contains(r.stdout, "(cut:") {
		t.Errorf("status does not say the command line was cut:\n%s", r.stdout)
	}

	// kill -9: the job dies with the server and comes back FAILED with
	// its output so far.
	lost := alice.start("sh", "-c", "echo partial; echo partial-err >&2; exec sleep 1000")
	if err := alice.watchUntil(lost, "partial\n"); err != nil {
		t.Fatal(err)
	}
	// stdout was watched; stderr comes through its own pipe and may not be
	// in the log yet: wait until the server has both before killing it.
	for deadline := time.Now().Add(10 * time.Second); alice.histStatus(lost).Status.OutputBytes != "20"; {
		if time.Now().After(deadline) {
			t.Fatalf("the lost job's 20 bytes of output never reached its log: %+v", alice.histStatus(lost))
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.cmd.Process.Kill()
	<-srv.exited
	// Its lock file in /run/telehandler stays after a kill; ours to remove.
	t.Cleanup(func() { os.Remove(filepath.Join("/run/telehandler", srv.parent+".lock")) })
	srv = startServer(t, bin, dir, addr)
	j = alice.histStatus(lost)
	if j.Status.State != "STATE_FAILED" || j.Status.EndReason != "END_REASON_SERVER_LOST" || j.Status.OutputBytes != "20" {
		t.Errorf("job that ran when the server was killed: %+v", j)
	}
	if r := alice.run("status", lost).want(t, "status", 0); !strings.Contains(r.stdout, "FAILED (the server stopped while it ran)") {
		t.Errorf("status of the lost job:\n%s", r.stdout)
	}
	if r := alice.run("watch", lost).want(t, "watch of the lost job", 1); r.stdout != "partial\n" ||
		!strings.HasPrefix(r.stderr, "partial-err\n") || !strings.Contains(r.stderr, "stopped while it ran") {
		t.Errorf("output of the lost job: %v", r)
	}
	if !strings.Contains(srv.logs(), "was running when the server stopped") {
		t.Errorf("the server did not log the lost job:\n%s", srv.logs())
	}
	if j := alice.histStatus(done); j.Status.State != "STATE_FAILED" || j.Status.ExitCode != 3 {
		t.Errorf("ended job after kill -9: %+v", j)
	}

	// list: newest first, filters, names only.
	if got, want := alice.names(), []string{lost, running, cut, done}; !slices.Equal(got, want) {
		t.Errorf("list -q: %v, want %v (newest first)", got, want)
	}
	if got := alice.names("--state", "completed"); !slices.Equal(got, []string{cut}) {
		t.Errorf("list -q --state completed: %v", got)
	}
	if got := bob.names(); len(got) != 0 {
		t.Errorf("bob lists %v", got)
	}
	if got := bob.names("--owner", "alice"); len(got) != 0 {
		t.Errorf("bob lists alice's jobs: %v", got)
	}
	if got := admin.names("--owner", "alice", "--state", "failed"); !slices.Equal(got, []string{lost, running, done}) {
		t.Errorf("admin: list -q --owner alice --state failed: %v", got)
	}

	// rm: another user learns nothing; the owner and an admin remove.
	if r := bob.run("rm", done).want(t, "bob: rm of alice's job", 1); !strings.Contains(r.stderr, "not found") {
		t.Errorf("bob: rm of alice's job: %v", r)
	}
	if r := alice.run("rm", done, strings.TrimPrefix(cut, "jobs/")).want(t, "rm", 0); r.stdout != done+"\n"+cut+"\n" {
		t.Errorf("rm printed %v", r)
	}
	if r := alice.run("status", done).want(t, "status of a removed job", 1); !strings.Contains(r.stderr, "not found") {
		t.Errorf("status of a removed job: %v", r)
	}
	admin.run("rm", running).want(t, "admin: rm of alice's job", 0)
	sleeper := alice.start("sleep", "1000")
	if r := alice.run("rm", sleeper).want(t, "rm of a running job", 1); !strings.Contains(r.stderr, "--force") {
		t.Errorf("rm of a running job: %v", r)
	}
	if j := alice.histStatus(sleeper); j.Status.State != "STATE_RUNNING" {
		t.Errorf("refused rm changed the job: %+v", j)
	}
	alice.run("rm", "--force", sleeper).want(t, "rm --force of a running job", 0)
	alice.run("status", sleeper).want(t, "status after rm --force", 1)
	if left := busyCgroupsLeft(srv.parent); len(left) != 0 {
		t.Errorf("cgroups left after rm --force: %v", left)
	}

	// start --watch --rm: the output, the exit code, then the job is gone.
	before := alice.names()
	r := alice.run("start", "--watch", "--rm", "--", "sh", "-c", "echo hi; exit 4").want(t, "start --watch --rm", 4)
	if r.stdout != "hi\n" || r.stderr != "" {
		t.Errorf("start --watch --rm: %v", r)
	}
	if after := alice.names(); !slices.Equal(after, before) {
		t.Errorf("start --watch --rm left a job: %v, before %v", after, before)
	}
	if r := alice.run("start", "--rm", "--", "true").want(t, "start --rm without --watch", 1); !strings.Contains(r.stderr, "--rm needs --watch") {
		t.Errorf("start --rm without --watch: %v", r)
	}

	// The state directory holds the files of the jobs left, and nothing
	// of the removed ones.
	var files []string
	entries, _ := os.ReadDir(state)
	for _, e := range entries {
		files = append(files, e.Name())
	}
	id := func(name string) string { return strings.TrimPrefix(name, "jobs/") }
	for _, gone := range []string{done, cut, running, sleeper} {
		for _, f := range files {
			if strings.HasPrefix(f, id(gone)) {
				t.Errorf("%s of removed job %s left", f, gone)
			}
		}
	}
	if !slices.Contains(files, id(lost)+".log") || !slices.Contains(files, id(lost)+".json") {
		t.Errorf("files of %s missing: %v", lost, files)
	}
	ours := regexp.MustCompile(`^[a-z2-7]{26}\.(log|json)$`)
	n := 0
	for _, f := range files {
		if ours.MatchString(f) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("state directory holds %v, want the log and record of %s only", files, lost)
	}
}
