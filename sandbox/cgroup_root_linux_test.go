package sandbox

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Root tests: they run against the host's real cgroups (v1 hybrid here and
// in CI, pure v2 in the VM of `make test-cgroupv2`) under a parent of their
// own that they remove at the end.

// newRootCgroups returns the host's cgroup manager under a fresh
// telehandler-test-<random> parent, cleaned up and removed when t ends.
func newRootCgroups(t *testing.T) Cgroups {
	t.Helper()
	return newRootCgroupsBelow(t, "")
}

// newRootCgroupsBelow is newRootCgroups with the parent nested one level
// deeper: telehandler-test-<random>/sub when sub is not "".
func newRootCgroupsBelow(t *testing.T, sub string) Cgroups {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 6)
	rand.Read(b)
	parent := "telehandler-test-" + hex.EncodeToString(b)
	if sub != "" {
		parent += "/" + sub
	}
	cgs, err := NewCgroups(CgroupConfig{Parent: parent})
	if err != nil {
		t.Fatalf("NewCgroups: %v", err)
	}
	t.Cleanup(func() {
		if err := cgs.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
		for _, dir := range parentDirs(cgs) {
			if sub != "" {
				removeEmpty(t, dir)
				dir = filepath.Dir(dir)
			}
			removeEmpty(t, dir)
		}
	})
	return cgs
}

func removeEmpty(t *testing.T, dir string) {
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("remove test parent: %v", err)
	}
}

// parentDirs are the parent cgroup's directories (one per v1 hierarchy).
func parentDirs(cgs Cgroups) []string {
	switch m := cgs.(type) {
	case *cgroupsV1:
		var dirs []string
		for _, h := range m.hierarchies() {
			dirs = append(dirs, filepath.Join(h, m.parent))
		}
		return dirs
	case *cgroupsV2:
		return []string{m.parentDir()}
	}
	return nil
}

// gatedCommand starts sh -c script; the script should begin with `read x`
// so that it runs only after release is called, once it is in the cgroup.
type gatedCommand struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startGated(t *testing.T, script string) *gatedCommand {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Only if the test failed before killing it: this is our own child.
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return &gatedCommand{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
}

// release lets the script run and returns its first output line.
func (g *gatedCommand) release(t *testing.T) string {
	t.Helper()
	if _, err := io.WriteString(g.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	line, err := g.out.ReadString('\n')
	if err != nil {
		t.Fatalf("read the script's output: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestCgroupRootLimitsFiles(t *testing.T) {
	cgs := newRootCgroups(t)
	limits := Limits{
		CPUMilli:    200,
		MemoryBytes: 64 << 20,
		IOReadBPS:   10 << 20,
		IOWriteBPS:  5 << 20,
		IOReadIOPS:  500,
		IOWriteIOPS: 0, // no limit
		Pids:        20,
	}
	cg, err := cgs.Create("limits", limits)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer cg.Delete()
	devs, err := blockDevices("/sys/block")
	if err != nil || len(devs) == 0 {
		t.Fatalf("no real block device found: %v %v", devs, err)
	}
	if mm := os.Getenv("SCRATCH_MAJMIN"); mm != "" && !slices.Contains(devs, mm) {
		t.Errorf("real disks %v do not include the VM's scratch disk %s", devs, mm)
	}
	find := func(file string) string {
		for _, p := range cg.Paths() {
			if b, err := os.ReadFile(filepath.Join(p, file)); err == nil {
				return strings.TrimSpace(string(b))
			}
		}
		t.Errorf("%s: in none of %v", file, cg.Paths())
		return ""
	}
	want := map[string]string{"pids.max": "20"}
	if cgs.Version() == 1 {
		want["cpu.cfs_period_us"] = "100000"
		want["cpu.cfs_quota_us"] = "20000"
		want["memory.limit_in_bytes"] = "67108864"
		want["memory.soft_limit_in_bytes"] = "50331648"
		if exists(filepath.Join(cg.(*cgroupV1).dirs["memory"], "memory.memsw.limit_in_bytes")) {
			want["memory.memsw.limit_in_bytes"] = "67108864"
		}
	} else {
		want["cpu.max"] = "20000 100000"
		want["memory.max"] = "67108864"
		want["memory.high"] = "50331648"
		if exists(filepath.Join(cg.Paths()[0], "memory.swap.max")) {
			want["memory.swap.max"] = "0"
		}
	}
	for file, v := range want {
		if got := find(file); got != v {
			t.Errorf("%s = %q, want %q", file, got, v)
		}
	}
	if cgs.Version() == 1 {
		for file, v := range map[string]uint64{
			"blkio.throttle.read_bps_device":  limits.IOReadBPS,
			"blkio.throttle.write_bps_device": limits.IOWriteBPS,
			"blkio.throttle.read_iops_device": limits.IOReadIOPS,
		} {
			got := find(file)
			for _, d := range devs {
				if line := d + " " + strconv.FormatUint(v, 10); !strings.Contains(got, line) {
					t.Errorf("%s = %q, want a line %q", file, got, line)
				}
			}
		}
		if got := find("blkio.throttle.write_iops_device"); got != "" {
			t.Errorf("blkio.throttle.write_iops_device = %q, want no rule", got)
		}
	} else {
		got := find("io.max")
		for _, d := range devs {
			line := d + " rbps=10485760 wbps=5242880 riops=500 wiops=max"
			if !strings.Contains(got, line) {
				t.Errorf("io.max = %q, want a line %q", got, line)
			}
		}
	}
}

func TestCgroupRootDefaultsAndNoLimits(t *testing.T) {
	cgs := newRootCgroups(t)
	for _, tc := range []struct {
		name   string
		limits Limits
	}{{"defaults", DefaultLimits()}, {"nolimits", Limits{}}} {
		cg, err := cgs.Create(tc.name, tc.limits)
		if err != nil {
			t.Fatalf("Create(%s): %v", tc.name, err)
		}
		if err := cg.Delete(); err != nil {
			t.Fatalf("Delete(%s): %v", tc.name, err)
		}
	}
}

func TestCgroupRootAddKillDelete(t *testing.T) {
	testAddKillDelete(t, newRootCgroups(t))
}

// TestCgroupRootNestedParent puts the parent one level deeper: on v2 the
// controllers must then be enabled in two ancestors below the root.
func TestCgroupRootNestedParent(t *testing.T) {
	testAddKillDelete(t, newRootCgroupsBelow(t, "nested"))
}

func testAddKillDelete(t *testing.T, cgs Cgroups) {
	cg, err := cgs.Create("job", DefaultLimits())
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	// The script forks two daemons-to-be once it is in the cgroup.
	g := startGated(t, `read x; sleep 1000 & sleep 1000 & echo ready; wait`)
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if line := g.release(t); line != "ready" {
		t.Fatalf("script said %q", line)
	}
	pids, err := cg.Procs()
	if err != nil {
		t.Fatalf("Procs: %v", err)
	}
	if len(pids) != 3 || !slices.Contains(pids, g.cmd.Process.Pid) {
		t.Fatalf("Procs = %v, want the shell %d and its two sleeps", pids, g.cmd.Process.Pid)
	}
	for _, pid := range pids {
		checkProcCgroup(t, pid, cgs, cg.Name())
	}
	if _, err := cg.Stats(); err != nil {
		t.Errorf("Stats: %v", err)
	}
	start := time.Now()
	if err := cg.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	t.Logf("Kill emptied the cgroup in %v", time.Since(start))
	if pids, err := cg.Procs(); err != nil || len(pids) != 0 {
		t.Fatalf("after Kill: Procs = %v, %v; want none", pids, err)
	}
	err = g.cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the shell ended with %v, want SIGKILL", err)
	}
	for _, pid := range pids {
		if state := procState(pid); state != "" && state != "Z" && state != "X" {
			t.Errorf("process %d is alive (state %s) after Kill", pid, state)
		}
	}
	if err := cg.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, p := range cg.Paths() {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists after Delete (%v)", p, err)
		}
	}
	if err := cg.Delete(); err != nil {
		t.Errorf("second Delete: %v, want a no-op", err)
	}
}

// procState is the state letter of /proc/pid/stat ("Z" for a zombie the
// sleeps' new parent has not reaped yet), "" when the process is gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	_, after, _ := strings.Cut(string(b), ") ")
	state, _, _ := strings.Cut(after, " ")
	return state
}

// checkProcCgroup checks that /proc/pid/cgroup puts pid in the job's
// cgroup for every controller we limit.
func checkProcCgroup(t *testing.T, pid int, cgs Cgroups, name string) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	want := "/" + parentName(cgs) + "/" + name
	ctrls := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 || f[2] != want {
			continue
		}
		if f[1] == "" {
			ctrls["v2"] = true
		}
		for c := range strings.SplitSeq(f[1], ",") {
			ctrls[c] = true
		}
	}
	need := v1Controllers()
	if cgs.Version() == 2 {
		need = []string{"v2"}
	}
	for _, c := range need {
		if !ctrls[c] {
			t.Errorf("pid %d: /proc/%d/cgroup has no %s line for %s:\n%s", pid, pid, c, want, b)
		}
	}
}

func parentName(cgs Cgroups) string {
	switch m := cgs.(type) {
	case *cgroupsV1:
		return m.parent
	case *cgroupsV2:
		return m.parent
	}
	return ""
}

func TestCgroupRootSignal(t *testing.T) {
	cgs := newRootCgroups(t)
	cg, err := cgs.Create("job", Limits{})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer cg.Delete()
	g := startGated(t, `read x; trap 'echo term; exit 3' TERM; echo ready; while :; do sleep 1; done`)
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if line := g.release(t); line != "ready" {
		t.Fatalf("script said %q", line)
	}
	if err := cg.Signal(int(syscall.SIGTERM)); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	// The trap runs once the sleep in progress returns.
	if line, _ := g.out.ReadString('\n'); strings.TrimSpace(line) != "term" {
		t.Errorf("after SIGTERM the script said %q, want term", line)
	}
	if err := cg.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	g.cmd.Wait()
}

// TestCgroupRootStats runs a CPU burner, a memory hog past its limit and a
// direct write, and checks the cgroup accounted each.
func TestCgroupRootStats(t *testing.T) {
	cgs := newRootCgroups(t)
	cg, err := cgs.Create("job", Limits{MemoryBytes: 32 << 20, Pids: 100})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer cg.Delete()

	// CPU and IO: a loop, then 4 MiB written with O_DIRECT to a real disk
	// (the VM's /scratch, the host's /var/tmp), so the block layer sees it.
	dir := "/var/tmp"
	if _, err := os.Stat("/scratch"); err == nil {
		dir = "/scratch"
	}
	f, err := os.CreateTemp(dir, "telehandler-test-io-")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer os.Remove(f.Name())
	g := startGated(t, `read x; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; `+
		`dd if=/dev/zero of=`+f.Name()+` bs=1M count=4 oflag=direct 2>/dev/null; echo done`)
	if err := cg.Add(g.cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if line := g.release(t); line != "done" {
		t.Fatalf("script said %q", line)
	}
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("script: %v", err)
	}
	s, err := cg.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	t.Logf("after the loop and dd: %+v", s)
	if s.CPUUsage <= 0 {
		t.Errorf("CPUUsage = %v, want > 0", s.CPUUsage)
	}
	if s.MemoryPeak == 0 {
		t.Errorf("MemoryPeak = 0, want > 0")
	}
	if s.IOWriteBytes < 4<<20 {
		t.Errorf("IOWriteBytes = %d, want >= 4 MiB", s.IOWriteBytes)
	}
	if s.OOMKills != 0 {
		t.Errorf("OOMKills = %d before any hog", s.OOMKills)
	}

	// Memory: the test binary itself touches 256 MiB in a 32 MiB cgroup.
	hog := exec.Command(os.Args[0], "-test.run=^TestCgroupHelperHog$")
	hog.Env = append(os.Environ(), "TELEHANDLER_TEST_HOG=1")
	stdin, err := hog.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hog.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cg.Add(hog.Process.Pid); err != nil {
		hog.Process.Kill()
		hog.Wait()
		t.Fatalf("Add: %v", err)
	}
	stdin.Close() // the hog starts once stdin reaches EOF
	start := time.Now()
	err = hog.Wait()
	// On v2 the hog is throttled between memory.high (75%) and memory.max
	// before the OOM killer ends it: seconds, not milliseconds.
	t.Logf("the hog ran %v", time.Since(start))
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("hog ended with %v, want killed by the OOM killer", err)
	}
	s, err = cg.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	t.Logf("after the hog: %+v", s)
	if s.OOMKills < 1 {
		t.Errorf("OOMKills = %d, want >= 1", s.OOMKills)
	}
	if s.MemoryPeak > 33<<20 {
		t.Errorf("MemoryPeak = %d, above the 32 MiB limit", s.MemoryPeak)
	}
}

// TestCgroupHelperHog is not a test: TestCgroupRootStats runs the test
// binary with TELEHANDLER_TEST_HOG=1 as a memory hog.
func TestCgroupHelperHog(t *testing.T) {
	if os.Getenv("TELEHANDLER_TEST_HOG") != "1" {
		// Return, not t.Skip: make test-cgroupv2 fails on any skipped test.
		return
	}
	io.Copy(io.Discard, os.Stdin) // wait until the parent put us in the cgroup
	var chunks [][]byte
	for range 256 {
		c := make([]byte, 1<<20)
		for i := range c {
			if i%4096 == 0 {
				c[i] = 1
			}
		}
		chunks = append(chunks, c)
	}
	os.Exit(len(chunks) & 0) // not reached under a 32 MiB limit
}

// TestCgroupRootParentPids: with ParentPids, the parent's pids.max caps
// the processes of all jobs together, each job within its own larger
// pids.max: two jobs of 1024 each cannot pass 12 together, which is what
// keeps many jobs of one user from taking every pid of the host.
func TestCgroupRootParentPids(t *testing.T) {
	cgs := newRootCgroups(t)
	switch m := cgs.(type) {
	case *cgroupsV1:
		m.parentPids = 12
	case *cgroupsV2:
		m.parentPids = 12
	}
	var jobs []Cgroup
	for _, name := range []string{"one", "two"} {
		cg, err := cgs.Create(name, Limits{Pids: 1024})
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		defer cg.Delete()
		defer cg.Kill()
		jobs = append(jobs, cg)
	}
	var parentPids string
	for _, dir := range parentDirs(cgs) {
		if b, err := os.ReadFile(filepath.Join(dir, "pids.max")); err == nil {
			parentPids = strings.TrimSpace(string(b))
		}
	}
	if parentPids != "12" {
		t.Fatalf("parent pids.max = %q, want 12", parentPids)
	}
	// The first job's shell forks 10 sleeps: 11 processes of the 12. The
	// second job's shell makes 12; its fork fails, although that job has
	// 1 process of its 1024.
	first := startGated(t, `read x; for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1000 & done; echo ready; wait`)
	if err := jobs[0].Add(first.cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if line := first.release(t); line != "ready" {
		t.Fatalf("first job's script said %q", line)
	}
	second := startGated(t, `read x; sleep 1000 & echo forked; wait`)
	if err := jobs[1].Add(second.cmd.Process.Pid); err != nil {
		t.Fatalf("Add: %v", err)
	}
	io.WriteString(second.stdin, "go\n")
	if line, _ := second.out.ReadString('\n'); strings.TrimSpace(line) == "forked" {
		t.Error("the second job forked past the parent's pids.max")
	}
	total := 0
	for _, cg := range jobs {
		pids, err := cg.Procs()
		if err != nil {
			t.Fatal(err)
		}
		total += len(pids)
	}
	if total > 12 {
		t.Errorf("%d processes in the two jobs, want at most the parent's 12", total)
	}
}
