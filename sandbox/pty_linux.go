package sandbox

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// A job's terminal (Spec.TTY). The job's view has a devpts instance of its
// own on /dev/pts (mountDev; not the host's: the job cannot see or open the
// host's terminals, nor the server's); the shim opens a pty pair there, makes the slave the controlling terminal of the command's session
// and its fds 0-2, and sends the master to the parent over ttyFD. The
// parent (the server) only reads and writes the master and sets its window
// size; it never makes it a controlling terminal of its own: it gets the fd
// over a socket, never by opening a path.

// devptsOptions: a private instance whose ptmx anyone in the job may open
// (the job's own uid, not root, opens more terminals), slaves 0620, and at
// most 64 terminals (enough for tmux or screen with a few windows): every
// instance but the host's draws on one pool (kernel.pty.max less
// kernel.pty.reserve), which one job must not drain for the others.
const devptsOptions = "newinstance,ptmxmode=0666,mode=0620,max=64"

// openTTY (shim) opens a pty pair in the job's devpts instance (the view's),
// sizes it, gives the slave to the job's user, sends the master on ttyFD
// and returns the slave (O_NOCTTY: it becomes the controlling terminal
// only in useTTY, right before exec).
func openTTY(spec shimSpec) (int, error) {
	master, err := unix.Open("/dev/pts/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, shimErr("open ptmx", err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		return -1, shimErr("unlock pty", err)
	}
	// The slave straight from the master (Linux 4.13+): no path to look up
	// and race on.
	slave, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(master), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return -1, shimErr("open pty slave", errno)
	}
	fail := func(stage string, err error) (int, error) {
		unix.Close(int(slave))
		return -1, shimErr(stage, err)
	}
	ws := &unix.Winsize{Row: spec.TTYRows, Col: spec.TTYCols}
	if err := unix.IoctlSetWinsize(int(slave), unix.TIOCSWINSZ, ws); err != nil {
		return fail("size pty", err)
	}
	if spec.UID != nil || spec.GID != nil {
		uid, gid := -1, -1
		if spec.UID != nil {
			uid = int(*spec.UID)
		}
		if spec.GID != nil {
			gid = int(*spec.GID)
		}
		if err := unix.Fchown(int(slave), uid, gid); err != nil {
			return fail("give pty to the job's user", err)
		}
	}
	if err := unix.Sendmsg(ttyFD, []byte{0}, unix.UnixRights(master), nil, 0); err != nil {
		return fail("send pty master", err)
	}
	unix.Close(ttyFD)
	return int(slave), nil
}

// useTTY (shim, last before the seccomp filter) makes slave the
// controlling terminal of the shim's session (the shim is its leader:
// Start set Setsid) and the command's fds 0-2.
func useTTY(slave int) error {
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return shimErr("set controlling terminal", err)
	}
	for fd := 0; fd <= 2; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return shimErr("terminal as stdin, stdout, stderr", err)
		}
	}
	// slave is >= 3: close-on-exec, gone at exec.
	return nil
}

// withTERM returns env with TERM=xterm added when it sets no TERM (as
// docker run -t does): full-screen programs need one.
func withTERM(env []string) []string {
	for _, kv := range env {
		if len(kv) >= 5 && kv[:5] == "TERM=" {
			return env
		}
	}
	return append(env[:len(env):len(env)], "TERM=xterm")
}

// ttySocket (parent) makes the socketpair the master travels on: the
// parent's end and the shim's (for ExtraFiles at ttyFD).
func ttySocket() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: tty socketpair: %w", ErrShim, err)
	}
	return os.NewFile(uintptr(fds[0]), "tty socket"), os.NewFile(uintptr(fds[1]), "tty socket (shim)"), nil
}

// recvMaster (parent) receives the master the shim sent on sock, after the
// exec: the message waits in the socket, and the exec closed the shim's end,
// so this cannot block. The master comes back non-blocking, so that reads
// and writes on the returned file use the runtime's poller (and can be
// interrupted by Close and deadlines).
func recvMaster(sock *os.File) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n, oobn int
	var rErr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rErr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		return rErr != unix.EAGAIN
	}); err != nil {
		return nil, err
	}
	if rErr != nil {
		return nil, fmt.Errorf("receive pty master: %w", rErr)
	}
	if n == 0 && oobn == 0 {
		return nil, errors.New("receive pty master: the shim sent none")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, fmt.Errorf("receive pty master: %w", err)
		}
		fds = append(fds, got...)
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receive pty master: %d fds instead of 1", len(fds))
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, fmt.Errorf("pty master: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "pty master"), nil
}

// SetWindowSize sets the size of the terminal whose master is f (from
// Process.TTY); the job's foreground process group gets SIGWINCH.
func SetWindowSize(f *os.File, rows, cols uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	if err := rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	}); err != nil {
		// Control fails only for a file closed under it (the job ended):
		// its "use of closed file" is not os.ErrClosed, which callers test.
		return fmt.Errorf("%w: %w", os.ErrClosed, err)
	}
	return ioErr
}
