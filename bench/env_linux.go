package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const cgroupRoot = "/sys/fs/cgroup"

// env owns the run's temporary directory and everything started in it.
// Cleanups run in reverse order of registration, also after a failure.
type env struct {
	dir      string
	cleanups []func()
}

// runParent is where the run's directory (the server's state directory
// among it) is made: beside serve's default state directory,
// /var/lib/telehandler, so that the bench pays what a default server pays
// to create a job's files. Under /tmp, where other programs create and
// delete files all day, ext4 skips its recently freed inodes one by one and
// each file creation cost 0.25-0.7 ms of CPU instead of 0.015 ms (measured
// on this project's CI machines; see jobrunner/spare.go).
const runParent = "/var/lib"

func newEnv() (*env, error) {
	dir, err := os.MkdirTemp(runParent, "telehandler-bench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	// Jobs may run as an unprivileged user: they must be able to reach the
	// fan-out data under this directory (but not list it).
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	return &env{dir: dir}, nil
}

func (e *env) path(elem ...string) string { return filepath.Join(append([]string{e.dir}, elem...)...) }

func (e *env) defer_(f func()) { e.cleanups = append(e.cleanups, f) }

// close runs every cleanup, newest first, and removes the directory unless
// keep is set.
func (e *env) close(keep bool) {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
	if keep {
		logf("kept %s", e.dir)
		return
	}
	if err := os.RemoveAll(e.dir); err != nil {
		logf("remove %s: %v", e.dir, err)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// daemon is a long-lived process the run started (server, sshd), in its
// own process group so that stopping it reaches whatever it forked.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait returned
	err  error         // Wait's result, set before done closes
}

// startDaemon starts cmd in a new process group with its output appended to
// logPath. The process gets SIGTERM if the harness dies.
func startDaemon(name string, cmd *exec.Cmd, logPath string) (*daemon, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process, waits up to grace for it to exit, then
// SIGKILLs its process group. It reports whether the process exited on
// SIGTERM in time.
func (d *daemon) stop(grace time.Duration) bool {
	if d.exited() {
		return true
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		_ = syscall.Kill(-d.pid(), syscall.SIGKILL) // stragglers in its group
		return true
	case <-time.After(grace):
	}
	logf("%s did not exit %s after SIGTERM: killing its process group", d.name, grace)
	_ = syscall.Kill(-d.pid(), syscall.SIGKILL)
	<-d.done
	return false
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor calls ready every interval until it returns nil, the daemon
// exits or the timeout passes. It is only used for readiness of daemons
// that offer no notification (a listening socket).
func waitFor(ctx context.Context, d *daemon, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if d != nil && d.exited() {
			return fmt.Errorf("%s exited: %v", d.name, d.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runQuiet runs a short command and returns its combined output in the
// error when it fails.
func runQuiet(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// procStatusKiB reads a "Vm..." field of /proc/PID/status in KiB.
func procStatusKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// cpuTime is the CPU time (user + system) process pid used so far.
func cpuTime(pid int) time.Duration { return procCPU(pid, false) }

// cpuTimeWithChildren is cpuTime plus that of the children pid waited for
// (and of theirs, recursively): what a forking daemon such as sshd spent
// on the connections that ended.
func cpuTimeWithChildren(pid int) time.Duration { return procCPU(pid, true) }

func procCPU(pid int, children bool) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	// After "pid (comm)": state is field 3, utime 14 and stime 15.
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	ticks := utime + stime
	if children && len(f) >= 15 { // cutime 16 and cstime 17
		cutime, _ := strconv.ParseInt(f[13], 10, 64)
		cstime, _ := strconv.ParseInt(f[14], 10, 64)
		ticks += cutime + cstime
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(ticks) * time.Second / ticksPerSecond
}

// rssBytes is the process's resident set size now.
func rssBytes(pid int) int64 {
	kib, err := procStatusKiB(pid, "VmRSS")
	if err != nil {
		return 0
	}
	return kib << 10
}

// hwmBytes is the process's peak resident set size (since the last reset).
func hwmBytes(pid int) int64 {
	kib, err := procStatusKiB(pid, "VmHWM")
	if err != nil {
		return 0
	}
	return kib << 10
}

// resetHWM resets the process's VmHWM to its current RSS.
func resetHWM(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// cgroupHierarchies lists the cgroup mount points under /sys/fs/cgroup (the
// v1 hierarchies and the unified one; or /sys/fs/cgroup itself on v2).
func cgroupHierarchies() []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fsType := strings.Fields(post)[0]
		fields := strings.Fields(pre)
		if len(fields) < 5 || (fsType != "cgroup" && fsType != "cgroup2") {
			continue
		}
		mp := fields[4]
		if mp == cgroupRoot || strings.HasPrefix(mp, cgroupRoot+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// cgroupsUnder lists every cgroup directory below parent (not parent
// itself) in every hierarchy, deepest first.
func cgroupsUnder(parent string) []string {
	var dirs []string
	for _, h := range cgroupHierarchies() {
		top := filepath.Join(h, parent)
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // parent absent in this hierarchy
			}
			if d.IsDir() && p != top {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs
}

// pidsInCgroup lists processes whose cgroup, in any hierarchy, is parent
// or below it.
func pidsInCgroup(parent string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) == 3 && (parts[2] == "/"+parent || strings.HasPrefix(parts[2], "/"+parent+"/")) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// waitingWarmShim reports whether pid is a warm shim waiting for its job
// (serve --shim-pool): its command line is BIN __child warm until it execs
// a job's command. It is the server's, not a job's: the checks for what
// jobs left behind while the server runs skip it and its cgroup.
func waitingWarmShim(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.HasSuffix(string(cmdline), "\x00__child\x00warm\x00")
}

// warmShimCgroup reports whether cgroup dir holds waiting warm shims and
// nothing else.
func warmShimCgroup(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	pids := strings.Fields(string(data))
	if err != nil || len(pids) == 0 {
		return false
	}
	for _, p := range pids {
		pid, err := strconv.Atoi(p)
		if err != nil || !waitingWarmShim(pid) {
			return false
		}
	}
	return true
}

// jobsLeft counts what jobs left under the cgroup parent while the server
// (serverPid) runs: cgroups, processes in them and the server's children,
// waiting warm shims and their cgroups not counted.
func jobsLeft(parent string, serverPid int) (cgroups, pids, kids int) {
	cgroups = len(slices.DeleteFunc(cgroupsUnder(parent), warmShimCgroup))
	pids = len(slices.DeleteFunc(pidsInCgroup(parent), waitingWarmShim))
	if serverPid > 0 {
		kids = len(slices.DeleteFunc(childrenOf(serverPid), waitingWarmShim))
	}
	return cgroups, pids, kids
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	want := strconv.Itoa(pid)
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) > 1 && f[1] == want {
			kids = append(kids, p)
		}
	}
	return kids
}

// removeCgroupTree removes parent and everything below it in every
// hierarchy. Only ever called with a parent this run created: processes
// still inside are this run's, and are killed first. It returns what it
// found left over.
func removeCgroupTree(parent string) (leftCgroups, leftPids int, err error) {
	if !strings.HasPrefix(parent, "telehandler") {
		return 0, 0, fmt.Errorf("refusing to remove cgroup %q: not ours", parent)
	}
	pids := pidsInCgroup(parent)
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	dirs := cgroupsUnder(parent)
	var errs []error
	for _, d := range dirs {
		errs = append(errs, rmdirRetry(d))
	}
	for _, h := range cgroupHierarchies() {
		top := filepath.Join(h, parent)
		if _, err := os.Stat(top); err == nil {
			errs = append(errs, rmdirRetry(top))
		}
	}
	return len(dirs), len(pids), errors.Join(errs...)
}

// rmdirRetry removes a cgroup directory; a cgroup whose last process was
// just killed is busy until the kernel has reaped it, so it retries briefly.
func rmdirRetry(dir string) error {
	var err error
	for range 100 {
		err = syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}
