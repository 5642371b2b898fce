package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of the waits on the kernel. Killing a cgroup normally empties it
// in milliseconds; the caps only keep a wedged kernel from hanging us.
const (
	killTimeout   = 10 * time.Second
	freezeTimeout = 2 * time.Second
	rmdirTimeout  = 2 * time.Second
	firstBackoff  = time.Millisecond
	maxBackoff    = 50 * time.Millisecond
)

// backoff paces a bounded retry loop where the kernel offers no
// notification (cgroup v1 freezer state and emptiness, rmdir's EBUSY).
type backoff struct {
	deadline time.Time
	delay    time.Duration
}

func newBackoff(limit time.Duration) *backoff {
	return &backoff{deadline: time.Now().Add(limit), delay: firstBackoff}
}

// wait sleeps before the next try and reports false once the time is up.
func (b *backoff) wait() bool {
	left := time.Until(b.deadline)
	if left <= 0 {
		return false
	}
	time.Sleep(min(b.delay, left))
	b.delay = min(2*b.delay, maxBackoff)
	return true
}

// readString reads a control file without its trailing newline.
func readString(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readUint reads a control file holding one unsigned number.
func readUint(path string) (uint64, error) {
	s, err := readString(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

// readFields reads a control file holding space-separated words
// (cgroup.controllers, cgroup.subtree_control).
func readFields(path string) ([]string, error) {
	s, err := readString(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(s), nil
}

// readKeyUint reads the value of key in a flat-keyed control file of
// "key value" lines (cpu.stat, memory.events, memory.oom_control,
// cgroup.events). ok is false when the key is absent.
func readKeyUint(path, key string) (v uint64, ok bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	return parseKeyUint(string(b), key)
}

func parseKeyUint(content, key string) (v uint64, ok bool, err error) {
	for line := range strings.Lines(content) {
		k, val, found := strings.Cut(strings.TrimSpace(line), " ")
		if !found || k != key {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("parse %q: %w", key, err)
		}
		return v, true, nil
	}
	return 0, false, nil
}

// writeFile writes value to an existing control file (never creating it:
// a missing file is a missing kernel feature, reported as such).
func writeFile(path, value string) error {
	return writeLines(path, []string{value})
}

// writeLines writes each line to the control file with its own write(2):
// the kernel parses one rule per write (blkio.throttle.*, io.max).
func writeLines(path string, lines []string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			f.Close()
			return fmt.Errorf("cgroup: write %q to %s: %w", l, path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cgroup: close %s: %w", path, err)
	}
	return nil
}

// exists reports whether the control file is there (optional kernel
// features: memory.memsw.*, memory.swap.max, memory.peak, cgroup.kill).
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readProcs lists the pids in a cgroup.procs file. A cgroup that does not
// exist (any more) holds no process.
func readProcs(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroup: parse %s: %w", path, err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// readProcsAll is the union of cgroup.procs of dirs and of any cgroups
// below them (a job may have made some), sorted.
func readProcsAll(dirs []string) ([]int, error) {
	var all []int
	for _, d := range dirs {
		pids, err := readProcs(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			return nil, err
		}
		all = append(all, pids...)
		subs, err := listChildren(d)
		if err != nil {
			return nil, err
		}
		for _, sub := range subs {
			pids, err := readProcsAll([]string{filepath.Join(d, sub)})
			if err != nil {
				return nil, err
			}
			all = append(all, pids...)
		}
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// signalPids sends sig to every pid; a process that is already gone is
// not an error.
func signalPids(pids []int, sig unix.Signal) error {
	var errs []error
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("cgroup: kill(%d, %v): %w", pid, sig, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroupDir removes a cgroup directory and any cgroups below it,
// deepest first. The kernel answers EBUSY for a short while after the last
// process left; that is retried briefly. A directory already gone is fine.
func removeCgroupDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupDir(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return rmdirCgroup(dir)
}

// removeEmptyCgroup removes the cgroup directory dir if it has no cgroups
// below it (it never removes those, nor kills anything). A directory
// already gone is fine.
func removeEmptyCgroup(dir string) error {
	children, err := listChildren(dir)
	if err != nil {
		return err
	}
	if len(children) > 0 {
		return fmt.Errorf("cgroup: %s still holds the cgroups %s: not removed", dir, strings.Join(children, ", "))
	}
	return rmdirCgroup(dir)
}

// rmdirCgroup removes one cgroup directory. The kernel answers EBUSY for a
// short while after the last process left; that is retried briefly. A
// directory already gone is fine.
func rmdirCgroup(dir string) error {
	b := newBackoff(rmdirTimeout)
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && b.wait():
			continue
		default:
			return fmt.Errorf("cgroup: rmdir %s: %w", dir, err)
		}
	}
}

// listChildren lists the names of the cgroup directories in dir; a
// missing dir has none.
func listChildren(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// setParentPids writes pids.max of the parent cgroup at dir, when n is
// not 0. It is written before each job's cgroup is made, so a parent made
// again (after a clean shutdown removed it) has it too.
func setParentPids(dir string, n uint64) error {
	if n == 0 {
		return nil
	}
	if err := writeFile(filepath.Join(dir, "pids.max"), strconv.FormatUint(n, 10)); err != nil {
		return fmt.Errorf("cap the processes of all jobs: %w", err)
	}
	return nil
}

// limitWriter writes each kind of limit into an existing cgroup of one
// layout (cgroupV1, cgroupV2), for updateLimits.
type limitWriter interface {
	updateCPU(Limits) error
	updateMemory(Limits) error
	updateIO(l Limits, devs []string) error
	setPids(Limits) error
}

// updateLimits is Cgroup.Update for both layouts: it writes into c the
// kinds of limit (CPU, memory, IO, pids) in which to differs from from,
// the limits c has now, and nothing else. sysBlock lists the block devices
// IO limits apply to.
func updateLimits(c limitWriter, sysBlock string, from, to Limits) error {
	if err := to.Validate(); err != nil {
		return err
	}
	if from.CPUMilli != to.CPUMilli {
		if err := c.updateCPU(to); err != nil {
			return err
		}
	}
	if from.MemoryBytes != to.MemoryBytes {
		if err := c.updateMemory(to); err != nil {
			return err
		}
	}
	if ioLimits(from) != ioLimits(to) {
		devs, err := blockDevices(sysBlock)
		if err != nil {
			return err
		}
		if err := c.updateIO(to, devs); err != nil {
			return err
		}
	}
	if from.Pids != to.Pids {
		return c.setPids(to)
	}
	return nil
}
