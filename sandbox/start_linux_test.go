package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hidingCgroups hands out its cgroups wrapped so that their Join offers
// neither a clone nor tasks files, as a Cgroups implementation of another
// package might.
type hidingCgroups struct{ Cgroups }

func (h hidingCgroups) Create(name string, limits Limits) (Cgroup, error) {
	cg, err := h.Cgroups.Create(name, limits)
	if err != nil {
		return nil, err
	}
	return movedCgroup{cg}, nil
}

type movedCgroup struct{ Cgroup }

func (movedCgroup) Join() (CgroupJoin, error) { return CgroupJoin{CloneFD: -1}, nil }

// TestCommandStartsInCgroupWhenMoved is TestCommandStartsInCgroup's first
// check for cgroups whose Join asks to be moved: the parent then moves the
// shim (Cgroup.Add) before it sends the spec, instead of cloning it in or
// letting the shim's thread join by itself.
func TestCommandStartsInCgroupWhenMoved(t *testing.T) {
	ts := newTestSandbox(t)
	sb, err := New(testConfig(t, hidingCgroups{ts.rec}))
	if err != nil {
		t.Fatal(err)
	}
	ts.Sandbox = sb

	ts.checkCommandStartsInCgroup(t)
}

// TestCgroupCreateFailureLeavesNoShim: on v1 the shim is started before the
// cgroup is made; when making it fails, Start reaps that shim.
func TestCgroupCreateFailureLeavesNoShim(t *testing.T) {
	ts := newTestSandbox(t)
	before := childPids(t)
	name := jobName(t)
	j := ts.startNamedJob(t, name, DefaultLimits(), Spec{Path: "sleep", Args: []string{"100"}})
	if _, err := ts.Start(Spec{Path: "true"}, StartConfig{Name: name, Limits: DefaultLimits()}); err == nil {
		t.Fatal("a second Start with the name of a running job's cgroup succeeded")
	}
	if got, want := len(childPids(t)), len(before)+1; got != want {
		t.Errorf("%d children after the failed Start, want %d (the other job's)", got, want)
	}
	if err := j.Kill(); err != nil {
		t.Fatal(err)
	}
	ts.requireCgroupGone(t, name)
}

// childPids are the children of this process, zombies included (every
// thread's, since the kernel files a child under the thread that forked).
func childPids(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "children"))
		if err != nil {
			continue // the thread ended
		}
		pids = append(pids, strings.Fields(string(b))...)
	}
	return pids
}

// TestForkedProcessesStayInCgroup: every process of a job that forks until
// pids.max stops it, as the host sees its PID namespace, is in the job's
// cgroup in every hierarchy, and there are no more of them than pids.max.
// On v1 only the shim's exec thread joins the cgroup; this checks that all
// the command's descendants inherit it. The tree is bounded (at most 2^8
// processes were the limit not enforced), so a failure cannot starve the
// host.
func TestForkedProcessesStayInCgroup(t *testing.T) {
	ts := newTestSandbox(t)
	const maxPids = 32
	j := ts.startJob(t, Limits{Pids: maxPids},
		sh(`sleep 1000 & f(){ if [ $1 -gt 0 ]; then f $(($1-1)) & f $(($1-1)) & fi; sleep 100; }; f 7 & wait`))
	// PID 1 forks its sleep first, so the job lives even when the tree's
	// top shell cannot fork its own sleep (its descendants took every
	// slot) and exits: under load, that ended the whole job before it had
	// maxPids/2 processes.
	j.waitForProcs(t, maxPids/2)
	// Counted with the job frozen: while it forks and reaps, the union of
	// several cgroup.procs (v1) or a walk of /proc is not one snapshot and
	// can count a process that was reaped and one forked after it.
	thaw := freezeJob(t, j.cg)
	defer thaw()
	procs, err := j.cg.Procs()
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) > maxPids {
		t.Errorf("%d processes in the job's cgroup, pids.max %d", len(procs), maxPids)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", j.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	inNS := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if n, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || n != ns {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue // it ended
		}
		inNS++
		// On v1 an exiting or zombie process (a shell whose fork failed)
		// shows the root cgroup: such ones are not checked.
		if exiting(pid) {
			continue
		}
		checkInCgroup(t, ts.Cgroups().Version(), string(b), "/"+ts.parent+"/"+j.name)
	}
	if inNS > maxPids {
		t.Errorf("%d processes in the job's PID namespace, pids.max %d", inNS, maxPids)
	}
	thaw()
	if err := j.Kill(); err != nil {
		t.Fatal(err)
	}
	ts.requireCgroupGone(t, j.name)
}

// exiting reports whether process pid is gone or has PF_EXITING set (the
// flags are field 9 of /proc/PID/stat).
func exiting(pid int) bool {
	const pfExiting = 0x4
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	fields := strings.Fields(string(b[i+1:]))
	if i < 0 || len(fields) < 7 {
		return true
	}
	flags, err := strconv.ParseUint(fields[6], 10, 64)
	return err != nil || flags&pfExiting != 0
}

// TestWedgedShimDoesNotHangStart: a shim that never reads its spec nor
// execs (here a script that keeps the pipes open and sleeps) makes Start
// fail with ErrShim after Config.StartTimeout, with the shim reaped and the
// cgroup removed, instead of blocking Start forever.
func TestWedgedShimDoesNotHangStart(t *testing.T) {
	ts := newTestSandbox(t)
	exe := filepath.Join(t.TempDir(), "wedged-shim")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexec sleep 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	cfg := testConfig(t, ts.rec)
	cfg.Exe, cfg.StartTimeout = exe, timeout
	sb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := childPids(t)
	name := jobName(t)
	type result struct {
		p   *Process
		err error
	}
	res := make(chan result, 1)
	began := time.Now()
	go func() {
		p, err := sb.Start(Spec{Path: "true"}, StartConfig{Name: name, Limits: DefaultLimits()})
		res <- result{p, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-time.After(jobTimeout):
		// Kill the stray shim(s) this test started, so that nothing is
		// left behind even when it fails.
		for _, pid := range childPids(t) {
			if !slices.Contains(before, pid) {
				if n, err := strconv.Atoi(pid); err == nil {
					_ = unix.Kill(n, unix.SIGKILL)
				}
			}
		}
		t.Fatalf("Start still blocked %v after a StartTimeout of %v", jobTimeout, timeout)
	}
	if r.err == nil {
		r.p.Kill()
		t.Fatal("Start of a wedged shim succeeded")
	}
	t.Logf("Start after %v: %v", time.Since(began).Round(time.Millisecond), r.err)
	if !errors.Is(r.err, ErrShim) {
		t.Errorf("error %q does not wrap ErrShim", r.err)
	}
	if got := childPids(t); len(got) != len(before) {
		t.Errorf("children %v after the failed Start, want %v", got, before)
	}
	ts.requireCgroupGone(t, name)
}

// TestShimOffMainThread runs the shim's RunChild on a thread that is not
// the process's initial one (the parent-death signal set at clone time is
// per thread and only the initial thread has it): the command must still
// start inside its cgroup in every hierarchy (the thread that joins is the
// one that execs) and still die with the server (SIGKILL as its
// parent-death signal).
func TestShimOffMainThread(t *testing.T) {
	ts := newTestSandbox(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "off-main-shim")
	script := fmt.Sprintf("#!/bin/sh\nexec env %s=1 %s \"$@\"\n", offMainShimEnv, self)
	if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, ts.rec)
	cfg.Exe = exe
	sb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.Sandbox = sb

	t.Run("parent-death signal", func(t *testing.T) {
		j := ts.startJob(t, DefaultLimits(), Spec{Path: self, Env: []string{helperEnv + "=pdeathsig"}})
		state, out := j.wait(t)
		if state.ExitCode != 0 {
			t.Fatalf("helper: %+v %q", state, out)
		}
		if got, want := strings.TrimSpace(out), strconv.Itoa(int(unix.SIGKILL)); got != want {
			t.Errorf("the command's parent-death signal is %s, want %s (SIGKILL)", got, want)
		}
	})
	t.Run("in cgroup", func(t *testing.T) { ts.checkCommandStartsInCgroup(t) })
}

// freezeJob freezes the job's cgroup (v1 freezer, v2 cgroup.freeze) and
// waits until it is frozen; the returned thaw may be called more than once.
func freezeJob(t *testing.T, cg Cgroup) (thaw func()) {
	t.Helper()
	var state, frozen, thawed string
	switch c := cg.(type) {
	case *cgroupV1:
		state, frozen, thawed = c.file("freezer", "freezer.state"), "FROZEN", "THAWED"
	case *cgroupV2:
		state, frozen, thawed = c.file("cgroup.freeze"), "1", "0"
	default:
		t.Fatalf("cannot freeze a %T", cg)
	}
	if err := writeFile(state, frozen); err != nil {
		t.Fatal(err)
	}
	thaw = sync.OnceFunc(func() {
		if err := writeFile(state, thawed); err != nil {
			t.Errorf("thaw: %v", err)
		}
	})
	if c, ok := cg.(*cgroupV2); ok {
		events, err := watchEvents(c.dir)
		if err != nil {
			thaw()
			t.Fatal(err)
		}
		defer events.close()
		if err := events.wait("frozen", 1, jobTimeout); err != nil {
			thaw()
			t.Fatal(err)
		}
		return thaw
	}
	// v1 has no notification: poll freezer.state with a deadline.
	deadline := time.Now().Add(jobTimeout)
	for {
		s, err := readString(state)
		if err != nil {
			thaw()
			t.Fatal(err)
		}
		if s == frozen {
			return thaw
		}
		if time.Now().After(deadline) {
			thaw()
			t.Fatalf("freezer.state still %s after %v", s, jobTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestKillEndsJobThatLeftItsCgroup: a job whose processes are no longer in
// its cgroup (moved out from the host: the job itself cannot, see
// TestRootJobCannotLeaveItsCgroup) is still ended by Kill, through its
// command, PID 1 of its PID namespace.
func TestKillEndsJobThatLeftItsCgroup(t *testing.T) {
	ts := newTestSandbox(t)
	name := jobName(t)
	paths := ts.cgroupPaths(t, name)
	j := ts.startNamedJob(t, name, DefaultLimits(), Spec{Path: "sleep", Args: []string{"1000"}})
	// Move the job's command to a sibling cgroup in every hierarchy (not
	// the parent: on v2 a cgroup with controllers enabled for its children
	// holds no process).
	for _, p := range paths {
		out := filepath.Join(filepath.Dir(p), "escaped-"+name)
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(out) }) // before the test parent's removal
		procs := filepath.Join(out, "cgroup.procs")
		if err := os.WriteFile(procs, []byte(strconv.Itoa(j.Pid())), 0); err != nil {
			t.Fatalf("move the job out of its cgroup: %v", err)
		}
	}
	if pids, err := j.cg.Procs(); err != nil || len(pids) != 0 {
		t.Fatalf("job's cgroup after moving the job out: %v %v", pids, err)
	}
	done := make(chan error, 1)
	go func() { done <- j.Kill() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		_ = unix.Kill(j.Pid(), unix.SIGKILL) // the job this test started
		<-done
		t.Fatal("Kill still blocked after 30 s on a job outside its cgroup")
	}
	ts.requireCgroupGone(t, name)
}

// TestRootJobCannotLeaveItsCgroup: even a job running as root cannot move
// itself out of its cgroup (DESIGN.md: jobs cannot leave their cgroup): the
// cgroup file systems are read-only in its mount namespace and it has no
// CAP_SYS_ADMIN to remount them.
func TestRootJobCannotLeaveItsCgroup(t *testing.T) {
	ts := newTestSandbox(t)
	name := jobName(t)
	var script []string
	for _, p := range ts.cgroupPaths(t, name) {
		script = append(script, fmt.Sprintf("echo $$ > %s/cgroup.procs && echo moved", filepath.Dir(p)))
	}
	script = append(script, "mount -o remount,rw /sys/fs/cgroup 2>/dev/null && echo remounted", "grep CapBnd /proc/self/status")
	j := ts.startNamedJob(t, name, DefaultLimits(), sh(strings.Join(script, "; ")))
	_, out := j.wait(t)
	t.Logf("job output: %q", out)
	if strings.Contains(out, "moved") || strings.Contains(out, "remounted") {
		t.Errorf("a root job moved itself out of its cgroup or remounted cgroupfs: %q", out)
	}
	_, capBnd, ok := strings.Cut(out, "CapBnd:")
	if !ok {
		t.Fatalf("no CapBnd in %q", out)
	}
	bnd, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(capBnd, "\n", 2)[0]), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if bnd&(1<<unix.CAP_SYS_ADMIN) != 0 {
		t.Errorf("CAP_SYS_ADMIN in the job's bounding set %#x", bnd)
	}
	ts.requireCgroupGone(t, name)
}
