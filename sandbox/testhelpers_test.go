//go:build linux

package sandbox

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// helperEnv switches the test binary into a helper program run as a job's
// command (a Go program is the one tool that behaves the same on Debian and
// busybox). The shim itself runs with an empty environment and so never
// takes this path.
const helperEnv = "TELEHANDLER_SANDBOX_TEST_HELPER"

// jobTimeout bounds every wait for a job in these tests. It is a failure
// deadline, not a sleep: jobs normally finish in milliseconds; inside the
// emulated cgroup v2 VM everything is 10-20x slower.
const jobTimeout = 2 * time.Minute

func init() {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "netcheck":
		os.Exit(netCheck())
	case "poolserver":
		os.Exit(poolServer())
	case "pdeathsig":
		var sig int32
		if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0); err != nil {
			fmt.Println("prctl:", err)
			os.Exit(1)
		}
		fmt.Println(sig)
		os.Exit(0)
	default:
		if run, ok := seccompHelpers[os.Getenv(helperEnv)]; ok {
			os.Exit(run())
		}
		if code, ok := isolationHelper(os.Getenv(helperEnv)); ok {
			os.Exit(code)
		}
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// netCheck prints every interface with its flags, then proves lo carries
// traffic by connecting to a listener on 127.0.0.1.
func netCheck() int {
	ifs, err := net.Interfaces()
	if err != nil {
		fmt.Println("interfaces:", err)
		return 1
	}
	for _, i := range ifs {
		fmt.Printf("if %s %s\n", i.Name, i.Flags)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	defer ln.Close()
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	c.Close()
	fmt.Println("loopback ok")
	return 0
}

// testSandbox is a Sandbox on a parent cgroup of its own
// (telehandler-test-<random>), which is removed when the test ends.
type testSandbox struct {
	*Sandbox
	parent string
	rec    *recordingCgroups
	// pool is the warm shim pool mode of the test (TestPooled), nil
	// without a pool.
	pool *poolMode
}

// newTestSandbox needs root. The test binary is its own shim.
func newTestSandbox(t *testing.T) *testSandbox {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	parent := "telehandler-test-" + hex.EncodeToString(b)
	cgs, err := NewCgroups(CgroupConfig{Parent: parent})
	if err != nil {
		t.Fatalf("NewCgroups: %v", err)
	}
	rec := &recordingCgroups{Cgroups: cgs}
	ts := &testSandbox{parent: parent, rec: rec, pool: pooledMode(t)}
	t.Cleanup(func() {
		// The warm shims first: Cleanup would kill them under the pool.
		if err := ts.Close(); err != nil {
			t.Errorf("drain the shim pool: %v", err)
		}
		ts.pool.check(t)
		if err := cgs.Cleanup(); err != nil {
			t.Errorf("cleanup of %s: %v", parent, err)
		}
		// The parent directories themselves (one per v1 hierarchy, or
		// one on v2) are ours too: they are the parents of the job
		// cgroups we created.
		for _, dir := range rec.parentDirs() {
			if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("remove test parent cgroup %s: %v", dir, err)
			}
		}
	})
	ts.setConfig(t, testConfig(t, rec))
	return ts
}

// setConfig makes ts's Sandbox New(cfg), with the test's warm shim pool
// (TestPooled) if it has one; the one it replaces is closed.
func (ts *testSandbox) setConfig(t *testing.T, cfg Config) {
	t.Helper()
	if ts.pool != nil {
		cfg.ShimPool = 2
		cfg.ShimPoolLimits = DefaultLimits()
	}
	sb, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if ts.Sandbox != nil {
		if err := ts.Close(); err != nil {
			t.Errorf("drain the shim pool: %v", err)
		}
	}
	sb.StartPool()
	ts.Sandbox = sb
}

// testConfig is the Config of the tests' sandboxes: the job's view has this
// test binary (a helper program for some tests), bound read-only at its
// own path (under /tmp when go test built it, which the job does not see).
func testConfig(t *testing.T, cgroups Cgroups) Config {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(exe)
	return Config{Cgroups: cgroups, Binds: []Bind{{Host: dir, Job: dir}}}
}

// bind makes ts's jobs see binds too (after the test binary's directory).
func (ts *testSandbox) bind(t *testing.T, binds ...Bind) {
	t.Helper()
	cfg := testConfig(t, ts.rec)
	cfg.Binds = append(cfg.Binds, binds...)
	ts.setConfig(t, cfg)
}

// recordingCgroups remembers the paths of every cgroup created, so that a
// test can check they are gone and remove the parents at the end.
type recordingCgroups struct {
	Cgroups
	mu    sync.Mutex
	paths map[string][]string // cgroup name -> Paths()
}

func (r *recordingCgroups) Create(name string, limits Limits) (Cgroup, error) {
	cg, err := r.Cgroups.Create(name, limits)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paths == nil {
		r.paths = make(map[string][]string)
	}
	r.paths[name] = cg.Paths()
	return cg, nil
}

// pathsOf are the directories cgroup name had; nil if it was never created.
func (r *recordingCgroups) pathsOf(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paths[name]
}

func (r *recordingCgroups) parentDirs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var dirs []string
	for _, ps := range r.paths {
		for _, p := range ps {
			if d := filepath.Dir(p); !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// requireCgroupGone fails unless every directory of cgroup name is gone.
func (ts *testSandbox) requireCgroupGone(t *testing.T, name string) {
	t.Helper()
	for _, p := range ts.rec.pathsOf(name) {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup directory %s still exists (stat: %v)", p, err)
		}
	}
}

// jobName is a fresh cgroup name for one job of a test.
func jobName(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Error(err)
	}
	return "job-" + hex.EncodeToString(b)
}

// cgroupPaths are the directories cgroup name will have (one per v1
// hierarchy, or one on v2), learnt from a probe cgroup created and removed.
func (ts *testSandbox) cgroupPaths(t *testing.T, name string) []string {
	t.Helper()
	probe := jobName(t)
	cg, err := ts.Cgroups().Create(probe, Limits{})
	if err != nil {
		t.Fatalf("probe cgroup: %v", err)
	}
	paths := cg.Paths()
	if err := cg.Delete(); err != nil {
		t.Fatalf("remove probe cgroup: %v", err)
	}
	for i, p := range paths {
		paths[i] = filepath.Join(filepath.Dir(p), name)
	}
	return paths
}

// testJob is a started job whose stdout and stderr are collected.
type testJob struct {
	*Process
	name    string
	outDone chan struct{} // closed once out holds all the output
	out     string        // stdout and stderr, interleaved
}

// startJob starts spec with limits and collects its output. The job is
// killed when the test ends.
func (ts *testSandbox) startJob(t *testing.T, limits Limits, spec Spec) *testJob {
	t.Helper()
	return ts.startNamedJob(t, jobName(t), limits, spec)
}

// startNamedJob is startJob with the job's cgroup name chosen by the test.
func (ts *testSandbox) startNamedJob(t *testing.T, name string, limits Limits, spec Spec) *testJob {
	t.Helper()
	j, err := ts.start(t, name, limits, spec)
	if err != nil {
		t.Fatalf("Start %q %q: %v", spec.Path, spec.Args, err)
	}
	return j
}

// tryStart is startJob returning Start's error (safe in any goroutine).
func (ts *testSandbox) tryStart(t *testing.T, limits Limits, spec Spec) (*testJob, error) {
	return ts.start(t, jobName(t), limits, spec)
}

func (ts *testSandbox) start(t *testing.T, name string, limits Limits, spec Spec) (*testJob, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return &testJob{name: name}, err
	}
	spec = ts.pool.spec(spec)
	cfg := StartConfig{Name: name, Limits: limits, Stdout: w, Stderr: w}
	ts.pool.waitWarm(t, ts.Sandbox, spec, cfg)
	p, err := ts.Start(spec, cfg)
	ts.pool.started(spec, cfg, p)
	w.Close()
	if err != nil {
		r.Close()
		return &testJob{name: name}, err
	}
	j := &testJob{Process: p, name: name, outDone: make(chan struct{})}
	// The reader is owned by the job: it ends when every process holding
	// the pipe is gone, which Kill/Done guarantee.
	go func() {
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, r)
		r.Close()
		j.out = buf.String()
		close(j.outDone)
	}()
	t.Cleanup(func() {
		if err := p.Kill(); err != nil {
			t.Errorf("kill job %s: %v", name, err)
		}
		<-p.Done()
	})
	return j, nil
}

// wait waits for the job to end and for its output, failing after
// jobTimeout.
func (j *testJob) wait(t *testing.T) (ExitState, string) {
	t.Helper()
	select {
	case <-j.Done():
	case <-time.After(jobTimeout):
		t.Fatalf("job %s still running after %v", j.name, jobTimeout)
	}
	state := j.Wait()
	select {
	case <-j.outDone:
		return state, j.out
	case <-time.After(jobTimeout):
		t.Fatalf("output of job %s not closed after %v", j.name, jobTimeout)
	}
	return state, ""
}

// sh is a Spec running script with /bin/sh -c.
func sh(script string) Spec {
	return Spec{Path: "/bin/sh", Args: []string{"-c", script}}
}

// waitForProcs polls the job's cgroup until it holds at least n processes
// (the job is still starting them), failing after jobTimeout. Polling here
// waits for a condition with a deadline; it is not a fixed sleep.
func (j *testJob) waitForProcs(t *testing.T, n int) []int {
	t.Helper()
	deadline := time.Now().Add(jobTimeout)
	for {
		pids, err := j.cg.Procs()
		if err != nil {
			t.Fatalf("procs: %v", err)
		}
		if len(pids) >= n {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s has %d processes after %v, want %d", j.name, len(pids), jobTimeout, n)
		}
		select {
		case <-j.Done():
			_, out := j.wait(t)
			t.Fatalf("job %s ended while waiting for %d processes: %+v, output %q", j.name, n, j.Wait(), out)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// cgroupLines parses /proc/<pid>/cgroup content into hierarchy controllers
// -> path ("" is the v2 line).
func cgroupLines(content string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(content), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 {
			m[parts[1]] = parts[2]
		}
	}
	return m
}

// checkInCgroup fails unless the /proc/<pid>/cgroup content names cgroup
// rel for every controller the job is limited by.
func checkInCgroup(t *testing.T, version int, content, rel string) {
	t.Helper()
	lines := cgroupLines(content)
	if version == 2 {
		if got := lines[""]; got != rel {
			t.Errorf("v2 cgroup %q, want %q (all: %q)", got, rel, content)
		}
		return
	}
	for _, ctrl := range []string{"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"} {
		found := false
		for ctrls, path := range lines {
			for _, c := range strings.Split(ctrls, ",") {
				if c == ctrl {
					found = true
					if path != rel {
						t.Errorf("controller %s: cgroup %q, want %q", ctrl, path, rel)
					}
				}
			}
		}
		if !found {
			t.Errorf("controller %s missing from %q", ctrl, content)
		}
	}
}
