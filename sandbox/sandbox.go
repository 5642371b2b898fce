// Package sandbox owns a job's isolation and resource limits: the namespaces a
// job runs in, the cgroup that limits it (cgroup v1 and v2 behind one
// interface), and both halves of the protocol with the re-executed shim
// (`telehandler __child`) that turns a fresh set of namespaces into the user's
// command.
//
// sandbox knows nothing of jobs ids' meaning, users, gRPC or TLS: it starts a
// process in a cage, reports how it ended and cleans the cage up.
package sandbox

import (
	"errors"
	"time"
)

// Sentinel errors of the package; wrap them with %w and test with errors.Is.
var (
	// ErrExec means the user's command could not be started: the binary is
	// missing or not executable, the working directory is bad, or the
	// credentials could not be applied. The job never ran.
	ErrExec = errors.New("cannot start command")
	// ErrCommandNotFound and ErrNotExecutable come with ErrExec when the
	// command itself is the problem: no such file (in the job's PATH), or
	// a file execve refuses (permission, format). Shells exit 127 and 126
	// for these.
	ErrCommandNotFound = errors.New("command not found")
	ErrNotExecutable   = errors.New("command not executable")
	// ErrShim means the shim failed to set up the sandbox (namespaces,
	// mounts, cgroup join) before it could try the user's command.
	ErrShim = errors.New("sandbox setup failed")
	// ErrNoController means a cgroup controller the sandbox needs is missing
	// on this host.
	ErrNoController = errors.New("cgroup controller not available")
	// ErrInvalidLimits means a Limits value is out of range.
	ErrInvalidLimits = errors.New("invalid limits")
	// ErrUnknownImage means Spec.Image names no image of Config.Images.
	ErrUnknownImage = errors.New("unknown image")
	// ErrNoUID means every uid of Config.UIDs is held by a running job.
	ErrNoUID = errors.New("no free uid")
	// ErrDone means the process has already ended (a signal came too late).
	ErrDone = errors.New("process already ended")
)

// Limits are the resource limits of one job. A zero field means "no limit
// of this kind" (the kernel's max); callers that want the defaults start from
// DefaultLimits.
type Limits struct {
	// CPUMilli is the CPU quota in thousandths of one CPU: 100 is 10% of
	// one CPU, 2000 is two full CPUs.
	CPUMilli uint64 `json:"cpu_milli,omitempty"`
	// MemoryBytes is the hard memory limit (memory.max / memory.limit_in_bytes).
	// memory.high is set to 75% of it and swap to 0 where the files exist.
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	// IO limits apply to every real block device of the host.
	IOReadBPS   uint64 `json:"io_read_bps,omitempty"`
	IOWriteBPS  uint64 `json:"io_write_bps,omitempty"`
	IOReadIOPS  uint64 `json:"io_read_iops,omitempty"`
	IOWriteIOPS uint64 `json:"io_write_iops,omitempty"`
	// Pids is pids.max: the most processes (and threads) the job may have.
	Pids uint64 `json:"pids,omitempty"`
	// NetworkBPS is a networked job's bandwidth in bytes per second, each
	// way (not a cgroup limit: the job network applies it, see
	// StartConfig.Network); it does nothing for a job without network.
	NetworkBPS uint64 `json:"network_bps,omitempty"`
}

// DefaultLimits returns DESIGN.md's defaults: 10% of one CPU, 512 MiB of
// memory, 100 MiB/s and 1000 IOPS read and write, 1024 processes, and
// 10 MiB/s each way for a networked job.
func DefaultLimits() Limits {
	return Limits{
		CPUMilli:    100,
		MemoryBytes: 512 << 20,
		IOReadBPS:   100 << 20,
		IOWriteBPS:  100 << 20,
		IOReadIOPS:  1000,
		IOWriteIOPS: 1000,
		Pids:        1024,
		NetworkBPS:  10 << 20,
	}
}

// Stats are a job's resource usage as its cgroup accounted it.
type Stats struct {
	CPUUsage      time.Duration `json:"cpu_usage"`
	MemoryCurrent uint64        `json:"memory_current"`
	MemoryPeak    uint64        `json:"memory_peak"`
	IOReadBytes   uint64        `json:"io_read_bytes"`
	IOWriteBytes  uint64        `json:"io_write_bytes"`
	OOMKills      uint64        `json:"oom_kills"`
}
