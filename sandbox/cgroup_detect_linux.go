package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Defaults of CgroupConfig.
const (
	defaultCgroupRoot   = "/sys/fs/cgroup"
	defaultCgroupParent = "telehandler"
	defaultMountinfo    = "/proc/self/mountinfo"
	defaultSysBlock     = "/sys/block"
)

// v1Controllers are the cgroup v1 controllers a job needs, each in some
// hierarchy (several may share one, like the common "cpu,cpuacct").
func v1Controllers() []string {
	return []string{"cpu", "cpuacct", "memory", "blkio", "pids", "freezer"}
}

// v1OptionalControllers are v1 controllers a job's cgroup joins where the
// host has them: devices, for the device allow-list (jobDeviceRules).
func v1OptionalControllers() []string { return []string{"devices"} }

// v2Controllers are the cgroup v2 controllers a job needs; they are enabled
// in the cgroup.subtree_control of every ancestor of the jobs' cgroups.
func v2Controllers() []string { return []string{"cpu", "memory", "io", "pids"} }

// NewCgroups detects the host's cgroup layout once and returns the matching
// implementation: pure cgroup v2 when a cgroup2 file system is mounted at
// cfg.Root, otherwise cgroup v1 with one hierarchy per controller as
// mountinfo lists them (the "hybrid" layout, with cgroup2 at
// Root/unified, is v1 for our purpose). A missing controller is an error
// wrapping ErrNoController that names it and says how to fix the host.
// Parent cgroups are created on demand by Create, not here.
func NewCgroups(cfg CgroupConfig) (Cgroups, error) {
	cfg = cfg.withDefaults()
	if err := validParent(cfg.Parent); err != nil {
		return nil, err
	}
	version := cfg.Version
	var mounts []mountInfo
	if version != 2 {
		var err error
		mounts, err = readMountinfo(cfg.Mountinfo)
		if err != nil {
			return nil, err
		}
	}
	if version == 0 {
		version = detectVersion(cfg.Root, mounts)
	}
	switch version {
	case 1:
		return newCgroupsV1(cfg, mounts)
	case 2:
		return newCgroupsV2(cfg)
	default:
		return nil, fmt.Errorf("cgroup version %d: must be 1, 2 or 0 (detect)", cfg.Version)
	}
}

// withDefaults fills the zero fields of cfg with the documented defaults.
func (cfg CgroupConfig) withDefaults() CgroupConfig {
	if cfg.Root == "" {
		cfg.Root = defaultCgroupRoot
	}
	if cfg.Parent == "" {
		cfg.Parent = defaultCgroupParent
	}
	if cfg.Mountinfo == "" {
		cfg.Mountinfo = defaultMountinfo
	}
	if cfg.SysBlock == "" {
		cfg.SysBlock = defaultSysBlock
	}
	cfg.Root = filepath.Clean(cfg.Root)
	return cfg
}

// validParent rejects a parent that would escape the cgroup root or be the
// root itself: everything Telehandler writes must stay below it.
func validParent(parent string) error {
	clean := filepath.Clean(parent)
	if filepath.IsAbs(parent) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return fmt.Errorf("cgroup parent %q: must be a relative path below the cgroup root", parent)
	}
	return nil
}

// validName rejects a job cgroup name that is not one plain path element.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("cgroup name %q: must be one non-empty path element", name)
	}
	return nil
}

// detectVersion says 2 when a cgroup2 file system is mounted at root, else 1.
func detectVersion(root string, mounts []mountInfo) int {
	for _, m := range mounts {
		if m.fsType == "cgroup2" && m.mountPoint == root {
			return 2
		}
	}
	return 1
}

// mountInfo is the part of one /proc/self/mountinfo line the detection needs.
type mountInfo struct {
	root       string // the mount's root within its file system
	mountPoint string
	mountOpts  []string // per-mount options (rw, nosuid, ...)
	fsType     string
	superOpts  []string
}

// readMountinfo parses a mountinfo file (proc(5)).
func readMountinfo(path string) ([]mountInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("detect cgroup layout: %w", err)
	}
	defer f.Close()
	var mounts []mountInfo
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m, ok := parseMountinfoLine(sc.Text())
		if ok {
			mounts = append(mounts, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("detect cgroup layout: read %s: %w", path, err)
	}
	return mounts, nil
}

// parseMountinfoLine parses
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// where the optional fields before "-" vary in number.
func parseMountinfoLine(line string) (mountInfo, bool) {
	fields := strings.Fields(line)
	sep := slices.Index(fields, "-")
	if sep < 6 || len(fields) < sep+4 {
		return mountInfo{}, false
	}
	return mountInfo{
		root:       unescapeMountinfo(fields[3]),
		mountPoint: filepath.Clean(unescapeMountinfo(fields[4])),
		mountOpts:  strings.Split(fields[5], ","),
		fsType:     fields[sep+1],
		superOpts:  strings.Split(fields[sep+3], ","),
	}, true
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space...).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// v1Hierarchies maps each needed v1 controller to the mount point of its
// hierarchy. A controller mounted more than once (bind mounts in
// containers) is taken from the mount of the whole hierarchy ("/" root)
// below cgroupRoot when there is one.
func v1Hierarchies(cgroupRoot string, mounts []mountInfo) (map[string]string, error) {
	score := func(m mountInfo) int {
		s := 0
		if m.root == "/" {
			s += 2
		}
		if strings.HasPrefix(m.mountPoint, cgroupRoot+"/") {
			s++
		}
		return s
	}
	found := make(map[string]string)
	best := make(map[string]int)
	for _, m := range mounts {
		if m.fsType != "cgroup" {
			continue
		}
		for _, opt := range m.superOpts {
			if !slices.Contains(v1Controllers(), opt) && !slices.Contains(v1OptionalControllers(), opt) {
				continue
			}
			if s, seen := best[opt]; seen && s >= score(m) {
				continue
			}
			found[opt] = m.mountPoint
			best[opt] = score(m)
		}
	}
	for _, c := range v1Controllers() {
		if _, ok := found[c]; !ok {
			return nil, fmt.Errorf("%w: cgroup v1 controller %q is not mounted (mount it with "+
				"`mkdir -p %s/%s && mount -t cgroup -o %s cgroup %s/%s`, or boot a kernel with cgroup v2 at %s)",
				ErrNoController, c, cgroupRoot, c, c, cgroupRoot, c, cgroupRoot)
		}
	}
	return found, nil
}

// checkV2Controllers reports, wrapping ErrNoController, the first needed
// controller the v2 root does not offer.
func checkV2Controllers(root string) error {
	have, err := readFields(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("%w: cgroup v2 at %s: %w", ErrNoController, root, err)
	}
	for _, c := range v2Controllers() {
		if !slices.Contains(have, c) {
			return fmt.Errorf("%w: cgroup v2 controller %q is not available in %s/cgroup.controllers "+
				"(it is bound to a cgroup v1 hierarchy or missing from the kernel: unmount that v1 hierarchy, "+
				"or boot with cgroup_no_v1=all)", ErrNoController, c, root)
		}
	}
	return nil
}

// blockDevices returns "MAJ:MIN" of every real whole disk listed in
// sysBlock: not a partition, not hidden, not a loop, ram or zram device, and not empty
// (size 0: no medium, unused loop or zram). IO limits apply to these; the
// kernel rejects throttling rules on partitions.
func blockDevices(sysBlock string) ([]string, error) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	var devs []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "zram") {
			continue
		}
		dir := filepath.Join(sysBlock, name)
		if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
			continue
		}
		if hidden, _ := readUint(filepath.Join(dir, "hidden")); hidden != 0 {
			continue // an NVMe multipath path: IO goes through its head disk
		}
		size, err := readUint(filepath.Join(dir, "size"))
		if err != nil || size == 0 {
			continue
		}
		dev, err := readString(filepath.Join(dir, "dev"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("list block devices: %w", err)
		}
		devs = append(devs, dev)
	}
	return devs, nil
}
