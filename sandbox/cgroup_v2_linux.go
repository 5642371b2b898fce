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
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupsV2 manages job cgroups on the unified hierarchy: each job is the
// leaf <root>/<parent>/<name>. The parent never holds a process (the
// no-internal-process rule), so the controllers can be enabled in its
// cgroup.subtree_control.
type cgroupsV2 struct {
	root       string // the cgroup2 mount point
	parent     string // relative to root
	sysBlock   string
	parentPids uint64 // pids.max of the parent; 0 = none
}

func newCgroupsV2(cfg CgroupConfig) (*cgroupsV2, error) {
	if err := checkV2Controllers(cfg.Root); err != nil {
		return nil, err
	}
	return &cgroupsV2{root: cfg.Root, parent: cfg.Parent, sysBlock: cfg.SysBlock, parentPids: cfg.ParentPids}, nil
}

func (m *cgroupsV2) Version() int { return 2 }

// parentDir is the absolute path of the parent cgroup.
func (m *cgroupsV2) parentDir() string { return filepath.Join(m.root, m.parent) }

// ensureParent creates the parent cgroup and the cgroups between it and
// the root, enabling the needed controllers in the subtree_control of the
// root, of each of them and of the parent, so that the jobs below get
// them. Controllers already enabled are not written again: writing to an
// ancestor we did not create is kept to the strict minimum.
func (m *cgroupsV2) ensureParent() error {
	dir := m.root
	steps := strings.Split(filepath.Clean(m.parent), "/")
	for i := 0; ; i++ {
		if err := enableControllers(dir); err != nil {
			return err
		}
		if i == len(steps) {
			return nil
		}
		dir = filepath.Join(dir, steps[i])
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("cgroup: create parent: %w", err)
		}
	}
}

// enableControllers enables the needed controllers that dir's
// cgroup.subtree_control lacks.
func enableControllers(dir string) error {
	path := filepath.Join(dir, "cgroup.subtree_control")
	have, err := readFields(path)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	var add []string
	for _, c := range v2Controllers() {
		if !slices.Contains(have, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := writeFile(path, strings.Join(add, " ")); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%w: %s holds processes, so controllers cannot be enabled below it "+
				"(cgroup v2 no-internal-process rule): choose a parent cgroup whose ancestors hold no process: %w",
				ErrNoController, dir, err)
		}
		return fmt.Errorf("%w: enable %s: %w", ErrNoController, strings.Join(add, " "), err)
	}
	return nil
}

func (m *cgroupsV2) Create(name string, limits Limits) (Cgroup, error) {
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
	if err := m.ensureParent(); err != nil {
		return nil, err
	}
	if err := setParentPids(m.parentDir(), m.parentPids); err != nil {
		return nil, err
	}
	cg := &cgroupV2{name: name, dir: filepath.Join(m.parentDir(), name), sysBlock: m.sysBlock}
	if err := os.Mkdir(cg.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: create %s: %w", name, err)
	}
	if err := cg.setLimits(limits, devs); err != nil {
		_ = unix.Rmdir(cg.dir)
		return nil, fmt.Errorf("cgroup %s: %w", name, err)
	}
	return cg, nil
}

func (m *cgroupsV2) Cleanup() error {
	names, err := listChildren(m.parentDir())
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		cg := &cgroupV2{name: name, dir: filepath.Join(m.parentDir(), name)}
		if err := cg.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *cgroupsV2) RemoveParent() error { return removeEmptyCgroup(m.parentDir()) }

// cgroupV2 is one job's cgroup on v2.
type cgroupV2 struct {
	name string
	dir  string
	// sysBlock lists the block devices for Update's IO limits.
	sysBlock string

	mu sync.Mutex // guards peak
	// peak is the highest memory.current seen by Stats, for kernels
	// without memory.peak (before 5.19).
	peak uint64
}

func (c *cgroupV2) Name() string         { return c.name }
func (c *cgroupV2) Paths() []string      { return []string{c.dir} }
func (c *cgroupV2) file(f string) string { return filepath.Join(c.dir, f) }

// Join opens the cgroup directory for CLONE_INTO_CGROUP: a process is born
// inside. The caller closes CloneFD.
func (c *cgroupV2) Join() (CgroupJoin, error) {
	fd, err := unix.Open(c.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return CgroupJoin{CloneFD: -1}, fmt.Errorf("cgroup: open %s: %w", c.dir, err)
	}
	return CgroupJoin{CloneFD: fd}, nil
}

// setLimits writes limits (zero fields: no limit) to a fresh cgroup. IO
// rules go to every device of devs ("MAJ:MIN").
func (c *cgroupV2) setLimits(l Limits, devs []string) error {
	if err := c.setCPU(l); err != nil {
		return err
	}
	if err := c.setMemory(l, true); err != nil {
		return err
	}
	if err := c.setIO(l, devs, true); err != nil {
		return err
	}
	return c.setPids(l)
}

func (c *cgroupV2) Update(from, to Limits) error { return updateLimits(c, c.sysBlock, from, to) }

// The kinds of limit Update writes into a cgroup that exists (limitWriter).
func (c *cgroupV2) updateCPU(l Limits) error               { return c.setCPU(l) }
func (c *cgroupV2) updateMemory(l Limits) error            { return c.setMemory(l, false) }
func (c *cgroupV2) updateIO(l Limits, devs []string) error { return c.setIO(l, devs, false) }

func (c *cgroupV2) setCPU(l Limits) error {
	quota := "max"
	if l.CPUMilli != 0 {
		quota = strconv.FormatUint(l.CPUMilli*cpuPeriodUS/1000, 10)
	}
	return writeFile(c.file("cpu.max"), fmt.Sprintf("%s %d", quota, cpuPeriodUS))
}

// setMemory writes l's memory limits; fresh: the cgroup is new, so swap
// needs no write without a memory limit.
func (c *cgroupV2) setMemory(l Limits, fresh bool) error {
	memMax, high := "max", "max"
	if l.MemoryBytes != 0 {
		memMax = strconv.FormatUint(l.MemoryBytes, 10)
		high = strconv.FormatUint(l.MemoryBytes/4*3, 10)
	}
	if err := writeFile(c.file("memory.max"), memMax); err != nil {
		return err
	}
	if err := writeFile(c.file("memory.high"), high); err != nil {
		return err
	}
	// memory.swap.max is missing when the kernel does not account swap
	// (CONFIG_MEMCG_SWAP off or swapaccount=0): then there is nothing to
	// forbid.
	if swap := c.file("memory.swap.max"); exists(swap) && (l.MemoryBytes != 0 || !fresh) {
		value := "max"
		if l.MemoryBytes != 0 {
			value = "0"
		}
		if err := writeFile(swap, value); err != nil {
			return err
		}
	}
	return nil
}

// setIO writes l's IO rule for every device of devs; fresh: the cgroup has
// no rule yet, so none is written when l has no IO limit.
func (c *cgroupV2) setIO(l Limits, devs []string, fresh bool) error {
	io := ioMaxRule(l)
	if io == "" && fresh {
		return nil
	}
	if io == "" {
		io = "rbps=max wbps=max riops=max wiops=max"
	}
	if len(devs) == 0 {
		return nil
	}
	lines := make([]string, len(devs))
	for i, d := range devs {
		lines[i] = d + " " + io
	}
	return writeLines(c.file("io.max"), lines)
}

func (c *cgroupV2) setPids(l Limits) error {
	pids := "max"
	if l.Pids != 0 {
		pids = strconv.FormatUint(l.Pids, 10)
	}
	return writeFile(c.file("pids.max"), pids)
}

// ioMaxRule is the io.max rule for one device without its "MAJ:MIN", or ""
// when l has no IO limit (a fresh cgroup has none).
func ioMaxRule(l Limits) string {
	if l.IOReadBPS == 0 && l.IOWriteBPS == 0 && l.IOReadIOPS == 0 && l.IOWriteIOPS == 0 {
		return ""
	}
	v := func(n uint64) string {
		if n == 0 {
			return "max"
		}
		return strconv.FormatUint(n, 10)
	}
	return fmt.Sprintf("rbps=%s wbps=%s riops=%s wiops=%s",
		v(l.IOReadBPS), v(l.IOWriteBPS), v(l.IOReadIOPS), v(l.IOWriteIOPS))
}

func (c *cgroupV2) Add(pid int) error {
	return writeFile(c.file("cgroup.procs"), strconv.Itoa(pid))
}

func (c *cgroupV2) Procs() ([]int, error) { return readProcsAll([]string{c.dir}) }

func (c *cgroupV2) Signal(sig int) error {
	pids, err := c.Procs()
	if err != nil {
		return err
	}
	return signalPids(pids, unix.Signal(sig))
}

// Kill writes cgroup.kill (Linux 5.14+), which kills the whole subtree at
// once, or else freezes the cgroup, SIGKILLs every process and thaws it.
// Then it waits, on an inotify notification of cgroup.events, until the
// cgroup is no longer populated.
func (c *cgroupV2) Kill() error {
	events, err := watchEvents(c.dir)
	if err != nil {
		return err
	}
	defer events.close()
	if kill := c.file("cgroup.kill"); exists(kill) {
		if err := writeFile(kill, "1"); err != nil {
			return err
		}
	} else if err := c.freezeAndKill(events); err != nil {
		return err
	}
	return events.wait("populated", 0, killTimeout)
}

// freezeAndKill is Kill for kernels without cgroup.kill.
func (c *cgroupV2) freezeAndKill(events *eventsWatch) error {
	freeze := c.file("cgroup.freeze")
	if err := writeFile(freeze, "1"); err != nil {
		return err
	}
	// Killing even if freezing timed out beats leaving the job running.
	werr := events.wait("frozen", 1, freezeTimeout)
	pids, err := c.Procs()
	if err == nil {
		err = signalPids(pids, unix.SIGKILL)
	}
	if terr := writeFile(freeze, "0"); terr != nil {
		err = errors.Join(err, terr)
	}
	if err != nil {
		return errors.Join(err, werr)
	}
	return nil
}

func (c *cgroupV2) Stats() (Stats, error) {
	var s Stats
	usec, _, err := readKeyUint(c.file("cpu.stat"), "usage_usec")
	if err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	s.CPUUsage = time.Duration(usec) * time.Microsecond
	if s.MemoryCurrent, err = readUint(c.file("memory.current")); err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	peak, err := readUint(c.file("memory.peak"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c.mu.Lock()
		c.peak = max(c.peak, s.MemoryCurrent)
		peak = c.peak
		c.mu.Unlock()
	case err != nil:
		return s, fmt.Errorf("cgroup: %w", err)
	}
	s.MemoryPeak = peak
	if s.OOMKills, _, err = readKeyUint(c.file("memory.events"), "oom_kill"); err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	b, err := os.ReadFile(c.file("io.stat"))
	if err != nil {
		return s, fmt.Errorf("cgroup: %w", err)
	}
	s.IOReadBytes, s.IOWriteBytes = parseV2IOStat(string(b))
	return s, nil
}

// parseV2IOStat sums rbytes and wbytes over the devices of io.stat
// ("MAJ:MIN rbytes=N wbytes=N rios=N ...").
func parseV2IOStat(content string) (read, write uint64) {
	for line := range strings.Lines(content) {
		for _, kv := range strings.Fields(line) {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				read += n
			case "wbytes":
				write += n
			}
		}
	}
	return read, write
}

func (c *cgroupV2) Delete() error {
	pids, err := c.Procs()
	if err != nil {
		return err
	}
	// A sub-cgroup the job made holds processes that cgroup.procs does
	// not list; populated covers the whole subtree.
	populated, _, _ := readKeyUint(c.file("cgroup.events"), "populated")
	if len(pids) > 0 || populated != 0 {
		if err := c.Kill(); err != nil {
			return err
		}
	}
	return removeCgroupDir(c.dir)
}

// eventsWatch follows a cgroup's cgroup.events with inotify: the kernel
// signals IN_MODIFY whenever populated or frozen changes.
type eventsWatch struct {
	path string
	fd   int
}

func watchEvents(dir string) (*eventsWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("cgroup: inotify: %w", err)
	}
	path := filepath.Join(dir, "cgroup.events")
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY|unix.IN_DELETE_SELF); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("cgroup: watch %s: %w", path, err)
	}
	return &eventsWatch{path: path, fd: fd}, nil
}

func (w *eventsWatch) close() { unix.Close(w.fd) }

// wait blocks until key in cgroup.events has the value want, or timeout.
// The file is read after the watch was set up, so no change is missed.
func (w *eventsWatch) wait(key string, want uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for {
		v, ok, err := readKeyUint(w.path, key)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // the cgroup is gone, and with it what we waited for
		}
		if err != nil {
			return fmt.Errorf("cgroup: %w", err)
		}
		if !ok {
			return fmt.Errorf("cgroup: %s has no %q", w.path, key)
		}
		if v == want {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("cgroup: %s: %s is still %d after %v", w.path, key, v, timeout)
		}
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("cgroup: poll inotify: %w", err)
		}
		for { // drain the events; the file itself says what changed
			if _, err := unix.Read(w.fd, buf); err != nil {
				break
			}
		}
	}
}
