package client

import (
	"os"

	"golang.org/x/sys/unix"
)

// stdinHasData reports whether f is a pipe or socket with data to read
// right now. It polls with a zero timeout and never reads, so nothing is
// consumed; a terminal, a file or /dev/null is never "data" here (a
// forgotten -i matters for pipes: `echo hi | telehandler start -- cat`).
func stdinHasData(f *os.File) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	if mode := st.Mode & unix.S_IFMT; mode != unix.S_IFIFO && mode != unix.S_IFSOCK {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
}
