package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestInitForwardsSignals: with Init a plain sleep, which as PID 1 ignores
// SIGTERM, ends at the first SIGTERM to the job's PID 1 (the init forwards
// it), and the job's status is 128+15, as a shell reports it.
func TestInitForwardsSignals(t *testing.T) {
	ts := newTestSandbox(t)
	j := ts.startJob(t, Limits{}, Spec{Path: "sleep", Args: []string{"1000"}, Init: true})
	j.waitForProcs(t, 2) // the init and sleep
	if err := j.Signal(unix.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	state, out := j.wait(t)
	if state.ExitCode != 128+int(unix.SIGTERM) || state.Signal != 0 {
		t.Errorf("state %+v (output %q), want exit 143", state, out)
	}
	if err := j.Signal(unix.SIGTERM, false); !errors.Is(err, ErrDone) {
		t.Errorf("Signal after the end: %v, want ErrDone", err)
	}
	ts.requireCgroupGone(t, j.name)

	// Without Init the same signal is dropped: sleep is PID 1.
	j = ts.startJob(t, Limits{}, Spec{Path: "sleep", Args: []string{"1000"}})
	if err := j.Signal(unix.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-j.Done():
		t.Fatalf("sleep as PID 1 ended on SIGTERM: %+v", j.Wait())
	case <-time.After(300 * time.Millisecond):
	}
	// With all, SIGKILL reaches every process.
	if err := j.Signal(unix.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	if state, _ := j.wait(t); state.Signal != int(unix.SIGKILL) {
		t.Errorf("after SIGKILL to all: %+v", state)
	}
}

// TestInitExitStatusAndReaping: the init exits with the command's status,
// and reaps the orphans the command leaves (no zombie stays while it runs).
func TestInitExitStatusAndReaping(t *testing.T) {
	ts := newTestSandbox(t)
	j := ts.startJob(t, Limits{}, Spec{Path: "/bin/sh", Args: []string{"-c", "exit 7"}, Init: true})
	if state, out := j.wait(t); state.ExitCode != 7 {
		t.Errorf("exit 7 under init: %+v %q", state, out)
	}

	// sh starts a subshell that forks sleep and exits: sleep's parent is
	// gone, the init adopts it, and when it ends the init must reap it.
	// The command then counts the zombies in its namespace.
	// It waits until the orphan is gone (counting zombies as it goes: one
	// that stays a zombie for 10 s was not reaped).
	j = ts.startJob(t, Limits{}, Spec{Path: "/bin/sh", Args: []string{"-c", `
(sleep 0.2 &)
sleep 0.3
for i in $(seq 100); do
  zombies=0 sleeps=0
  for s in /proc/[0-9]*/stat; do
    set -- $(cat "$s" 2>/dev/null)
    [ "$3" = Z ] && zombies=$((zombies+1))
    [ "$2" = "(sleep)" ] && sleeps=$((sleeps+1))
  done
  [ $sleeps = 0 ] && [ $zombies = 0 ] && break
  sleep 0.1
done
echo "zombies=$zombies sleeps=$sleeps"`}, Init: true})
	state, out := j.wait(t)
	if state.ExitCode != 0 || !strings.Contains(out, "zombies=0 sleeps=0") {
		t.Errorf("reaping: %+v %q, want exit 0 and no zombie left", state, out)
	}
}

// TestInitExecErrors: a command that cannot start under Init is Start's
// ErrExec, exactly as without it.
func TestInitExecErrors(t *testing.T) {
	ts := newTestSandbox(t)
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []Spec{
		{Path: "telehandler-no-such-binary", Init: true},
		{Path: plain, Init: true},
		{Path: "/bin/sh", Dir: "/nonexistent-dir", Init: true},
	} {
		j, err := ts.tryStart(t, DefaultLimits(), spec)
		if err == nil {
			t.Fatalf("Start %+v succeeded: %+v", spec, j.Wait())
		}
		if !errors.Is(err, ErrExec) || errors.Is(err, ErrShim) {
			t.Errorf("Start %+v: %q does not wrap ErrExec alone", spec, err)
		}
		ts.requireCgroupGone(t, j.name)
	}
}

// TestInitKeepsTheCommandsEnvironment: the command started by the init
// sees what it would see as PID 1 without it: credentials, capabilities,
// no_new_privs, seccomp, signal mask and dispositions, cgroup, namespaces,
// mounts, hostname and fds. Only its pid and parent differ.
func TestInitKeepsTheCommandsEnvironment(t *testing.T) {
	ts := newTestSandbox(t)
	nobody := uint32(65534)
	script := `
grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|SigBlk|SigIgn|Threads)' /proc/self/status
echo cgroup; cat /proc/self/cgroup
echo ns; for n in cgroup ipc mnt net pid uts; do readlink /proc/self/ns/$n; done
echo mounts; cut -d' ' -f4- /proc/self/mountinfo
echo host; hostname
echo fds; ls /proc/self/fd
echo cwd; pwd`
	run := func(init bool) string {
		spec := sh(script)
		spec.UID, spec.GID, spec.Dir, spec.Init = &nobody, &nobody, "/tmp", init
		j := ts.startJob(t, Limits{}, spec)
		state, out := j.wait(t)
		if state.ExitCode != 0 {
			t.Fatalf("init %v: %+v %q", init, state, out)
		}
		return out
	}
	plain, withInit := run(false), run(true)
	// The namespace ids differ between two jobs; their presence and kind
	// are what matters: drop the inode numbers.
	strip := func(s string) string {
		var lines []string
		for _, l := range strings.Split(s, "\n") {
			if k, _, ok := strings.Cut(l, ":["); ok {
				l = k
			}
			lines = append(lines, l)
		}
		return strings.Join(lines, "\n")
	}
	if strip(plain) != strip(withInit) {
		t.Errorf("the command's environment differs under init:\nwithout:\n%s\nwith:\n%s", plain, withInit)
	}
}

// TestInitRunsInsideTheJob: every thread of the init (it outlives the
// exec: on v1 its whole process joins the cgroup, and the seccomp filter
// is synced to all its threads, not only to the one that starts the
// command) is in the job's cgroup and under its filter. It also logs the
// init's resident memory (under the race detector here: e2e logs the real
// binary's).
func TestInitRunsInsideTheJob(t *testing.T) {
	ts := newTestSandbox(t)
	j := ts.startJob(t, Limits{}, Spec{Path: "sleep", Args: []string{"1000"}, Init: true})
	j.waitForProcs(t, 2)
	pid := strconv.Itoa(j.Pid())
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + pid + "/task/" + task.Name() + "/cgroup")
		if err != nil {
			t.Fatal(err)
		}
		checkInCgroup(t, ts.Cgroups().Version(), string(b), "/"+ts.parent+"/"+j.name)
		// Every thread has the job's seccomp filter (mode 2) and
		// no_new_privs, not only the one that forked the command.
		b, err = os.ReadFile("/proc/" + pid + "/task/" + task.Name() + "/status")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\nSeccomp:\t2\n") || !strings.Contains(string(b), "\nNoNewPrivs:\t1\n") {
			t.Errorf("init thread %s is not filtered:\n%s", task.Name(), b)
		}
	}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS") || strings.HasPrefix(line, "RssAnon") || strings.HasPrefix(line, "RssFile") || strings.HasPrefix(line, "Threads") {
			t.Log(strings.Join(strings.Fields(line), " "))
		}
	}
}

// TestInitCannotBeTouchedByTheJob attacks the init from the command it
// runs (same uid): its memory, environment and fds cannot be reached, and
// signals from inside the namespace neither kill nor stop it. (The
// credential switch already makes the init non-dumpable; runInit also
// clears the flag itself, for inits that keep their credentials.)
func TestInitCannotBeTouchedByTheJob(t *testing.T) {
	ts := newTestSandbox(t)
	nobody := uint32(65534)
	spec := sh(`
id -u
cat /proc/1/environ >/dev/null 2>&1 && echo environ readable || echo environ denied
head -c 1 /proc/1/mem >/dev/null 2>&1 && echo mem readable || echo mem denied
ls /proc/1/fd >/dev/null 2>&1 && echo fds listable || echo fds denied
kill -9 1 2>/dev/null; kill -STOP 1 2>/dev/null
sleep 0.2; echo alive`)
	spec.UID, spec.GID, spec.Init = &nobody, &nobody, true
	j := ts.startJob(t, Limits{}, spec)
	state, out := j.wait(t)
	if state.ExitCode != 0 || out != "65534\nenviron denied\nmem denied\nfds denied\nalive\n" {
		t.Errorf("the command against its init: %+v\n%s", state, out)
	}
}

// TestInitTerminateOnce: Terminate (stop --grace) reaches the command of an
// Init job once, not a second time through the init; SIGSTOP, which the
// init cannot forward, stops the job's processes but not the init.
func TestInitTerminateOnce(t *testing.T) {
	ts := newTestSandbox(t)
	j := ts.startJob(t, Limits{}, Spec{Path: "/bin/sh", Args: []string{"-c",
		`trap 'echo term' TERM; i=0; while [ $i -lt 10 ]; do sleep 0.1; i=$((i+1)); done`}, Init: true})
	j.waitForProcs(t, 3) // the init, sh (its trap set) and a sleep
	if err := j.Terminate(); err != nil {
		t.Fatal(err)
	}
	if state, out := j.wait(t); state.ExitCode != 0 || strings.Count(out, "term") != 1 {
		t.Errorf("after Terminate: %+v %q, want exit 0 and one term", state, out)
	}

	j = ts.startJob(t, Limits{}, Spec{Path: "sleep", Args: []string{"1000"}, Init: true})
	pids := j.waitForProcs(t, 2)
	if err := j.Signal(unix.SIGSTOP, false); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if pid == j.Pid() {
			continue
		}
		deadline := time.Now().Add(jobTimeout)
		for procState(pid) != "T" {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d in state %q after SIGSTOP, want T", pid, procState(pid))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// kill() delivered SIGSTOP to each process before it returned: the
	// init, never sent it, is not stopped.
	if st := procState(j.Pid()); st == "T" {
		t.Errorf("the init (pid %d) is stopped", j.Pid())
	}
	// CONT to the init is forwarded to the command.
	if err := j.Signal(unix.SIGCONT, false); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		deadline := time.Now().Add(jobTimeout)
		for procState(pid) == "T" {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still stopped after SIGCONT", pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestInitWithTTY: under init a terminal job's command is in the
// terminal's foreground process group, of its own (not the init's, which
// would get a typed ^C too and forward it a second time), and a ^C ends a
// plain sleep.
func TestInitWithTTY(t *testing.T) {
	ts := newTestSandbox(t)
	spec := sh(`set -- $(sed 's/.*) //' /proc/self/stat); echo "pgrp=$3 tpgid=$6"; echo ready; exec sleep 100`)
	spec.TTY, spec.Init = true, true
	p, err := ts.Start(spec, StartConfig{Name: jobName(t), Limits: DefaultLimits()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	master := p.TTY()
	defer master.Close()
	_ = master.SetReadDeadline(time.Now().Add(jobTimeout))
	var out bytes.Buffer
	buf := make([]byte, 1024)
	for !strings.Contains(out.String(), "ready") {
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			t.Fatalf("waiting for ready: %v; output %q", err, out.String())
		}
	}
	// The command's (here sed's, a child of it) process group is the
	// terminal's foreground one, and not the init's (1).
	var pgrp, tpgid int
	if _, err := fmt.Sscanf(out.String()[strings.Index(out.String(), "pgrp="):], "pgrp=%d tpgid=%d", &pgrp, &tpgid); err != nil ||
		pgrp != tpgid || pgrp == 1 {
		t.Errorf("under init the command's group %d, the terminal's %d (%v); want the same, not the init's", pgrp, tpgid, err)
	}
	// sleep may not have been exec'd yet: ^C until the job ends.
	for deadline := time.Now().Add(jobTimeout); ; {
		master.Write([]byte{3})
		select {
		case <-p.Done():
		case <-time.After(100 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
			t.Fatal("^C did not end the sleep")
		}
		break
	}
	if st := p.Wait(); st.ExitCode != 128+int(unix.SIGINT) {
		t.Errorf("after ^C: %+v, want exit 130", st)
	}
}

// TestJobStartsWithDefaultSignals: a job starts with SIGHUP and SIGINT at
// their default disposition even when the process that runs the sandbox
// ignores them, as a server under nohup does (Go keeps those two ignored
// in the shim it starts, and execve keeps an ignored signal ignored).
func TestJobStartsWithDefaultSignals(t *testing.T) {
	ts := newTestSandbox(t)
	signal.Ignore(unix.SIGHUP, unix.SIGINT)
	defer signal.Reset(unix.SIGHUP, unix.SIGINT)
	for _, init := range []bool{false, true} {
		spec := sh(`grep SigIgn /proc/self/status`)
		spec.Init = init
		j := ts.startJob(t, Limits{}, spec)
		state, out := j.wait(t)
		if state.ExitCode != 0 {
			t.Fatalf("init %v: %+v %q", init, state, out)
		}
		_, hex, _ := strings.Cut(strings.TrimSpace(out), "\t")
		mask, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			t.Fatalf("init %v: SigIgn %q: %v", init, out, err)
		}
		if hup, intr := uint64(1)<<(unix.SIGHUP-1), uint64(1)<<(unix.SIGINT-1); mask&(hup|intr) != 0 {
			t.Errorf("init %v: the job ignores SIGHUP or SIGINT (SigIgn %s)", init, hex)
		}
	}
}
