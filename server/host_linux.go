package server

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// readHost reads what the machine has; what it cannot read stays zero
// (unknown).
func readHost() host {
	var h host
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		h.pidMax, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/threads-max"); err == nil {
		h.threadsMax, _ = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		h.memTotal = uint64(si.Totalram) * uint64(max(si.Unit, 1))
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur != unix.RLIM_INFINITY {
		h.noFile = rl.Cur
	}
	return h
}
