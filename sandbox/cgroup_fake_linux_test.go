package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests on a fake cgroup tree in t.TempDir(): no root needed. The fake
// cannot run processes, so kill and accounting paths are driven by the
// test writing the files the kernel would.

// fakeHost is a fake cgroup root, mountinfo and /sys/block.
type fakeHost struct {
	root, mountinfo, sysBlock string
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	dir := t.TempDir()
	h := &fakeHost{
		root:      filepath.Join(dir, "cgroup"),
		mountinfo: filepath.Join(dir, "mountinfo"),
		sysBlock:  filepath.Join(dir, "block"),
	}
	mkdirs(t, h.root, h.sysBlock)
	// Whole disks that get IO rules, and devices that must not.
	for _, d := range []struct {
		name, dev, size string
		partition       bool
	}{
		{"vda", "254:0", "536870912", false},
		{"nvme0n1", "259:0", "1000", false},
		{"vda1", "254:1", "1000", true}, // a partition listed at the top: skipped
		{"zram0", "253:0", "0", false},
		{"loop0", "7:0", "1000", false},
		{"ram0", "1:0", "1000", false},
		{"sr0", "11:0", "0", false},      // no medium
		{"nvme0c0n1", "", "1000", false}, // hidden multipath path
	} {
		p := filepath.Join(h.sysBlock, d.name)
		writeFiles(t, p, map[string]string{"size": d.size + "\n"})
		if d.dev != "" {
			writeFiles(t, p, map[string]string{"dev": d.dev + "\n"})
		} else {
			writeFiles(t, p, map[string]string{"hidden": "1\n"})
		}
		if d.partition {
			writeFiles(t, p, map[string]string{"partition": "1\n"})
		}
	}
	return h
}

// wantDevs are the fake host's real whole disks, in /sys/block order.
var wantDevs = []string{"259:0", "254:0"}

func (h *fakeHost) config(parent string) CgroupConfig {
	return CgroupConfig{Root: h.root, Parent: parent, Mountinfo: h.mountinfo, SysBlock: h.sysBlock}
}

// mount adds a mountinfo line for a cgroup file system at root/sub.
func (h *fakeHost) mount(t *testing.T, fsType, sub, superOpts string) {
	t.Helper()
	mp := filepath.Join(h.root, sub)
	mkdirs(t, mp)
	f, err := os.OpenFile(h.mountinfo, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "40 31 0:37 / %s rw,nosuid,nodev,noexec,relatime shared:9 - %s %s %s\n",
		strings.ReplaceAll(mp, " ", `\040`), fsType, fsType, superOpts)
}

// hybrid mounts the v1 layout of this project's hosts: cpu and cpuacct in
// separate hierarchies, and an empty cgroup2 at unified.
func (h *fakeHost) hybrid(t *testing.T) {
	t.Helper()
	fmt.Fprintln(mustCreate(t, h.mountinfo), "31 23 0:28 / "+h.root+" rw,relatime - tmpfs tmpfs rw,mode=755")
	for _, c := range []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"} {
		h.mount(t, "cgroup", c, "rw,"+c)
	}
	h.mount(t, "cgroup", "systemd", "rw,name=systemd")
	h.mount(t, "cgroup2", "unified", "rw")
}

// unified mounts a pure cgroup v2 at the root with the given controllers.
func (h *fakeHost) unified(t *testing.T, controllers string) {
	t.Helper()
	fmt.Fprintln(mustCreate(t, h.mountinfo), "27 21 0:24 / "+h.root+" rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot")
	writeFiles(t, h.root, map[string]string{
		"cgroup.controllers":     controllers + "\n",
		"cgroup.subtree_control": "\n",
	})
}

func mustCreate(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	mkdirs(t, dir)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCgroupDetectV2(t *testing.T) {
	h := newFakeHost(t)
	h.unified(t, "cpuset cpu io memory hugetlb pids rdma misc")
	cgs, err := NewCgroups(h.config(""))
	if err != nil {
		t.Fatalf("NewCgroups: %v", err)
	}
	if cgs.Version() != 2 {
		t.Fatalf("Version = %d, want 2", cgs.Version())
	}
	if got := cgs.(*cgroupsV2).parentDir(); got != filepath.Join(h.root, "telehandler") {
		t.Errorf("parent = %s, want the default telehandler under the root", got)
	}
}

func TestCgroupDetectV2MissingController(t *testing.T) {
	h := newFakeHost(t)
	h.unified(t, "cpuset cpu memory pids") // io is bound to a v1 hierarchy
	_, err := NewCgroups(h.config(""))
	if !errors.Is(err, ErrNoController) || !strings.Contains(err.Error(), `"io"`) {
		t.Fatalf("err = %v, want ErrNoController naming io", err)
	}
}

func TestCgroupDetectHybridV1(t *testing.T) {
	h := newFakeHost(t)
	h.hybrid(t)
	cgs, err := NewCgroups(h.config("th"))
	if err != nil {
		t.Fatalf("NewCgroups: %v", err)
	}
	if cgs.Version() != 1 {
		t.Fatalf("Version = %d, want 1 (cgroup2 is only at unified)", cgs.Version())
	}
	m := cgs.(*cgroupsV1)
	for _, c := range v1Controllers() {
		if got, want := m.mounts[c], filepath.Join(h.root, c); got != want {
			t.Errorf("controller %s at %s, want %s", c, got, want)
		}
	}
	if got := len(m.hierarchies()); got != 7 {
		t.Errorf("%d hierarchies %v, want 7 (devices for the allow-list; cpuset and systemd unused)", got, m.hierarchies())
	}
}

func TestCgroupDetectCombinedCPU(t *testing.T) {
	h := newFakeHost(t)
	mustCreate(t, h.mountinfo)
	h.mount(t, "cgroup", "cpu,cpuacct", "rw,cpu,cpuacct")
	h.mount(t, "cgroup", "net cls", "rw,net_cls") // a space, escaped as \040
	for _, c := range []string{"memory", "blkio", "pids", "freezer"} {
		h.mount(t, "cgroup", c, "rw,"+c)
	}
	cgs, err := NewCgroups(h.config(""))
	if err != nil {
		t.Fatalf("NewCgroups: %v", err)
	}
	m := cgs.(*cgroupsV1)
	combined := filepath.Join(h.root, "cpu,cpuacct")
	if m.mounts["cpu"] != combined || m.mounts["cpuacct"] != combined {
		t.Errorf("cpu at %s and cpuacct at %s, want both at %s", m.mounts["cpu"], m.mounts["cpuacct"], combined)
	}
	cg := m.cgroup("job")
	if len(cg.Paths()) != 5 {
		t.Errorf("Paths = %v, want one per hierarchy (5)", cg.Paths())
	}
}

func TestCgroupDetectMissingV1Controller(t *testing.T) {
	h := newFakeHost(t)
	mustCreate(t, h.mountinfo)
	for _, c := range []string{"cpu", "cpuacct", "memory", "blkio", "freezer"} {
		h.mount(t, "cgroup", c, "rw,"+c)
	}
	_, err := NewCgroups(h.config(""))
	if !errors.Is(err, ErrNoController) || !strings.Contains(err.Error(), `"pids"`) ||
		!strings.Contains(err.Error(), "mount -t cgroup -o pids") {
		t.Fatalf("err = %v, want ErrNoController naming pids and how to mount it", err)
	}
}

func TestCgroupConfigErrors(t *testing.T) {
	h := newFakeHost(t)
	h.hybrid(t)
	for _, parent := range []string{"/abs", "..", "../escape", "."} {
		if _, err := NewCgroups(h.config(parent)); err == nil {
			t.Errorf("parent %q accepted", parent)
		}
	}
	cfg := h.config("")
	cfg.Version = 3
	if _, err := NewCgroups(cfg); err == nil {
		t.Error("version 3 accepted")
	}
	cfg.Version = 2 // forced: mountinfo not consulted, the root must be v2
	if _, err := NewCgroups(cfg); !errors.Is(err, ErrNoController) {
		t.Errorf("forced v2 on a v1 root: err = %v, want ErrNoController", err)
	}
	cgs, err := NewCgroups(h.config(""))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", ".", "..", "a/b"} {
		if _, err := cgs.Create(name, Limits{}); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if _, err := cgs.Create("job", Limits{MemoryBytes: 1}); !errors.Is(err, ErrInvalidLimits) {
		t.Errorf("Create with 1 byte of memory: err = %v, want ErrInvalidLimits", err)
	}
}

func TestCgroupBlockDevices(t *testing.T) {
	h := newFakeHost(t)
	devs, err := blockDevices(h.sysBlock)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(devs, wantDevs) {
		t.Errorf("devices = %v, want only the whole, non-empty, non-virtual disks %v", devs, wantDevs)
	}
}

// v1ControlFiles are the files a fresh v1 job cgroup has, with the
// kernel's initial values.
func v1ControlFiles(ctrl string, memsw bool) map[string]string {
	const unlimited = "9223372036854771712\n"
	files := map[string]string{"cgroup.procs": ""}
	switch ctrl {
	case "cpu":
		files["cpu.cfs_period_us"] = "100000\n"
		files["cpu.cfs_quota_us"] = "-1\n"
	case "cpuacct":
		files["cpuacct.usage"] = "0\n"
	case "memory":
		files["memory.limit_in_bytes"] = unlimited
		files["memory.soft_limit_in_bytes"] = unlimited
		if memsw {
			files["memory.memsw.limit_in_bytes"] = unlimited
		}
	case "blkio":
		for _, f := range []string{"read_bps", "write_bps", "read_iops", "write_iops"} {
			files["blkio.throttle."+f+"_device"] = ""
		}
	case "pids":
		files["pids.max"] = "max\n"
	case "freezer":
		files["freezer.state"] = "THAWED\n"
	case "devices":
		files["devices.deny"] = ""
		files["devices.allow"] = ""
	}
	return files
}

// fakeV1Cgroup makes the job cgroup name's directories and files by hand,
// as the kernel would on mkdir.
func fakeV1Cgroup(t *testing.T, m *cgroupsV1, name string, memsw bool) *cgroupV1 {
	t.Helper()
	cg := m.cgroup(name)
	for ctrl, dir := range cg.dirs {
		writeFiles(t, dir, v1ControlFiles(ctrl, memsw))
	}
	return cg
}

func TestCgroupV1Limits(t *testing.T) {
	h := newFakeHost(t)
	h.hybrid(t)
	cgs, err := NewCgroups(h.config("th"))
	if err != nil {
		t.Fatal(err)
	}
	m := cgs.(*cgroupsV1)
	for _, tc := range []struct {
		name   string
		limits Limits
		memsw  bool
		want   map[string]string // "controller/file" -> content
	}{{
		name: "defaults", limits: DefaultLimits(), memsw: true,
		want: map[string]string{
			"cpu/cpu.cfs_period_us":                  "100000\n",
			"cpu/cpu.cfs_quota_us":                   "10000\n",
			"memory/memory.limit_in_bytes":           "536870912\n",
			"memory/memory.soft_limit_in_bytes":      "402653184\n",
			"memory/memory.memsw.limit_in_bytes":     "536870912\n",
			"blkio/blkio.throttle.read_bps_device":   "259:0 104857600\n254:0 104857600\n",
			"blkio/blkio.throttle.write_bps_device":  "259:0 104857600\n254:0 104857600\n",
			"blkio/blkio.throttle.read_iops_device":  "259:0 1000\n254:0 1000\n",
			"blkio/blkio.throttle.write_iops_device": "259:0 1000\n254:0 1000\n",
			"pids/pids.max":                          "1024\n",
			"devices/devices.deny":                   "a\n",
			"devices/devices.allow":                  strings.Join(jobDeviceRules(), "\n") + "\n",
		},
	}, {
		name: "zero is no limit", limits: Limits{}, memsw: true,
		want: map[string]string{
			"cpu/cpu.cfs_quota_us":                   "-1\n",
			"memory/memory.limit_in_bytes":           "-1\n",
			"memory/memory.soft_limit_in_bytes":      "-1\n",
			"memory/memory.memsw.limit_in_bytes":     "-1\n",
			"blkio/blkio.throttle.read_bps_device":   "",
			"blkio/blkio.throttle.write_iops_device": "",
			"pids/pids.max":                          "max\n",
		},
	}, {
		name: "custom without swap accounting", memsw: false,
		limits: Limits{CPUMilli: 1500, MemoryBytes: 64 << 20, IOWriteBPS: 5 << 20, Pids: 20},
		want: map[string]string{
			"cpu/cpu.cfs_quota_us":                   "150000\n",
			"memory/memory.limit_in_bytes":           "67108864\n",
			"memory/memory.soft_limit_in_bytes":      "50331648\n",
			"blkio/blkio.throttle.read_bps_device":   "",
			"blkio/blkio.throttle.write_bps_device":  "259:0 5242880\n254:0 5242880\n",
			"blkio/blkio.throttle.write_iops_device": "",
			"pids/pids.max":                          "20\n",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cg := fakeV1Cgroup(t, m, strings.ReplaceAll(tc.name, " ", "-"), tc.memsw)
			if err := cg.setLimits(tc.limits, wantDevs); err != nil {
				t.Fatalf("setLimits: %v", err)
			}
			for f, want := range tc.want {
				ctrl, file, _ := strings.Cut(f, "/")
				if got := readFileT(t, filepath.Join(cg.dirs[ctrl], file)); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			if !tc.memsw && exists(filepath.Join(cg.dirs["memory"], "memory.memsw.limit_in_bytes")) {
				t.Error("memory.memsw.limit_in_bytes was created")
			}
		})
	}
}

func TestCgroupV1MemswOrder(t *testing.T) {
	// memsw must stay >= limit: raising writes memsw first, lowering the
	// limit first. grows decides which.
	for _, tc := range []struct {
		cur   string
		limit uint64
		want  bool
	}{
		{"9223372036854771712", 64 << 20, false},
		{"67108864", 128 << 20, true},
		{"67108864", 0, true},
		{"67108864", 32 << 20, false},
	} {
		if got := grows(tc.cur, tc.limit); got != tc.want {
			t.Errorf("grows(%s, %d) = %v, want %v", tc.cur, tc.limit, got, tc.want)
		}
	}
}

func TestCgroupV1Stats(t *testing.T) {
	h := newFakeHost(t)
	h.hybrid(t)
	cgs, err := NewCgroups(h.config("th"))
	if err != nil {
		t.Fatal(err)
	}
	cg := fakeV1Cgroup(t, cgs.(*cgroupsV1), "job", true)
	writeFiles(t, cg.dirs["cpuacct"], map[string]string{"cpuacct.usage": "1234567890\n"})
	writeFiles(t, cg.dirs["memory"], map[string]string{
		"memory.usage_in_bytes":     "1048576\n",
		"memory.max_usage_in_bytes": "8388608\n",
		"memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
	})
	writeFiles(t, cg.dirs["blkio"], map[string]string{"blkio.throttle.io_service_bytes": "" +
		"254:0 Read 4096\n254:0 Write 1048576\n254:0 Sync 1048576\n254:0 Async 4096\n254:0 Discard 0\n254:0 Total 1052672\n" +
		"259:0 Read 100\n259:0 Write 200\n259:0 Sync 0\n259:0 Async 300\n259:0 Discard 0\n259:0 Total 300\n" +
		"Total 1052972\n"})
	s, err := cg.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := Stats{CPUUsage: 1234567890 * time.Nanosecond, MemoryCurrent: 1 << 20, MemoryPeak: 8 << 20,
		IOReadBytes: 4196, IOWriteBytes: 1048776, OOMKills: 2}
	if s != want {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
}

func TestCgroupV1KillEmpty(t *testing.T) {
	h := newFakeHost(t)
	h.hybrid(t)
	cgs, err := NewCgroups(h.config("th"))
	if err != nil {
		t.Fatal(err)
	}
	cg := fakeV1Cgroup(t, cgs.(*cgroupsV1), "job", true)
	if err := cg.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if got := readFileT(t, filepath.Join(cg.dirs["freezer"], "freezer.state")); got != "THAWED\n" {
		t.Errorf("freezer.state = %q after Kill, want THAWED", got)
	}
}

func TestCgroupV1Cleanup(t *testing.T) {
	h := newFakeHost(t)
	h.hybrid(t)
	cgs, err := NewCgroups(h.config("th"))
	if err != nil {
		t.Fatal(err)
	}
	outside := checkCleanupOnlyParent(t, h.root, []string{"cpu", "memory", "freezer"}, "th")
	if err := cgs.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	outside()
}

// checkCleanupOnlyParent fills each hierarchy under root with job
// directories under parent (empty: a fake cannot hold processes) and
// lookalikes outside it; the returned func checks that the jobs are gone
// and that nothing else changed.
func checkCleanupOnlyParent(t *testing.T, root string, hierarchies []string, parent string) func() {
	t.Helper()
	var gone, kept []string
	for _, hier := range hierarchies {
		base := filepath.Join(root, hier)
		gone = append(gone, filepath.Join(base, parent, "job1"), filepath.Join(base, parent, "job2", "sub"))
		kept = append(kept, filepath.Join(base, parent), filepath.Join(base, "other"),
			filepath.Join(base, parent+"-sibling", "job1"))
		mkdirs(t, gone...)
		mkdirs(t, kept...)
		// A process of someone else's cgroup: never read, never signalled.
		writeFiles(t, filepath.Join(base, "other"), map[string]string{"cgroup.procs": "1\n"})
	}
	return func() {
		t.Helper()
		for _, d := range gone {
			if _, err := os.Stat(filepath.Dir(d)); !errors.Is(err, os.ErrNotExist) && filepath.Base(filepath.Dir(d)) != parent {
				t.Errorf("%s survived Cleanup", filepath.Dir(d))
			}
			if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s survived Cleanup", d)
			}
		}
		for _, d := range kept {
			if _, err := os.Stat(d); err != nil {
				t.Errorf("Cleanup removed %s, outside its jobs: %v", d, err)
			}
		}
		for _, hier := range hierarchies {
			if got := readFileT(t, filepath.Join(root, hier, "other", "cgroup.procs")); got != "1\n" {
				t.Errorf("Cleanup touched a cgroup outside the parent: %q", got)
			}
		}
	}
}

// fakeV2Cgroup makes a v2 job cgroup's directory and files by hand.
func fakeV2Cgroup(t *testing.T, dir string, optional ...string) *cgroupV2 {
	t.Helper()
	files := map[string]string{
		"cgroup.procs":  "",
		"cgroup.events": "populated 0\nfrozen 0\n",
		"cgroup.freeze": "0\n",
		"cpu.max":       "max 100000\n",
		"memory.max":    "max\n",
		"memory.high":   "max\n",
		"io.max":        "",
		"pids.max":      "max\n",
	}
	for _, f := range optional {
		files[f] = map[string]string{"memory.swap.max": "max\n", "cgroup.kill": "", "memory.peak": "0\n"}[f]
	}
	writeFiles(t, dir, files)
	return &cgroupV2{name: filepath.Base(dir), dir: dir}
}

func TestCgroupV2Limits(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limits   Limits
		optional []string
		want     map[string]string
	}{{
		name: "defaults", limits: DefaultLimits(), optional: []string{"memory.swap.max"},
		want: map[string]string{
			"cpu.max":         "10000 100000\n",
			"memory.max":      "536870912\n",
			"memory.high":     "402653184\n",
			"memory.swap.max": "0\n",
			"io.max": "259:0 rbps=104857600 wbps=104857600 riops=1000 wiops=1000\n" +
				"254:0 rbps=104857600 wbps=104857600 riops=1000 wiops=1000\n",
			"pids.max": "1024\n",
		},
	}, {
		name: "zero is no limit", limits: Limits{}, optional: []string{"memory.swap.max"},
		want: map[string]string{
			"cpu.max":         "max 100000\n",
			"memory.max":      "max\n",
			"memory.high":     "max\n",
			"memory.swap.max": "max\n", // untouched: no memory limit, no swap limit
			"io.max":          "",
			"pids.max":        "max\n",
		},
	}, {
		name:   "custom without swap accounting",
		limits: Limits{CPUMilli: 250, MemoryBytes: 64 << 20, IOReadIOPS: 50, IOWriteBPS: 1 << 20, Pids: 7},
		want: map[string]string{
			"cpu.max":     "25000 100000\n",
			"memory.max":  "67108864\n",
			"memory.high": "50331648\n",
			"io.max": "259:0 rbps=max wbps=1048576 riops=50 wiops=max\n" +
				"254:0 rbps=max wbps=1048576 riops=50 wiops=max\n",
			"pids.max": "7\n",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cg := fakeV2Cgroup(t, t.TempDir(), tc.optional...)
			if err := cg.setLimits(tc.limits, wantDevs); err != nil {
				t.Fatalf("setLimits: %v", err)
			}
			for f, want := range tc.want {
				if got := readFileT(t, filepath.Join(cg.dir, f)); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			if len(tc.optional) == 0 && exists(filepath.Join(cg.dir, "memory.swap.max")) {
				t.Error("memory.swap.max was created")
			}
		})
	}
}

func TestCgroupV2EnablesControllersInAncestors(t *testing.T) {
	h := newFakeHost(t)
	h.unified(t, "cpuset cpu io memory pids")
	writeFiles(t, h.root, map[string]string{"cgroup.subtree_control": "cpu memory\n"})
	// The nested parent exists with a v2 directory's files.
	for _, d := range []string{"a", "a/b"} {
		writeFiles(t, filepath.Join(h.root, d), map[string]string{"cgroup.subtree_control": "\n"})
	}
	writeFiles(t, filepath.Join(h.root, "a", "b"), map[string]string{"cgroup.subtree_control": "cpu io memory pids\n"})
	cgs, err := NewCgroups(h.config("a/b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cgs.(*cgroupsV2).ensureParent(); err != nil {
		t.Fatalf("ensureParent: %v", err)
	}
	for dir, want := range map[string]string{
		"":    "+io +pids\n",              // only what the root lacks
		"a":   "+cpu +memory +io +pids\n", // every controller
		"a/b": "cpu io memory pids\n",     // already complete: not written
	} {
		if got := readFileT(t, filepath.Join(h.root, dir, "cgroup.subtree_control")); got != want {
			t.Errorf("%s/cgroup.subtree_control = %q, want %q", dir, got, want)
		}
	}
}

func TestCgroupV2CreateFailureLeavesNothing(t *testing.T) {
	h := newFakeHost(t)
	h.unified(t, "cpu io memory pids")
	writeFiles(t, filepath.Join(h.root, "telehandler"), map[string]string{"cgroup.subtree_control": "\n"})
	cgs, err := NewCgroups(h.config(""))
	if err != nil {
		t.Fatal(err)
	}
	// A fake mkdir makes no control files: setting limits fails.
	if _, err := cgs.Create("job", DefaultLimits()); err == nil {
		t.Fatal("Create succeeded without control files")
	}
	if _, err := os.Stat(filepath.Join(h.root, "telehandler", "job")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Create left its directory: %v", err)
	}
}

func TestCgroupV2Stats(t *testing.T) {
	cg := fakeV2Cgroup(t, t.TempDir())
	writeFiles(t, cg.dir, map[string]string{
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n",
		"memory.current": "300\n",
		"memory.events":  "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
		"io.stat": "254:0 rbytes=4096 wbytes=1048576 rios=1 wios=256 dbytes=0 dios=0\n" +
			"259:0 rbytes=100 wbytes=200 rios=1 wios=1 dbytes=0 dios=0\n",
	})
	want := Stats{CPUUsage: 1500 * time.Microsecond, MemoryCurrent: 300, MemoryPeak: 300,
		IOReadBytes: 4196, IOWriteBytes: 1048776, OOMKills: 1}
	s, err := cg.Stats()
	if err != nil || s != want {
		t.Fatalf("Stats = %+v, %v; want %+v", s, err, want)
	}
	// Without memory.peak the peak is the highest current seen.
	writeFiles(t, cg.dir, map[string]string{"memory.current": "100\n"})
	if s, _ := cg.Stats(); s.MemoryPeak != 300 || s.MemoryCurrent != 100 {
		t.Errorf("without memory.peak: current %d peak %d, want 100 and 300", s.MemoryCurrent, s.MemoryPeak)
	}
	writeFiles(t, cg.dir, map[string]string{"memory.peak": "4096\n"})
	if s, _ := cg.Stats(); s.MemoryPeak != 4096 {
		t.Errorf("memory.peak 4096: MemoryPeak = %d", s.MemoryPeak)
	}
}

// fakeStep is one move of the fake kernel: once file holds want, it
// writes events to cgroup.events (which notifies inotify watchers, as the
// kernel does).
type fakeStep struct{ file, want, events string }

// kernelFake plays the kernel's part for Kill on a fake v2 cgroup, one
// step after the other.
func kernelFake(dir string, steps ...fakeStep) <-chan error {
	done := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for _, st := range steps {
			for {
				b, _ := os.ReadFile(filepath.Join(dir, st.file))
				if strings.TrimSpace(string(b)) == st.want {
					break
				}
				if time.Now().After(deadline) {
					done <- fmt.Errorf("%s never became %q", st.file, st.want)
					return
				}
				time.Sleep(time.Millisecond)
			}
			// One write in place, no truncation: a reader never sees the
			// file empty (the kernel's files change atomically).
			if err := overwrite(filepath.Join(dir, "cgroup.events"), st.events); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

// overwrite writes content over the start of the file with one write(2).
func overwrite(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func TestCgroupV2KillWaitsForNotification(t *testing.T) {
	cg := fakeV2Cgroup(t, t.TempDir(), "cgroup.kill")
	writeFiles(t, cg.dir, map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	k := kernelFake(cg.dir, fakeStep{"cgroup.kill", "1", "populated 0\nfrozen 0\n"})
	start := time.Now()
	if err := cg.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := <-k; err != nil {
		t.Fatal(err)
	}
	// Without the inotify wake-up Kill would only see the change when its
	// wait times out (killTimeout, 10 s).
	if d := time.Since(start); d > killTimeout/2 {
		t.Errorf("Kill returned after %v: not woken by the cgroup.events notification", d)
	}
}

func TestCgroupV2KillWithoutCgroupKill(t *testing.T) {
	// Before Linux 5.14: freeze, SIGKILL the (here: no) pids, thaw, and
	// wait for populated 0, which the fake writes once it sees the thaw.
	cg := fakeV2Cgroup(t, t.TempDir())
	writeFiles(t, cg.dir, map[string]string{"cgroup.events": "populated 1\nfrozen 0\n"})
	k := kernelFake(cg.dir,
		fakeStep{"cgroup.freeze", "1", "populated 1\nfrozen 1\n"},
		fakeStep{"cgroup.freeze", "0", "populated 0\nfrozen 0\n"})
	if err := cg.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := <-k; err != nil {
		t.Fatal(err)
	}
}

func TestCgroupV2Cleanup(t *testing.T) {
	h := newFakeHost(t)
	h.unified(t, "cpu io memory pids")
	cgs, err := NewCgroups(h.config("th"))
	if err != nil {
		t.Fatal(err)
	}
	check := checkCleanupOnlyParent(t, h.root, []string{"."}, "th")
	if err := cgs.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	check()
}

func TestCgroupLimitsValidate(t *testing.T) {
	maxMilli := uint64(1000 * runtime.NumCPU())
	for _, tc := range []struct {
		l  Limits
		ok bool
	}{
		{Limits{}, true},
		{DefaultLimits(), true},
		{Limits{CPUMilli: 10}, true},
		{Limits{CPUMilli: maxMilli}, true},
		{Limits{CPUMilli: 9}, false},
		{Limits{CPUMilli: maxMilli + 1}, false},
		{Limits{MemoryBytes: 4 << 20}, true},
		{Limits{MemoryBytes: 4<<20 - 1}, false},
		{Limits{Pids: 1}, true},
		{Limits{Pids: 1 << 40}, false},
		{Limits{IOReadBPS: 1, IOWriteIOPS: 1 << 60}, true},
		{Limits{NetworkBPS: 1 << 10}, true},
		{Limits{NetworkBPS: 1<<10 - 1}, false},
	} {
		err := tc.l.Validate()
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInvalidLimits)) {
			t.Errorf("%+v.Validate() = %v, want ok=%v", tc.l, err, tc.ok)
		}
	}
}

// TestCgroupUpdate: Update writes the kinds of limits that differ, and
// only those (a warm shim's cgroup getting its job's limits); IO limits
// that go away are removed.
func TestCgroupUpdate(t *testing.T) {
	from := DefaultLimits()
	to := from
	to.CPUMilli, to.IOReadBPS, to.IOWriteBPS, to.IOReadIOPS, to.IOWriteIOPS = 200, 0, 0, 0, 0
	const untouched = "untouched\n"

	t.Run("v1", func(t *testing.T) {
		h := newFakeHost(t)
		h.hybrid(t)
		cgs, err := NewCgroups(h.config("th"))
		if err != nil {
			t.Fatal(err)
		}
		cg := fakeV1Cgroup(t, cgs.(*cgroupsV1), "job", true)
		if err := cg.setLimits(from, wantDevs); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"memory/memory.limit_in_bytes", "pids/pids.max"} {
			ctrl, file, _ := strings.Cut(f, "/")
			writeFiles(t, cg.dirs[ctrl], map[string]string{file: untouched})
		}
		if err := cg.Update(from, to); err != nil {
			t.Fatal(err)
		}
		for f, want := range map[string]string{
			"cpu/cpu.cfs_quota_us":                   "20000\n",
			"memory/memory.limit_in_bytes":           untouched,
			"pids/pids.max":                          untouched,
			"blkio/blkio.throttle.read_bps_device":   "259:0 0\n254:0 0\n",
			"blkio/blkio.throttle.write_iops_device": "259:0 0\n254:0 0\n",
		} {
			ctrl, file, _ := strings.Cut(f, "/")
			if got := readFileT(t, filepath.Join(cg.dirs[ctrl], file)); got != want {
				t.Errorf("%s = %q, want %q", f, got, want)
			}
		}
		if err := cg.Update(to, Limits{CPUMilli: 1}); !errors.Is(err, ErrInvalidLimits) {
			t.Errorf("Update to invalid limits: %v, want ErrInvalidLimits", err)
		}
	})
	t.Run("v2", func(t *testing.T) {
		h := newFakeHost(t)
		cg := fakeV2Cgroup(t, t.TempDir(), "memory.swap.max")
		cg.sysBlock = h.sysBlock
		if err := cg.setLimits(from, wantDevs); err != nil {
			t.Fatal(err)
		}
		writeFiles(t, cg.dir, map[string]string{"memory.max": untouched, "pids.max": untouched})
		if err := cg.Update(from, to); err != nil {
			t.Fatal(err)
		}
		for f, want := range map[string]string{
			"cpu.max":    "20000 100000\n",
			"memory.max": untouched,
			"pids.max":   untouched,
			"io.max": "259:0 rbps=max wbps=max riops=max wiops=max\n" +
				"254:0 rbps=max wbps=max riops=max wiops=max\n",
		} {
			if got := readFileT(t, filepath.Join(cg.dir, f)); got != want {
				t.Errorf("%s = %q, want %q", f, got, want)
			}
		}
		// No memory limit any more: no swap limit either.
		if err := cg.Update(to, Limits{}); err != nil {
			t.Fatal(err)
		}
		if got := readFileT(t, filepath.Join(cg.dir, "memory.swap.max")); got != "max\n" {
			t.Errorf("memory.swap.max = %q, want max", got)
		}
	})
}
