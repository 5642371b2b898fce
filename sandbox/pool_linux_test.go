package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPooled runs the isolation (issue 8) and seccomp (issue 9) root tests
// again with a warm shim pool (newTestSandbox sees the test's name):
// whatever they check of a job, a job started from a warm shim has too.
// Each also checks that its jobs that fit a warm shim got one
// (poolMode.check). The isolation tests keep their users: their
// dynamic-user jobs use the pool, the others show that the cold path works
// beside it. The seccomp tests run their root jobs as dynamic users
// (rootAsDynamic), so that they use the pool: the filter is the same for
// every user.
func TestPooled(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"PrivateWritableDirs", TestPrivateWritableDirs},
		{"UnixSocketBetweenJobs", TestUnixSocketBetweenJobs},
		{"KeyringsArePrivate", TestKeyringsArePrivate},
		{"TmpfsPagesDieWithTheJob", TestTmpfsPagesDieWithTheJob},
		{"TmpfsIsSizeLimited", TestTmpfsIsSizeLimited},
		{"HostIsReadOnly", TestHostIsReadOnly},
		{"ServerFilesAreHidden", TestServerFilesAreHidden},
		{"SysShowsOnlyTheJob", TestSysShowsOnlyTheJob},
		{"MaskedPaths", TestMaskedPaths},
		{"ConcurrentJobsHaveTheirOwnUIDs", TestConcurrentJobsHaveTheirOwnUIDs},
		{"RootJobIsNotHostRoot", TestRootJobIsNotHostRoot},
		{"Image", TestImage},
		{"Binds", TestBinds},
		{"MinimalDev", TestMinimalDev},
		{"SeccompRefusesKernelSurface", TestSeccompRefusesKernelSurface},
		{"SeccompForeignABIKills", TestSeccompForeignABIKills},
		{"SeccompUnshareCommand", TestSeccompUnshareCommand},
		{"SeccompOrdinaryPrograms", TestSeccompOrdinaryPrograms},
		{"SeccompOff", TestSeccompOff},
	} {
		t.Run(tc.name, tc.test)
	}
}

// poolMode is how a TestPooled test's sandboxes start jobs.
type poolMode struct {
	rootAsDynamic bool

	mu     sync.Mutex
	fit    int // jobs started that fit a warm shim (guarded by mu)
	pooled int // of those, the ones that got one (guarded by mu)
}

// pooledMode is the pool mode of test t: nil unless it runs under
// TestPooled.
func pooledMode(t *testing.T) *poolMode {
	name, ok := strings.CutPrefix(t.Name(), "TestPooled/")
	if !ok {
		return nil
	}
	name, _, _ = strings.Cut(name, "/")
	return &poolMode{rootAsDynamic: strings.HasPrefix(name, "Seccomp")}
}

// spec is the spec a test job runs with (rootAsDynamic: a root job becomes
// a dynamic user's).
func (m *poolMode) spec(spec Spec) Spec {
	if m != nil && m.rootAsDynamic && spec.UID == nil && spec.GID == nil {
		spec.DynamicUser = true
	}
	return spec
}

// waitWarm waits until sb's pool has a warm shim ready for a job that fits
// one, or its refill failed (then the job starts cold), failing the test
// after jobTimeout.
func (m *poolMode) waitWarm(t *testing.T, sb *Sandbox, spec Spec, cfg StartConfig) {
	if m == nil || sb.pool == nil || !jobFitsWarm(spec, cfg) {
		return
	}
	deadline := time.Now().Add(jobTimeout)
	for {
		p := sb.pool
		p.mu.Lock()
		ready, failed := len(p.warm) > 0, p.lastErr != nil
		p.mu.Unlock()
		if ready || failed {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("no warm shim ready after %v", jobTimeout)
			return
		}
		time.Sleep(5 * time.Millisecond) // a wait with a deadline, not a fixed sleep
	}
}

// started counts a started job.
func (m *poolMode) started(spec Spec, cfg StartConfig, p *Process) {
	if m == nil || !jobFitsWarm(spec, cfg) || p == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fit++
	if p.pooled {
		m.pooled++
	}
}

// check fails the test if jobs fit a warm shim and none got one: the test
// would have checked the cold path only.
func (m *poolMode) check(t *testing.T) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fit > 0 && m.pooled == 0 {
		t.Errorf("%d jobs fit a warm shim, none got one", m.fit)
	}
	t.Logf("%d of %d jobs that fit a warm shim got one", m.pooled, m.fit)
}

// poolServerEnv, with helperEnv=poolserver, names the parent cgroup of
// the server-like helper process of TestWarmShimsDieWithTheServer.
const poolServerEnv = "TELEHANDLER_SANDBOX_TEST_POOL_PARENT"

// poolServer is a server as far as warm shims can tell: it fills a pool of
// two under the parent cgroup poolServerEnv names, prints each warm shim's
// pid and cgroup directories ("shim PID DIR..."), then "ready", and waits
// to be killed.
func poolServer() int {
	cgs, err := NewCgroups(CgroupConfig{Parent: os.Getenv(poolServerEnv)})
	if err != nil {
		fmt.Println("cgroups:", err)
		return 1
	}
	sb, err := New(Config{Cgroups: cgs, ShimPool: 2, ShimPoolLimits: DefaultLimits()})
	if err != nil {
		fmt.Println("sandbox:", err)
		return 1
	}
	sb.StartPool()
	for deadline := time.Now().Add(jobTimeout); ; time.Sleep(5 * time.Millisecond) {
		sb.pool.mu.Lock()
		warm, lastErr := slices.Clone(sb.pool.warm), sb.pool.lastErr
		sb.pool.mu.Unlock()
		if len(warm) == 2 {
			for _, w := range warm {
				fmt.Println("shim", w.sh.cmd.Process.Pid, strings.Join(w.cg.Paths(), " "))
			}
			fmt.Println("ready")
			select {}
		}
		if lastErr != nil || time.Now().After(deadline) {
			fmt.Println("pool:", lastErr)
			return 1
		}
	}
}

// waitWarmShims waits until sb's pool holds n ready shims and returns them.
func waitWarmShims(t *testing.T, sb *Sandbox, n int) []*warmShim {
	t.Helper()
	for deadline := time.Now().Add(jobTimeout); ; time.Sleep(5 * time.Millisecond) {
		sb.pool.mu.Lock()
		warm, lastErr := slices.Clone(sb.pool.warm), sb.pool.lastErr
		sb.pool.mu.Unlock()
		if len(warm) >= n {
			return warm
		}
		if lastErr != nil {
			t.Fatalf("refill: %v", lastErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d warm shims after %v, want %d", len(warm), jobTimeout, n)
		}
	}
}

// requireGone fails unless every cgroup directory of dirs is gone.
func requireDirsGone(t *testing.T, dirs []string) {
	t.Helper()
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup directory %s still exists (stat: %v)", d, err)
		}
	}
}

// TestWarmShimsDieWithTheServer: kill -9 of a server-like process (a
// helper with a full pool) leaves no warm shim running (each exits on EOF
// of its socket, and the parent-death signal kills it if it is past that
// read): their cgroups are empty, and the next server's Cleanup removes
// them.
func TestWarmShimsDieWithTheServer(t *testing.T) {
	requireRoot(t)
	parent := "telehandler-test-" + randHex(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=poolserver", poolServerEnv+"="+parent)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cgs, err := NewCgroups(CgroupConfig{Parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if err := cgs.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		_ = cgs.RemoveParent()
	})
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "shim" {
			t.Fatalf("pool server: %q", sc.Text())
		}
		pid, _ := strconv.Atoi(f[1])
		pids = append(pids, pid)
		dirs = append(dirs, f[2:]...)
	}
	if len(pids) != 2 {
		t.Fatalf("pool server gave %d shims: %v", len(pids), sc.Err())
	}
	for _, d := range dirs {
		if procs, err := readProcs(filepath.Join(d, "cgroup.procs")); err != nil || len(procs) == 0 {
			t.Fatalf("warm shim cgroup %s holds %v (%v), want the shim", d, procs, err)
		}
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// A process leaves its cgroups when it exits, zombie or not.
	for deadline := time.Now().Add(jobTimeout); ; time.Sleep(10 * time.Millisecond) {
		var left []int
		for _, d := range dirs {
			procs, err := readProcs(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				t.Fatal(err)
			}
			left = append(left, procs...)
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm shims %v still run %v after their server was killed", left, jobTimeout)
		}
	}
	// The next server cleans up the empty cgroups.
	if err := cgs.Cleanup(); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	requireDirsGone(t, dirs)
	if err := cgs.RemoveParent(); err != nil {
		t.Errorf("remove parent: %v", err)
	}
}

// TestWarmShimsRecycle: a warm shim that waited ShimPoolIdle is killed, its
// cgroup removed and its uid given back, and another takes its place.
func TestWarmShimsRecycle(t *testing.T) {
	ts := newTestSandbox(t)
	cfg := testConfig(t, ts.rec)
	cfg.ShimPool, cfg.ShimPoolLimits, cfg.ShimPoolIdle = 1, DefaultLimits(), 300*time.Millisecond
	sb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
	})
	sb.StartPool()
	old := waitWarmShims(t, sb, 1)[0]
	oldPid, oldDirs := old.sh.cmd.Process.Pid, old.cg.Paths()
	for deadline := time.Now().Add(jobTimeout); ; time.Sleep(10 * time.Millisecond) {
		sb.pool.mu.Lock()
		replaced := len(sb.pool.warm) == 1 && sb.pool.warm[0] != old
		sb.pool.mu.Unlock()
		if replaced {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm shim %d not recycled after %v", oldPid, jobTimeout)
		}
	}
	// Reaped by discard: the pid is free, not a zombie.
	if err := unix.Kill(oldPid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("recycled warm shim %d: kill 0: %v, want ESRCH", oldPid, err)
	}
	requireDirsGone(t, oldDirs)
	sb.uids.mu.Lock()
	held := sb.uids.used[old.uid]
	sb.uids.mu.Unlock()
	if held {
		t.Errorf("uid %d of the recycled warm shim still held", old.uid)
	}
}

// TestWarmShimsDrain: Close kills every warm shim, removes its cgroup and
// gives its uid back; jobs then start cold.
func TestWarmShimsDrain(t *testing.T) {
	ts := newTestSandbox(t)
	cfg := testConfig(t, ts.rec)
	cfg.ShimPool, cfg.ShimPoolLimits = 3, DefaultLimits()
	sb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sb.StartPool()
	warm := waitWarmShims(t, sb, 3)
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	for _, w := range warm {
		if err := unix.Kill(w.sh.cmd.Process.Pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Errorf("drained warm shim %d: kill 0: %v, want ESRCH", w.sh.cmd.Process.Pid, err)
		}
		requireDirsGone(t, w.cg.Paths())
	}
	sb.uids.mu.Lock()
	held := len(sb.uids.used)
	sb.uids.mu.Unlock()
	if held != 0 {
		t.Errorf("%d uids held after the drain, want 0", held)
	}
	ts.Sandbox = sb
	j := ts.startJob(t, Limits{}, asDynamic(sh("id -u")))
	mustExit0(t, j)
	if j.pooled {
		t.Error("a job started from a drained pool")
	}
}

// TestWarmJob: a job from a warm shim gets its stdin, stdout and stderr
// apart, its own limits (those that differ from the pool's rewritten
// before it runs), a uid of its own given back when it ends, and its
// cgroup is removed then.
func TestWarmJob(t *testing.T) {
	ts := newTestSandbox(t)
	cfg := testConfig(t, ts.rec)
	cfg.ShimPool, cfg.ShimPoolLimits = 1, DefaultLimits()
	ts.setConfig(t, cfg)
	waitWarmShims(t, ts.Sandbox, 1)

	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	limits := DefaultLimits()
	limits.Pids, limits.MemoryBytes, limits.CPUMilli = 77, 100<<20, 200
	p, err := ts.Start(asDynamic(sh(`read x; echo "out $x $(id -u)"; echo err >&2`)),
		StartConfig{Name: jobName(t), Limits: limits, Stdin: inR, Stdout: outW, Stderr: errW})
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !p.pooled {
		t.Fatal("not started from the warm shim")
	}
	// The job waits for its input: its limits are in place already.
	want := map[string]string{"pids.max": "77"}
	if ts.Cgroups().Version() == 2 {
		want["memory.max"] = "104857600"
		want["cpu.max"] = "20000 100000"
	} else {
		want["memory.limit_in_bytes"] = "104857600"
		want["cpu.cfs_quota_us"] = "20000"
	}
	for _, d := range p.cg.Paths() {
		for f, v := range want {
			got, err := readString(filepath.Join(d, f))
			if err != nil {
				continue // another hierarchy's file
			}
			if got != v {
				t.Errorf("%s/%s = %q, want %q", d, f, got, v)
			}
			delete(want, f)
		}
	}
	if len(want) > 0 {
		t.Errorf("limit files %v not found in %v", want, p.cg.Paths())
	}
	if _, err := inW.WriteString("hello\n"); err != nil {
		t.Fatal(err)
	}
	inW.Close()
	stdout, _ := io.ReadAll(outR)
	stderr, _ := io.ReadAll(errR)
	if st := p.Wait(); st.ExitCode != 0 {
		t.Fatalf("exit %+v", st)
	}
	f := strings.Fields(string(stdout))
	if len(f) != 3 || f[0] != "out" || f[1] != "hello" || string(stderr) != "err\n" {
		t.Fatalf("stdout %q, stderr %q; want out hello UID, err", stdout, stderr)
	}
	uid, _ := strconv.ParseUint(f[2], 10, 32)
	if r := DefaultUIDRange; uid < uint64(r.First) || uid > uint64(r.Last()) {
		t.Errorf("uid %d, want one of %s", uid, r)
	}
	requireDirsGone(t, p.cg.Paths())
	ts.uids.mu.Lock()
	held := ts.uids.used[uint32(uid)]
	ts.uids.mu.Unlock()
	if held {
		t.Errorf("uid %d still held after the job ended", uid)
	}
}

// TestWarmInitJob: an Init job from a warm shim has its init, every thread
// of it, in the job's cgroup (on v1 the warm shim's thread alone joined
// while it waited), with its command (waitForProcs: init and sleep).
func TestWarmInitJob(t *testing.T) {
	ts := newTestSandbox(t)
	cfg := testConfig(t, ts.rec)
	cfg.ShimPool, cfg.ShimPoolLimits = 1, DefaultLimits()
	ts.setConfig(t, cfg)
	waitWarmShims(t, ts.Sandbox, 1)
	spec := asDynamic(Spec{Path: "sleep", Args: []string{"1000"}})
	spec.Init = true
	j := ts.startJob(t, Limits{}, spec)
	if !j.pooled {
		t.Fatal("not started from the warm shim")
	}
	j.waitForProcs(t, 2)
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", j.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/cgroup", j.Pid(), task.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range j.cg.Paths() {
			if !strings.Contains(string(b), "/"+filepath.Base(d)+"\n") {
				t.Errorf("init thread %s is not in %s: %q", task.Name(), d, b)
				break
			}
		}
	}
	if err := j.Kill(); err != nil {
		t.Fatal(err)
	}
	if st, _ := j.wait(t); st.Signal != int(unix.SIGKILL) {
		t.Errorf("init after Kill: %+v, want killed", st)
	}
}

// TestWarmShimKilledWhileWaiting: a warm shim that died while it waited
// (the OOM killer, an operator's kill) is not handed a job: the job starts
// from another shim or cold, and the dead one leaves nothing.
func TestWarmShimKilledWhileWaiting(t *testing.T) {
	ts := newTestSandbox(t)
	cfg := testConfig(t, ts.rec)
	cfg.ShimPool, cfg.ShimPoolLimits = 1, DefaultLimits()
	ts.setConfig(t, cfg)
	w := waitWarmShims(t, ts.Sandbox, 1)[0]
	if err := unix.Kill(w.sh.cmd.Process.Pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Its socket's EOF is what take sees; wait for the kernel to close it.
	for deadline := time.Now().Add(jobTimeout); w.alive(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("killed warm shim still alive after %v", jobTimeout)
		}
	}
	j := ts.startJob(t, Limits{}, asDynamic(sh("echo ok")))
	if out := mustExit0(t, j); out != "ok\n" {
		t.Errorf("output %q, want ok", out)
	}
	requireDirsGone(t, w.cg.Paths())
	ts.uids.mu.Lock()
	held := ts.uids.used[w.uid]
	ts.uids.mu.Unlock()
	if held {
		t.Errorf("uid %d of the dead warm shim still held", w.uid)
	}
}
