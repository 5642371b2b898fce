package sandbox

import (
	"fmt"
	"runtime"
)

// Bounds that Limits.Validate enforces. They reject values the kernel would
// refuse or that can only be typing mistakes; the server's configured
// maxima are checked elsewhere.
const (
	// cpuPeriodUS is the CFS period Telehandler always uses: quotas are
	// CPUMilli*100 µs per 100 ms.
	cpuPeriodUS = 100000
	// minCPUMilli is the smallest quota the kernel accepts (1 ms per period).
	minCPUMilli = 10
	// minMemoryBytes is the smallest memory limit in which a process can
	// still start: below it a job would be OOM-killed before its first
	// instruction.
	minMemoryBytes = 4 << 20
	// maxPids is the kernel's PID_MAX_LIMIT on 64-bit hosts.
	maxPids = 4 << 20
	// minNetworkBPS is the slowest network a job may have: slower, one
	// full frame would take over a second.
	minNetworkBPS = 1 << 10
)

// Validate reports, wrapping ErrInvalidLimits, a limit the kernel would
// reject or that cannot be meant: a CPU quota under 1% of a CPU or above
// every CPU of the host, a memory limit under 4 MiB, more processes than the
// kernel can have. Zero fields (no limit) are always valid.
func (l Limits) Validate() error {
	if l.CPUMilli != 0 {
		maxMilli := uint64(1000 * runtime.NumCPU())
		if l.CPUMilli < minCPUMilli || l.CPUMilli > maxMilli {
			return fmt.Errorf("%w: CPU %d millicpus is outside [%d, %d] (1%% of one CPU to all %d CPUs of this host)",
				ErrInvalidLimits, l.CPUMilli, minCPUMilli, maxMilli, runtime.NumCPU())
		}
	}
	if l.MemoryBytes != 0 && l.MemoryBytes < minMemoryBytes {
		return fmt.Errorf("%w: memory %d bytes is under the minimum of %d (4 MiB)",
			ErrInvalidLimits, l.MemoryBytes, minMemoryBytes)
	}
	if l.Pids > maxPids {
		return fmt.Errorf("%w: %d processes is over the kernel's maximum of %d",
			ErrInvalidLimits, l.Pids, maxPids)
	}
	if l.NetworkBPS != 0 && l.NetworkBPS < minNetworkBPS {
		return fmt.Errorf("%w: network %d bytes per second is under the minimum of %d (1 KiB/s)",
			ErrInvalidLimits, l.NetworkBPS, minNetworkBPS)
	}
	return nil
}

// ioLimits are l's four IO limits, to compare them at once.
func ioLimits(l Limits) [4]uint64 {
	return [4]uint64{l.IOReadBPS, l.IOWriteBPS, l.IOReadIOPS, l.IOWriteIOPS}
}
