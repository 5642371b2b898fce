package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hidingCgroups hands out its cgroups wrapped so that Start sees only the
// Cgroup interface: no tasks files for the shim, as with a Cgroups
// implementation of another package.
type hidingCgroups struct{ Cgroups }

func (h hidingCgroups) Create(name string, limits Limits) (Cgroup, error) {
	cg, err := h.Cgroups.Create(name, limits)
	if err != nil {
		return nil, err
	}
	return struct{ Cgroup }{cg}, nil
}

// TestCommandStartsInCgroupWhenMoved is TestCommandStartsInCgroup's first
// check for cgroups that offer only the Cgroup interface: on v1 the parent
// then moves the shim (Cgroup.Add) before it sends the spec, instead of the
// shim's thread joining by itself.
func TestCommandStartsInCgroupWhenMoved(t *testing.T) {
	ts := newTestSandbox(t)
	sb, err := New(Config{Cgroups: hidingCgroups{ts.rec}})
	if err != nil {
		t.Fatal(err)
	}
	ts.Sandbox = sb

	name := jobName(t)
	paths := ts.cgroupPaths(t, name)
	args := []string{"/proc/self/cgroup"}
	for _, p := range paths {
		args = append(args, filepath.Join(p, "cgroup.procs"))
	}
	j := ts.startNamedJob(t, name, DefaultLimits(), Spec{Path: "cat", Args: args})
	state, out := j.wait(t)
	if state.ExitCode != 0 {
		t.Fatalf("cat: %+v %q", state, out)
	}
	var cgroupFile []string
	ones := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		switch {
		case strings.Contains(line, ":"):
			cgroupFile = append(cgroupFile, line)
		case line == "1":
			ones++
		default:
			t.Errorf("unexpected line %q: another process in the job's cgroup?", line)
		}
	}
	if ones != len(paths) {
		t.Errorf("cat found itself in %d of the %d cgroup.procs %v: %q", ones, len(paths), paths, out)
	}
	checkInCgroup(t, ts.Cgroups().Version(), strings.Join(cgroupFile, "\n"), "/")
	ts.requireCgroupGone(t, name)
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
