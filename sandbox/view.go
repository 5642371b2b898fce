package sandbox

import "fmt"

// A job's file system view, as the shim builds it before it execs the
// command (mounts_linux.go):
//
//   - the root: the host's root file system (or, with Spec.Image, an image
//     directory the shim pivots into), read-only, nosuid and nodev with
//     every submount;
//   - private tmpfs mounts of Config.TmpfsSize each, mode 1777, nosuid and
//     nodev, on /tmp, /var/tmp and /run (with /run/lock) where the view has
//     those directories, and on /dev/shm; the job's writes to them are
//     charged to its memory cgroup and vanish with its mount namespace;
//   - the job's home, jobHome (a tmpfs of the same size, mode 0700, owned by
//     the job's uid, under a read-only tmpfs on /home that hides the host's
//     home directories): its HOME and default working directory. A view
//     without /home uses /tmp instead;
//   - a minimal /dev (a read-only tmpfs holding null, zero, full, random,
//     urandom and tty bound from the host, a devpts instance of its own,
//     /dev/shm and the usual symlinks);
//   - a fresh /proc with runc's masked paths covered and its read-only
//     paths read-only; a fresh, read-only /sys of the job's network
//     namespace (so /sys/class/net lists lo only) with /sys/firmware masked
//     and, at /sys/fs/cgroup, the job's own cgroup only, read-only;
//   - Config.Hide covered by empty read-only tmpfs mounts;
//   - Config.Binds bound in.

// jobHome is the job's HOME and default working directory when the view
// has a /home directory (fallbackHome otherwise).
const (
	jobHome      = "/home/job"
	fallbackHome = "/tmp"
)

// DefaultTmpfsSize is the size of each of a job's private tmpfs mounts when
// Config.TmpfsSize is 0. Their pages also count against the job's memory
// limit.
const DefaultTmpfsSize = 256 << 20

// Bind is a host path an operator binds into every job's view.
type Bind struct {
	// Host is the absolute host path (a directory or a file).
	Host string `json:"host"`
	// Job is the absolute path in the job's view. It must exist in the
	// view, unless it is under one of the job's private tmpfs mounts
	// (/tmp, /var/tmp, /run, /home/job), where the shim creates it.
	Job string `json:"job"`
	// Writable binds read-write; else the bind (and every mount below it)
	// is read-only.
	Writable bool `json:"writable,omitempty"`
}

func (b Bind) String() string {
	mode := "ro"
	if b.Writable {
		mode = "rw"
	}
	return fmt.Sprintf("%s:%s (%s)", b.Host, b.Job, mode)
}

// UIDRange is the range of uids (and gids, the same numbers) from which each
// job with Spec.DynamicUser gets one of its own.
type UIDRange struct {
	First uint32
	Count uint32
}

// DefaultUIDRange is UIDRange's default: 65536 ids from 0x70000000
// (1879048192). systemd's uid table marks 1879048192-2147352575 unused: it is
// above its container ranges (524288-1879048191), above the subordinate
// ranges useradd hands out (from 100000 up, 65536 per user) and far from
// /etc/passwd's system and human users.
var DefaultUIDRange = UIDRange{First: 0x70000000, Count: 65536}

// Last is the last uid of the range.
func (r UIDRange) Last() uint32 { return r.First + r.Count - 1 }

func (r UIDRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last()) }

// view is the part of the shim's spec that says how to build the job's file
// system view; the parent fills it from Config and the job's cgroup. Its
// lists have no omitempty: an empty one and a missing one (null) survive the
// JSON round trip apart, as FuzzDecodeSpec checks.
type view struct {
	// Image is the host directory of the job's root file system; "" = the
	// host's root.
	Image string `json:"image,omitempty"`
	// TmpfsSize is the size in bytes of each private tmpfs.
	TmpfsSize uint64 `json:"tmpfs_size"`
	// Hide are host paths covered by an empty read-only tmpfs (host view
	// only; none under the private mounts).
	Hide []string `json:"hide"`
	// Binds are bound in after everything else.
	Binds []Bind `json:"binds"`
	// Cgroups are the job's cgroup directories: mounted read-only at
	// /sys/fs/cgroup (v2) or /sys/fs/cgroup/NAME (v1).
	Cgroups []viewCgroup `json:"cgroups"`
	// HomeUID and HomeGID own the job's home.
	HomeUID uint32 `json:"home_uid"`
	HomeGID uint32 `json:"home_gid"`
	// MaskSecrets masks hostSecrets: for every job but a dynamic user's,
	// which owns nothing on the host and so reads none of them anyway.
	MaskSecrets bool `json:"mask_secrets,omitempty"`
}

// viewCgroup is one of the job's cgroup directories and where the job sees
// it.
type viewCgroup struct {
	// Host is the directory on the host.
	Host string `json:"host"`
	// Name is its directory under /sys/fs/cgroup in the job's view; ""
	// means /sys/fs/cgroup itself (v2).
	Name string `json:"name,omitempty"`
	// Links are other names of the same hierarchy (v1 "cpu" and "cpuacct"
	// for "cpu,cpuacct"), symlinks to Name.
	Links []string `json:"links"`
}
