package jobrunner

import (
	"os"

	"golang.org/x/sys/unix"
)

// jobPipeSize is the capacity asked for a job's output pipes (the kernel's
// default is 64 KiB). A larger pipe lets drain read a job that writes fast
// in a few large reads instead of many small ones. The pipe's pages are
// allocated as the job writes, charged to the job's memory. The price:
// between stdout and stderr, whose order is the order the server reads the
// two pipes, output written to one may now overtake up to this much (plus
// drain's buffer) written earlier to the other; --merge keeps the order.
const jobPipeSize = 512 << 10

// growPipe asks for a jobPipeSize pipe behind f, best effort: a pipe of the
// default size works too, only with more reads. It goes through
// SyscallConn, not Fd, which would switch f to blocking reads.
func growPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, jobPipeSize)
	})
}
