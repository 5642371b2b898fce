package sandbox

import "time"

// DefaultShimPool is serve --shim-pool's default: enough warm shims for a
// burst of starts from a few callers while the refill catches up, for
// about 16 MiB of memory and 4 uids (pool_linux.go).
const DefaultShimPool = 4

// Config configures New. The zero value runs /proc/self/exe as the shim and
// uses the host's cgroups as NewCgroups(CgroupConfig{}) finds them.
type Config struct {
	// Cgroups creates the jobs' cgroups; nil = NewCgroups(CgroupConfig{}).
	Cgroups Cgroups
	// Exe is the shim executable, re-executed as `Exe __child`; its main
	// (or TestMain) must call RunChild first thing for that argument.
	// "" = /proc/self/exe, this very binary.
	Exe string
	// StartTimeout bounds how long Start waits for the shim to exec the
	// command; a shim still silent then is killed and Start fails with
	// ErrShim. 0 = defaultStartTimeout.
	StartTimeout time.Duration
	// DisableSeccomp runs jobs without the seccomp filter (serve
	// --seccomp=off). The zero value filters every job (seccomp_linux.go).
	DisableSeccomp bool
	// ShimPool is how many warm shims (pool_linux.go) the sandbox keeps
	// ready once StartPool was called, at most half as many as UIDs has
	// (each holds one); 0 = none, every job starts cold.
	ShimPool int
	// ShimPoolLimits are the limits the warm shims' cgroups are made with:
	// the server's default job limits, so that a default job's start
	// rewrites none. Must pass Limits.Validate.
	ShimPoolLimits Limits
	// ShimPoolIdle is how long a warm shim waits for a job before it is
	// recycled; 0 = defaultShimPoolIdle.
	ShimPoolIdle time.Duration

	// The job's view (view.go).

	// TmpfsSize is the size in bytes of each of a job's private tmpfs
	// mounts; 0 = DefaultTmpfsSize.
	TmpfsSize uint64
	// Hide are host paths (directories) no job may see: each is covered by
	// an empty read-only tmpfs (the server's state directory, the
	// directories of its certificates and keys). Paths under a job's own
	// mounts (/tmp, /var/tmp, /run, /dev, /proc, /sys, /home) are hidden
	// already. "/" cannot be hidden.
	Hide []string
	// Binds are host paths bound into every job's view, in order.
	Binds []Bind
	// Images are the root file systems a job may ask for by name
	// (Spec.Image): directories with at least proc, dev and sys in them.
	Images map[string]string
	// UIDs is the range of Spec.DynamicUser jobs' uids; the zero value is
	// DefaultUIDRange. No id of /etc/passwd, /etc/group, /etc/subuid or
	// /etc/subgid may fall in it.
	UIDs UIDRange
}
