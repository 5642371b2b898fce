package server

import (
	"fmt"
	"log/slog"

	"github.com/drrev/telehandler/limits"
)

// host is what the machine has, read once at start (readHost) and used to
// clamp the server's maxima. A zero field is unknown and clamps nothing.
type host struct {
	// pidMax is kernel.pid_max: no job can have that many processes.
	pidMax uint64
	// threadsMax is kernel.threads-max, the other bound on tasks.
	threadsMax uint64
	// memTotal is the RAM in bytes.
	memTotal uint64
	// noFile is the server's open-files limit (RLIMIT_NOFILE, as Go's
	// runtime raised it at start).
	noFile uint64
}

// clamp is one maximum lowered to what the host has, for the start log.
type clamp struct {
	limit   string // the serve flag's name
	asked   uint64
	now     uint64
	because string
}

func (c clamp) attrs() []any {
	return []any{"limit", c.limit, "configured", c.asked, "clamped_to", c.now, "because", c.because}
}

// log says at start which maxima the host lowered.
func logClamps(log *slog.Logger, clamps []clamp) {
	for _, c := range clamps {
		log.Warn("maximum lowered to what the host has", c.attrs()...)
	}
}

// clampToHost lowers c's maxima to what h has: a job's processes below
// kernel.pid_max, its memory at most the host's RAM, and the connections
// at most half the open-files limit (the other half stays for the jobs'
// pipes and logs, the watchers' files and the cgroup files). It returns
// what it lowered.
func (c *Config) clampToHost(h host) []clamp {
	var out []clamp
	if h.pidMax > 1 && c.MaxLimits.Pids > h.pidMax-1 {
		out = append(out, clamp{"max-pids", c.MaxLimits.Pids, h.pidMax - 1, fmt.Sprintf("kernel.pid_max is %d", h.pidMax)})
		c.MaxLimits.Pids = h.pidMax - 1
	}
	if h.memTotal > 0 && c.MaxLimits.MemoryBytes > h.memTotal {
		out = append(out, clamp{"max-memory", c.MaxLimits.MemoryBytes, h.memTotal, fmt.Sprintf("the host has %s of RAM", limits.FormatBytes(h.memTotal))})
		c.MaxLimits.MemoryBytes = h.memTotal
	}
	if h.noFile > 1 && uint64(c.MaxConns) > h.noFile/2 {
		out = append(out, clamp{"max-conns", uint64(c.MaxConns), h.noFile / 2, fmt.Sprintf("the open-files limit (ulimit -n) is %d; half of it is kept for the jobs", h.noFile)})
		c.MaxConns = int(h.noFile / 2)
	}
	return out
}

// JobsPidsCap is the most processes and threads all jobs together may
// have (the pids.max of serve's parent cgroup): three quarters of what the
// kernel allows (kernel.pid_max, kernel.threads-max), the rest kept for
// the host and the server, so that many jobs, each within its own
// --max-pids, cannot take every pid. 0 when the host does not say.
func JobsPidsCap() uint64 { return readHost().jobsPidsCap() }

func (h host) jobsPidsCap() uint64 {
	n := h.pidMax
	if h.threadsMax > 0 && (n == 0 || h.threadsMax < n) {
		n = h.threadsMax
	}
	return n - n/4
}
