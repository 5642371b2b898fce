package sandbox

import "golang.org/x/sys/unix"

// The native ABI on amd64 is x86_64. i386 calls (int 0x80) have another
// AUDIT_ARCH; x32 calls share x86_64's and set __X32_SYSCALL_BIT in the
// number.
const (
	seccompArch       = unix.AUDIT_ARCH_X86_64
	seccompForeignBit = 0x40000000
)

// seccompArchAllowed are Docker's allowed calls that only amd64 has (the
// old forms arm64's generic table replaced by the *at ones), arch_prctl
// and modify_ldt (thread-local storage: every x86_64 runtime), and chroot
// (CAP_SYS_CHROOT, in Docker's default capabilities).
var seccompArchAllowed = []uint32{
	unix.SYS_ACCESS, unix.SYS_ALARM, unix.SYS_CHMOD, unix.SYS_CHOWN, unix.SYS_CREAT, unix.SYS_DUP2,
	unix.SYS_EPOLL_CREATE, unix.SYS_EPOLL_CTL_OLD, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_WAIT_OLD,
	unix.SYS_EVENTFD, unix.SYS_FORK, unix.SYS_FUTIMESAT, unix.SYS_GET_THREAD_AREA,
	unix.SYS_GETDENTS, unix.SYS_GETPGRP, unix.SYS_INOTIFY_INIT, unix.SYS_LCHOWN, unix.SYS_LINK,
	unix.SYS_LSTAT, unix.SYS_MKDIR, unix.SYS_MKNOD, unix.SYS_OPEN, unix.SYS_PAUSE, unix.SYS_PIPE,
	unix.SYS_POLL, unix.SYS_READLINK, unix.SYS_RENAME, unix.SYS_RMDIR, unix.SYS_SELECT,
	unix.SYS_SET_THREAD_AREA, unix.SYS_SIGNALFD, unix.SYS_STAT, unix.SYS_SYMLINK, unix.SYS_TIME,
	unix.SYS_UNLINK, unix.SYS_URETPROBE, unix.SYS_UTIME, unix.SYS_UTIMES, unix.SYS_VFORK,
	unix.SYS_ARCH_PRCTL, unix.SYS_MODIFY_LDT, unix.SYS_CHROOT,
}

// seccompArchRefused are refused calls only amd64 has: direct port IO, and
// obsolete calls (old module and sysctl interfaces, uselib, ustat, sysfs).
var seccompArchRefused = []uint32{
	unix.SYS_IOPL, unix.SYS_IOPERM,
	unix.SYS_CREATE_MODULE, unix.SYS_GET_KERNEL_SYMS, unix.SYS_QUERY_MODULE, unix.SYS__SYSCTL,
	unix.SYS_USELIB, unix.SYS_USTAT, unix.SYS_SYSFS,
}
