package sandbox

import "golang.org/x/sys/unix"

// archSeccompProbes are amd64's refused calls: direct port IO (level 0 and
// no ports: nothing changes, were they let through).
func archSeccompProbes() []seccompProbe {
	return []seccompProbe{
		{"iopl", func() unix.Errno { return sys(unix.SYS_IOPL, 0) }, unix.EPERM},
		{"ioperm", func() unix.Errno { return sys(unix.SYS_IOPERM, 0, 0, 0) }, unix.EPERM},
	}
}
