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

// cgroupsV1 manages job cgroups on cgroup v1: one directory per hierarchy
// of the needed controllers, <mount>/<parent>/<name> in each.
type cgroupsV1 struct {
	// mounts maps each needed controller to its hierarchy's mount point;
	// controllers sharing a hierarchy ("cpu,cpuacct") share a mount point.
	mounts     map[string]string
	parent     string // relative to each mount point
	sysBlock   string
	parentPids uint64 // pids.max of the parent; 0 = none
}

func newCgroupsV1(cfg CgroupConfig, mounts []mountInfo) (*cgroupsV1, error) {
	h, err := v1Hierarchies(cfg.Root, mounts)
	if err != nil {
		return nil, err
	}
	return &cgroupsV1{mounts: h, parent: cfg.Parent, sysBlock: cfg.SysBlock, parentPids: cfg.ParentPids}, nil
}

func (m *cgroupsV1) Version() int { return 1 }

// hierarchies are the distinct mount points of the needed controllers.
func (m *cgroupsV1) hierarchies() []string {
	var hs []string
	for _, mp := range m.mounts {
		hs = append(hs, mp)
	}
	slices.Sort(hs)
	return slices.Compact(hs)
}

// cgroup is the job cgroup name, whether or not it exists yet.
func (m *cgroupsV1) cgroup(name string) *cgroupV1 {
	dirs := make(map[string]string, len(m.mounts))
	for c, mp := range m.mounts {
		dirs[c] = filepath.Join(mp, m.parent, name)
	}
	var paths, procsPaths []string
	for _, h := range m.hierarchies() {
		paths = append(paths, filepath.Join(h, m.parent, name))
		if slices.ContainsFunc(v1Controllers(), func(c string) bool { return m.mounts[c] == h }) {
			procsPaths = append(procsPaths, filepath.Join(h, m.parent, name))
		}
	}
	return &cgroupV1{name: name, dirs: dirs, paths: paths, procsPaths: procsPaths, sysBlock: m.sysBlock}
}

func (m *cgroupsV1) Create(name string, limits Limits) (Cgroup, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	devs, err := blockDevices(m.sysBlock)
	if err != nil {
		return nil, err
	}
	cg := m.cgroup(name)
	var made []string
	undo := func() {
		for _, p := range made {
			_ = unix.Rmdir(p)
		}
	}
	for _, p := range cg.paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			undo()
			return nil, fmt.Errorf("cgroup: create parent: %w", err)
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			undo()
			return nil, fmt.Errorf("cgroup: create %s: %w", name, err)
		}
		made = append(made, p)
	}
	if err := setParentPids(filepath.Join(m.mounts["pids"], m.parent), m.parentPids); err != nil {
		undo()
		return nil, err
	}
	if err := cg.setLimits(limits, devs); err != nil {
		undo()
		return nil, fmt.Errorf("cgroup %s: %w", name, err)
	}
	return cg, nil
}

func (m *cgroupsV1) Cleanup() error {
	var names []string
	for _, h := range m.hierarchies() {
		ns, err := listChildren(filepath.Join(h, m.parent))
		if err != nil {
			return err
		}
		names = append(names, ns...)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range slices.Compact(names) {
		if err := m.cgroup(name).Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *cgroupsV1) RemoveParent() error {
	var errs []error
	for _, h := range m.hierarchies() {
		errs = append(errs, removeEmptyCgroup(filepath.Join(h, m.parent)))
	}
	return errors.Join(errs...)
}

// cgroupV1 is one job's cgroup on v1.
type cgroupV1 struct {
	name  string
	dirs  map[string]string // controller -> its directory
	paths []string          // the distinct directories, sorted
	// procsPaths are paths without the optional hierarchies (devices):
	// Procs reads these. Each read is a snapshot of its own, so every
	// hierarchy more widens the union of a job that forks and exits fast.
	procsPaths []string
	// sysBlock lists the block devices for Update's IO limits.
	sysBlock string
}

func (c *cgroupV1) Name() string               { return c.name }
func (c *cgroupV1) Paths() []string            { return slices.Clone(c.paths) }
func (c *cgroupV1) file(ctrl, f string) string { return filepath.Join(c.dirs[ctrl], f) }

// setLimits writes limits (zero fields: no limit) to a fresh cgroup. IO
// rules go to every device of devs ("MAJ:MIN").
func (c *cgroupV1) setLimits(l Limits, devs []string) error {
	if err := c.setCPU(l); err != nil {
		return err
	}
	if err := c.setMemory(l.MemoryBytes); err != nil {
		return err
	}
	if err := c.setIO(l, devs, true); err != nil {
		return err
	}
	if _, ok := c.dirs["devices"]; ok {
		// Deny every device, then allow the job's few: a belt to the
		// view's braces (every other mount of the job is nodev).
		if err := writeFile(c.file("devices", "devices.deny"), "a"); err != nil {
			return err
		}
		if err := writeLines(c.file("devices", "devices.allow"), jobDeviceRules()); err != nil {
			return err
		}
	}
	return c.setPids(l)
}

func (c *cgroupV1) Update(from, to Limits) error { return updateLimits(c, c.sysBlock, from, to) }

// The kinds of limit Update writes into a cgroup that exists (limitWriter).
func (c *cgroupV1) updateCPU(l Limits) error               { return c.setCPUQuota(l) }
func (c *cgroupV1) updateMemory(l Limits) error            { return c.setMemory(l.MemoryBytes) }
func (c *cgroupV1) updateIO(l Limits, devs []string) error { return c.setIO(l, devs, false) }

func (c *cgroupV1) setCPU(l Limits) error {
	if err := writeFile(c.file("cpu", "cpu.cfs_period_us"), strconv.Itoa(cpuPeriodUS)); err != nil {
		return err
	}
	return c.setCPUQuota(l)
}

// setCPUQuota writes l's quota for the period setCPU wrote when the cgroup
// was made (Update: a warm shim's cgroup, one write on StartJob's path).
func (c *cgroupV1) setCPUQuota(l Limits) error {
	quota := "-1"
	if l.CPUMilli != 0 {
		quota = strconv.FormatUint(l.CPUMilli*cpuPeriodUS/1000, 10)
	}
	return writeFile(c.file("cpu", "cpu.cfs_quota_us"), quota)
}

// setIO writes l's IO rules for every device of devs. A zero field is no
// limit: nothing to write in a fresh cgroup, else the rule "DEV 0", which
// removes it.
func (c *cgroupV1) setIO(l Limits, devs []string, fresh bool) error {
	for _, r := range []struct {
		file  string
		value uint64
	}{
		{"blkio.throttle.read_bps_device", l.IOReadBPS},
		{"blkio.throttle.write_bps_device", l.IOWriteBPS},
		{"blkio.throttle.read_iops_device", l.IOReadIOPS},
		{"blkio.throttle.write_iops_device", l.IOWriteIOPS},
	} {
		if (r.value == 0 && fresh) || len(devs) == 0 {
			continue // a fresh cgroup has no rule: unlimited
		}
		lines := make([]string, len(devs))
		for i, d := range devs {
			lines[i] = d + " " + strconv.FormatUint(r.value, 10)
		}
		if err := writeLines(c.file("blkio", r.file), lines); err != nil {
			return err
		}
	}
	return nil
}

func (c *cgroupV1) setPids(l Limits) error {
	pids := "max"
	if l.Pids != 0 {
		pids = strconv.FormatUint(l.Pids, 10)
	}
	return writeFile(c.file("pids", "pids.max"), pids)
}

// jobDeviceRules are the devices a job may open (devices.allow, v1): the
// nodes of its minimal /dev (devNodes), its own ptmx and pseudo-terminals.
// It may make no device node at all ("m" is not allowed).
func jobDeviceRules() []string {
	return []string{
		"c 1:3 rw", "c 1:5 rw", "c 1:7 rw", "c 1:8 rw", "c 1:9 rw", // null zero full random urandom
		"c 5:0 rw", "c 5:2 rw", "c 136:* rw", // tty ptmx pts/*
	}
}

// setMemory sets the hard limit, the soft limit (75%) and, where swap is
// accounted, memory+swap equal to the hard limit: no swap. The kernel
// requires memsw >= limit at every moment, so when memsw grows it is
// written first, and when it shrinks the limit is.
func (c *cgroupV1) setMemory(bytes uint64) error {
	limit, soft := "-1", "-1"
	if bytes != 0 {
		limit = strconv.FormatUint(bytes, 10)
		soft = strconv.FormatUint(bytes/4*3, 10)
	}
	memsw := c.file("memory", "memory.memsw.limit_in_bytes")
	hasMemsw := exists(memsw)
	memswFirst := false
	if hasMemsw {
		cur, err := readString(memsw)
		if err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
		memswFirst = grows(cur, bytes)
	}
	if hasMemsw && memswFirst {
		if err := writeFile(memsw, limit); err != nil {
			return err
		}
	}
	if err := writeFile(c.file("memory", "memory.limit_in_bytes"), limit); err != nil {
		return err
	}
	if hasMemsw && !memswFirst {
		if err := writeFile(memsw, limit); err != nil {
			return err
		}
	}
	return writeFile(c.file("memory", "memory.soft_limit_in_bytes"), soft)
}

// grows reports whether the new limit (0 = unlimited) is above the current
// value of a v1 limit file (the kernel shows "unlimited" as a huge number).
func grows(cur string, limit uint64) bool {
	v, err := strconv.ParseUint(cur, 10, 64)
	if err != nil {
		return limit == 0 // unparsable current value: treat as unlimited
	}
	return limit == 0 || limit > v
}

func (c *cgroupV1) Add(pid int) error {
	for _, p := range c.paths {
		if err := writeFile(filepath.Join(p, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// Join gives the tasks files of every hierarchy, for the shim to move its
// own thread in (protocol.go). A thread moving itself with "0" skips the
// kernel's global cgroup_threadgroup_rwsem, which writing a pid to
// cgroup.procs takes for writing: after a quiet moment that write waits for
// an RCU grace period (~10 ms).
func (c *cgroupV1) Join() (CgroupJoin, error) {
	paths := make([]string, len(c.paths))
	for i, p := range c.paths {
		paths[i] = filepath.Join(p, "tasks")
	}
	return CgroupJoin{CloneFD: -1, Tasks: paths}, nil
}

func (c *cgroupV1) Procs() ([]int, error) { return readProcsAll(c.procsPaths) }

func (c *cgroupV1) Signal(sig int) error {
	pids, err := c.Procs()
	if err != nil {
		return err
	}
	return signalPids(pids, unix.Signal(sig))
}

// Kill freezes the cgroup so nothing can fork while the pids are read,
// SIGKILLs every process, thaws it so the signals are delivered, and polls
// until the cgroup is empty: cgroup v1 has no emptiness notification.
// Processes that remain (freezing timed out, a fork slipped through) are
// killed again on every poll.
func (c *cgroupV1) Kill() error {
	freezer := c.file("freezer", "freezer.state")
	frozen := c.freeze(freezer)
	pids, err := c.Procs()
	if err == nil {
		err = signalPids(pids, unix.SIGKILL)
	}
	if frozen {
		if terr := writeFile(freezer, "THAWED"); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	if err != nil {
		return err
	}
	b := newBackoff(killTimeout)
	for {
		pids, err := c.Procs()
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if !b.wait() {
			return fmt.Errorf("cgroup %s: %d processes still alive %v after SIGKILL", c.name, len(pids), killTimeout)
		}
		if err := signalPids(pids, unix.SIGKILL); err != nil {
			return err
		}
	}
}

// freeze asks the freezer to freeze the cgroup and waits briefly until it
// is; it reports whether the cgroup must be thawed again.
func (c *cgroupV1) freeze(state string) bool {
	if err := writeFile(state, "FROZEN"); err != nil {
		return false // no freezer directory (Cleanup of a partial cgroup)
	}
	b := newBackoff(freezeTimeout)
	for {
		s, err := readString(state)
		if err != nil || s == "FROZEN" || !b.wait() {
			return true
		}
		// FREEZING: some task has not stopped yet; asking again helps
		// tasks that were forking.
		_ = writeFile(state, "FROZEN")
	}
}

func (c *cgroupV1) Stats() (Stats, error) {
	var s Stats
	ns, err := readUint(c.file("cpuacct", "cpuacct.usage"))
	if err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	s.CPUUsage = time.Duration(ns)
	if s.MemoryCurrent, err = readUint(c.file("memory", "memory.usage_in_bytes")); err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	if s.MemoryPeak, err = readUint(c.file("memory", "memory.max_usage_in_bytes")); err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	if s.OOMKills, _, err = readKeyUint(c.file("memory", "memory.oom_control"), "oom_kill"); err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	b, err := os.ReadFile(c.file("blkio", "blkio.throttle.io_service_bytes"))
	if err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	s.IOReadBytes, s.IOWriteBytes = parseV1IOServiceBytes(string(b))
	return s, nil
}

// parseV1IOServiceBytes sums the Read and Write lines of every device in
// blkio.throttle.io_service_bytes ("MAJ:MIN Read N").
func parseV1IOServiceBytes(content string) (read, write uint64) {
	for line := range strings.Lines(content) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		v, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += v
		case "Write":
			write += v
		}
	}
	return read, write
}

func (c *cgroupV1) Delete() error {
	pids, err := c.Procs()
	if err != nil {
		return err
	}
	if len(pids) > 0 {
		if err := c.Kill(); err != nil {
			return err
		}
	}
	var errs []error
	for _, p := range c.paths {
		if err := removeCgroupDir(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
