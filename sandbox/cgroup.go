package sandbox

// CgroupConfig configures the cgroup manager. The zero value means: the
// host's /sys/fs/cgroup, parent cgroup "telehandler", layout detected.
type CgroupConfig struct {
	// Root is where cgroup file systems are mounted ("" = /sys/fs/cgroup).
	// Tests point it at a fake tree in t.TempDir().
	Root string
	// Parent is the name of Telehandler's own parent cgroup under Root
	// (under each v1 hierarchy). Nothing outside it is ever written to,
	// except enabling controllers in ancestors' cgroup.subtree_control on v2.
	// "" = "telehandler".
	Parent string
	// Version forces a layout (1 or 2); 0 = detect from the mounts.
	Version int
	// Mountinfo is the mountinfo file used to detect the layout and v1
	// hierarchies ("" = /proc/self/mountinfo).
	Mountinfo string
	// SysBlock is where block devices are listed for IO limits
	// ("" = /sys/block).
	SysBlock string
	// ParentPids is the pids.max of the parent: the most processes and
	// threads all jobs together may have, so that many jobs, each within
	// its own pids.max, cannot take every pid of the host (0 = no cap).
	ParentPids uint64
}

// Cgroups creates, and cleans up after, the cgroups of jobs. One
// implementation per layout (v1, v2) is chosen once by NewCgroups. Its
// methods are safe for concurrent use.
type Cgroups interface {
	// Version is 1 or 2.
	Version() int
	// Create makes the job's cgroup named name (one path element) under the
	// parent, creating the parent first if needed (on v2 also enabling the
	// cpu, memory, io and pids controllers in the subtree_control of the
	// root, of every cgroup between it and the parent, and of the parent),
	// and applies limits. Limits failing Validate give an error wrapping
	// ErrInvalidLimits; an existing cgroup of that name is an error (it may
	// hold a running job). On failure nothing is left behind.
	Create(name string, limits Limits) (Cgroup, error)
	// Cleanup kills every process left in any cgroup under the parent (from
	// an earlier run that crashed) and removes those cgroups, in every v1
	// hierarchy. The parent itself stays; nothing outside it is touched.
	Cleanup() error
	// RemoveParent removes the parent cgroup in every hierarchy, for a
	// clean shutdown once every job's cgroup is gone. A parent that does
	// not exist is fine; one that still has cgroups below it is an error
	// and stays (nothing is killed). Ancestors between the root and the
	// parent are left alone (they may not be ours).
	RemoveParent() error
}

// Cgroup is one job's cgroup (one directory on v2, one per controller
// hierarchy on v1). Its methods are safe for concurrent use.
type Cgroup interface {
	// Name is the name under the parent.
	Name() string
	// Paths are the directories of the cgroup: one on v2, one per
	// controller hierarchy on v1.
	Paths() []string
	// Join says how a new process enters the cgroup before it runs any
	// code of its own (see CgroupJoin). Start asks nothing else.
	Join() (CgroupJoin, error)
	// Add moves process pid (all its threads) into the cgroup, in every
	// hierarchy.
	Add(pid int) error
	// Procs lists the pids in the cgroup and in any cgroups below it,
	// sorted (on v1 the union over the hierarchies). A cgroup that no
	// longer exists has none.
	Procs() ([]int, error)
	// Signal sends sig to every process Procs lists (one at a time: for
	// SIGTERM before a grace period, not for killing).
	Signal(sig int) error
	// Kill kills every process in the cgroup at once (cgroup.kill on v2
	// where it exists, freeze + SIGKILL + thaw otherwise) and waits until
	// the cgroup is empty: on v2 woken by inotify on cgroup.events, on v1
	// (no notification) by polling with a short backoff. It gives up with
	// an error after 10 s. Killed processes may still be zombies for their
	// parent to reap: they no longer count.
	Kill() error
	// Update rewrites the limits of the kinds (CPU, memory, IO, pids) in
	// which to differs from from, the limits the cgroup has now; the rest
	// is not written. A warm shim's cgroup (pool_linux.go) is made with the
	// pool's limits and gets the job's this way before the job runs.
	Update(from, to Limits) error
	// Stats reads the accounting. On v2 kernels without memory.peak
	// (before 5.19) MemoryPeak is the highest MemoryCurrent Stats saw.
	Stats() (Stats, error)
	// Delete kills what is left and removes the cgroup directories (and
	// any the job made below them). Deleting a deleted cgroup is a no-op.
	Delete() error
}

// CgroupJoin is how a new process enters a cgroup before it runs any code of
// its own, as Cgroup.Join says. Start follows it in one place
// (Sandbox.Start and shim.finish):
//
//   - CloneFD >= 0 (v2): the process is cloned into the cgroup (clone3
//     CLONE_INTO_CGROUP, SysProcAttr.UseCgroupFD), which therefore exists
//     before it starts; the caller closes CloneFD;
//   - else, Tasks (v1): the process's exec thread writes itself into each
//     of these tasks files (one per hierarchy) first thing, so the cgroup
//     may be made while the process boots;
//   - else: the parent moves the process with Cgroup.Add before it lets it
//     run.
type CgroupJoin struct {
	CloneFD int
	Tasks   []string
}
