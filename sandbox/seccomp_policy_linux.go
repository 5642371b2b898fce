//go:build amd64 || arm64

package sandbox

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The seccomp policy: Docker's default profile (moby profiles/seccomp/
// default.json) for a job without CAP_SYS_ADMIN, with these differences:
//
//   - adjtimex and clock_adjtime are refused: Docker allows them because
//     the kernel asks CAP_SYS_TIME only for a change, but a filter cannot
//     tell a change from a query (the mode is behind a pointer), and jobs
//     have no business with the host's clock.
//   - i386 and x32 calls on amd64 and arm32 calls on arm64, which Docker
//     allows, kill the process: no program a job runs needs them, and they
//     are a second, less travelled path into the kernel.
//   - calls newer than the policy answer ENOSYS, not EPERM (as runc does).
//   - argument checks compare the 32 bits the kernel reads (see argCheck).
//   - ioctl TIOCSTI and TIOCLINUX are refused (seccompArgChecks).
//
// Like Docker's, the filter is the same for every job and does not depend
// on the job's capabilities: calls that the capabilities of a root job
// (Docker's default set) make useful, chroot, are allowed, and the kernel
// still checks the capability.

// seccompAllowed are allowed on amd64 and arm64: Docker's unconditional
// list, minus adjtimex and clock_adjtime.
var seccompAllowed = []uint32{
	unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_BIND, unix.SYS_BRK, unix.SYS_CACHESTAT,
	unix.SYS_CAPGET, unix.SYS_CAPSET, unix.SYS_CHDIR, unix.SYS_CLOCK_GETRES, unix.SYS_CLOCK_GETTIME,
	unix.SYS_CLOCK_NANOSLEEP, unix.SYS_CLOSE, unix.SYS_CLOSE_RANGE, unix.SYS_CONNECT,
	unix.SYS_COPY_FILE_RANGE, unix.SYS_DUP, unix.SYS_DUP3, unix.SYS_EPOLL_CREATE1,
	unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_PWAIT, unix.SYS_EPOLL_PWAIT2, unix.SYS_EVENTFD2,
	unix.SYS_EXECVE, unix.SYS_EXECVEAT, unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_FACCESSAT,
	unix.SYS_FACCESSAT2, unix.SYS_FADVISE64, unix.SYS_FALLOCATE, unix.SYS_FANOTIFY_MARK,
	unix.SYS_FCHDIR, unix.SYS_FCHMOD, unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2, unix.SYS_FCHOWN,
	unix.SYS_FCHOWNAT, unix.SYS_FCNTL, unix.SYS_FDATASYNC, unix.SYS_FGETXATTR, unix.SYS_FLISTXATTR,
	unix.SYS_FLOCK, unix.SYS_FREMOVEXATTR, unix.SYS_FSETXATTR, unix.SYS_FSTAT, unix.SYS_FSTATFS,
	unix.SYS_FSYNC, unix.SYS_FTRUNCATE, unix.SYS_FUTEX, unix.SYS_FUTEX_REQUEUE, unix.SYS_FUTEX_WAIT,
	unix.SYS_FUTEX_WAITV, unix.SYS_FUTEX_WAKE, unix.SYS_GET_ROBUST_LIST, unix.SYS_GETCPU,
	unix.SYS_GETCWD, unix.SYS_GETDENTS64, unix.SYS_GETEGID, unix.SYS_GETEUID, unix.SYS_GETGID,
	unix.SYS_GETGROUPS, unix.SYS_GETITIMER, unix.SYS_GETPEERNAME, unix.SYS_GETPGID, unix.SYS_GETPID,
	unix.SYS_GETPPID, unix.SYS_GETPRIORITY, unix.SYS_GETRANDOM, unix.SYS_GETRESGID,
	unix.SYS_GETRESUID, unix.SYS_GETRLIMIT, unix.SYS_GETRUSAGE, unix.SYS_GETSID,
	unix.SYS_GETSOCKNAME, unix.SYS_GETSOCKOPT, unix.SYS_GETTID, unix.SYS_GETTIMEOFDAY,
	unix.SYS_GETUID, unix.SYS_GETXATTR, unix.SYS_GETXATTRAT, unix.SYS_INOTIFY_ADD_WATCH,
	unix.SYS_INOTIFY_INIT1, unix.SYS_INOTIFY_RM_WATCH, unix.SYS_IO_CANCEL, unix.SYS_IO_DESTROY,
	unix.SYS_IO_GETEVENTS, unix.SYS_IO_PGETEVENTS, unix.SYS_IO_SETUP, unix.SYS_IO_SUBMIT,
	unix.SYS_IOPRIO_GET, unix.SYS_IOPRIO_SET, unix.SYS_KILL,
	unix.SYS_LANDLOCK_ADD_RULE, unix.SYS_LANDLOCK_CREATE_RULESET, unix.SYS_LANDLOCK_RESTRICT_SELF,
	unix.SYS_LGETXATTR, unix.SYS_LINKAT, unix.SYS_LISTEN, unix.SYS_LISTMOUNT, unix.SYS_LISTXATTR,
	unix.SYS_LISTXATTRAT, unix.SYS_LLISTXATTR, unix.SYS_LREMOVEXATTR, unix.SYS_LSEEK,
	unix.SYS_LSETXATTR, unix.SYS_MADVISE, unix.SYS_MAP_SHADOW_STACK, unix.SYS_MEMBARRIER,
	unix.SYS_MEMFD_CREATE, unix.SYS_MEMFD_SECRET, unix.SYS_MINCORE, unix.SYS_MKDIRAT,
	unix.SYS_MKNODAT, unix.SYS_MLOCK, unix.SYS_MLOCK2, unix.SYS_MLOCKALL, unix.SYS_MMAP,
	unix.SYS_MPROTECT, unix.SYS_MQ_GETSETATTR, unix.SYS_MQ_NOTIFY, unix.SYS_MQ_OPEN,
	unix.SYS_MQ_TIMEDRECEIVE, unix.SYS_MQ_TIMEDSEND, unix.SYS_MQ_UNLINK, unix.SYS_MREMAP,
	unix.SYS_MSEAL, unix.SYS_MSGCTL, unix.SYS_MSGGET, unix.SYS_MSGRCV, unix.SYS_MSGSND,
	unix.SYS_MSYNC, unix.SYS_MUNLOCK, unix.SYS_MUNLOCKALL, unix.SYS_MUNMAP,
	unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_NANOSLEEP, unix.SYS_NEWFSTATAT, unix.SYS_OPENAT,
	unix.SYS_OPENAT2, unix.SYS_PIDFD_OPEN, unix.SYS_PIDFD_SEND_SIGNAL, unix.SYS_PIPE2,
	unix.SYS_PKEY_ALLOC, unix.SYS_PKEY_FREE, unix.SYS_PKEY_MPROTECT, unix.SYS_PPOLL, unix.SYS_PRCTL,
	unix.SYS_PREAD64, unix.SYS_PREADV, unix.SYS_PREADV2, unix.SYS_PRLIMIT64,
	unix.SYS_PROCESS_MRELEASE, unix.SYS_PSELECT6, unix.SYS_PWRITE64, unix.SYS_PWRITEV,
	unix.SYS_PWRITEV2, unix.SYS_READ, unix.SYS_READAHEAD, unix.SYS_READLINKAT, unix.SYS_READV,
	unix.SYS_RECVFROM, unix.SYS_RECVMMSG, unix.SYS_RECVMSG, unix.SYS_REMAP_FILE_PAGES,
	unix.SYS_REMOVEXATTR, unix.SYS_REMOVEXATTRAT, unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2,
	unix.SYS_RESTART_SYSCALL, unix.SYS_RSEQ, unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPENDING,
	unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGQUEUEINFO, unix.SYS_RT_SIGRETURN,
	unix.SYS_RT_SIGSUSPEND, unix.SYS_RT_SIGTIMEDWAIT, unix.SYS_RT_TGSIGQUEUEINFO,
	unix.SYS_SCHED_GET_PRIORITY_MAX, unix.SYS_SCHED_GET_PRIORITY_MIN, unix.SYS_SCHED_GETAFFINITY,
	unix.SYS_SCHED_GETATTR, unix.SYS_SCHED_GETPARAM, unix.SYS_SCHED_GETSCHEDULER,
	unix.SYS_SCHED_RR_GET_INTERVAL, unix.SYS_SCHED_SETAFFINITY, unix.SYS_SCHED_SETATTR,
	unix.SYS_SCHED_SETPARAM, unix.SYS_SCHED_SETSCHEDULER, unix.SYS_SCHED_YIELD, unix.SYS_SECCOMP,
	unix.SYS_SEMCTL, unix.SYS_SEMGET, unix.SYS_SEMOP, unix.SYS_SEMTIMEDOP, unix.SYS_SENDFILE,
	unix.SYS_SENDMMSG, unix.SYS_SENDMSG, unix.SYS_SENDTO, unix.SYS_SET_ROBUST_LIST,
	unix.SYS_SET_TID_ADDRESS, unix.SYS_SETFSGID, unix.SYS_SETFSUID, unix.SYS_SETGID,
	unix.SYS_SETGROUPS, unix.SYS_SETITIMER, unix.SYS_SETPGID, unix.SYS_SETPRIORITY,
	unix.SYS_SETREGID, unix.SYS_SETRESGID, unix.SYS_SETRESUID, unix.SYS_SETREUID,
	unix.SYS_SETRLIMIT, unix.SYS_SETSID, unix.SYS_SETSOCKOPT, unix.SYS_SETUID, unix.SYS_SETXATTR,
	unix.SYS_SETXATTRAT, unix.SYS_SHMAT, unix.SYS_SHMCTL, unix.SYS_SHMDT, unix.SYS_SHMGET,
	unix.SYS_SHUTDOWN, unix.SYS_SIGALTSTACK, unix.SYS_SIGNALFD4, unix.SYS_SOCKETPAIR,
	unix.SYS_SPLICE, unix.SYS_STATFS, unix.SYS_STATMOUNT, unix.SYS_STATX, unix.SYS_SYMLINKAT,
	unix.SYS_SYNC, unix.SYS_SYNC_FILE_RANGE, unix.SYS_SYNCFS, unix.SYS_SYSINFO, unix.SYS_TEE,
	unix.SYS_TGKILL, unix.SYS_TIMER_CREATE, unix.SYS_TIMER_DELETE, unix.SYS_TIMER_GETOVERRUN,
	unix.SYS_TIMER_GETTIME, unix.SYS_TIMER_SETTIME, unix.SYS_TIMERFD_CREATE,
	unix.SYS_TIMERFD_GETTIME, unix.SYS_TIMERFD_SETTIME, unix.SYS_TIMES, unix.SYS_TKILL,
	unix.SYS_TRUNCATE, unix.SYS_UMASK, unix.SYS_UNAME, unix.SYS_UNLINKAT, unix.SYS_UTIMENSAT,
	unix.SYS_VMSPLICE, unix.SYS_WAIT4, unix.SYS_WAITID, unix.SYS_WRITE, unix.SYS_WRITEV,
}

// seccompPtrace may inspect and change other processes of the job (gdb,
// strace). Docker allows them from Linux 4.8, where seccomp checks the
// calls a tracer changes again; before, a tracer could turn a refused
// call into an allowed one.
var seccompPtrace = []uint32{unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV}

// seccompRefused answer EPERM. Every number the policy does not allow is
// refused; these are named to document why, and so that the unit test
// checks each.
var seccompRefused = []uint32{
	// New namespaces, or joining another: behind most container escapes
	// (a user namespace gives a full capability set over new mount, net,
	// ... namespaces). clone with a CLONE_NEW* flag too (seccompArgChecks);
	// clone3 answers ENOSYS (seccompENOSYSCalls).
	unix.SYS_UNSHARE, unix.SYS_SETNS, unix.SYS_LISTNS,
	// Mounts, old and new API: changing the job's view of files.
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE,
	unix.SYS_OPEN_TREE_ATTR, unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK,
	unix.SYS_MOUNT_SETATTR,
	// Kernel keyrings are not namespaced.
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	// Large, often exploited kernel interfaces.
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	// The host's kernel, modules, devices and boot.
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE,
	unix.SYS_DELETE_MODULE, unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT,
	unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_LOOKUP_DCOOKIE, unix.SYS_NFSSERVCTL,
	unix.SYS_VHANGUP, unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME, unix.SYS_FANOTIFY_INIT,
	// The host's clock (stime exists on neither amd64 nor arm64).
	unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_SETTIMEOFDAY, unix.SYS_ADJTIMEX,
	// The kernel log.
	unix.SYS_SYSLOG,
	// Files by handle, past the mount namespace (the Shocker escape).
	unix.SYS_OPEN_BY_HANDLE_AT,
	// Other processes' files and memory, comparing kernel objects.
	unix.SYS_PIDFD_GETFD, unix.SYS_PROCESS_MADVISE, unix.SYS_KCMP,
	// NUMA placement of memory (CAP_SYS_NICE in Docker).
	unix.SYS_MBIND, unix.SYS_SET_MEMPOLICY, unix.SYS_GET_MEMPOLICY, unix.SYS_MIGRATE_PAGES,
	unix.SYS_MOVE_PAGES, unix.SYS_SET_MEMPOLICY_HOME_NODE,
	// Linux security modules' attributes.
	unix.SYS_LSM_GET_SELF_ATTR, unix.SYS_LSM_SET_SELF_ATTR, unix.SYS_LSM_LIST_MODULES,
}

// seccompENOSYSCalls answer ENOSYS, which callers take as "not on this
// kernel" and fall back: clone3 cannot be checked (its flags are behind a
// pointer), and glibc and Go fall back to clone, whose flags are checked.
var seccompENOSYSCalls = []uint32{unix.SYS_CLONE3}

// Namespace flags refused to clone, as in Docker (CLONE_NEWTIME is the
// exit signal's bit for clone: clone3 and unshare only).
const cloneNewFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// Safe personalities (Docker's): PER_LINUX, PER_LINUX32, UNAME26 of both,
// and 0xffffffff, which asks for the current one. ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC
// and the others weaken the job's own exploit mitigations and are refused.
const (
	perLinux   = 0x0000
	perLinux32 = 0x0008
	perUname26 = 0x0020000
	perQuery   = 0xffffffff
)

// seccompArgChecks are the calls allowed or refused by an argument.
var seccompArgChecks = map[uint32]*argCheck{
	// clone(flags, ...): refused with a namespace flag.
	unix.SYS_CLONE: {arg: 0, bits: cloneNewFlags, match: seccompEPERM, otherwise: seccompAllow},
	// personality(persona): only the safe ones.
	unix.SYS_PERSONALITY: {arg: 0, values: []uint32{perLinux, perLinux32, perUname26, perUname26 | perLinux32, perQuery},
		match: seccompAllow, otherwise: seccompEPERM},
	// socket(family, ...): not AF_ALG (the kernel's crypto API) nor
	// AF_VSOCK (host/VM sockets, not namespaced), as in Docker.
	unix.SYS_SOCKET: {arg: 0, values: []uint32{unix.AF_ALG, unix.AF_VSOCK}, match: seccompEPERM, otherwise: seccompAllow},
	// ioctl(fd, cmd, ...): not TIOCSTI (push bytes into a terminal's input
	// as if typed: the classic escape when a terminal is shared with the
	// host) nor TIOCLINUX (the virtual console's selection and paste). A
	// job's terminal is its own (start -it), so TIOCSTI could only type
	// into itself; refused anyway, as kernels since 6.2 can
	// (dev.tty.legacy_tiocsti=0). Docker allows both; cmd is an unsigned
	// int, so its low 32 bits are what the kernel reads.
	unix.SYS_IOCTL: {arg: 1, values: []uint32{unix.TIOCSTI, unix.TIOCLINUX}, match: seccompEPERM, otherwise: seccompAllow},
}

// defaultSeccompPolicy is the policy for this architecture on a kernel of
// the given release ("6.1.0-18-amd64").
func defaultSeccompPolicy(release string) (seccompPolicy, error) {
	p := seccompPolicy{arch: seccompArch, foreignBit: seccompForeignBit, rules: map[uint32]seccompRule{}}
	add := func(r seccompRule, nrs ...uint32) error {
		for _, nr := range nrs {
			if _, dup := p.rules[nr]; dup {
				return fmt.Errorf("system call %d has two rules in the seccomp policy", nr)
			}
			p.rules[nr] = r
		}
		return nil
	}
	allow, eperm := seccompRule{ret: seccompAllow}, seccompRule{ret: seccompEPERM}
	ptrace := eperm
	if kernelAtLeast(release, 4, 8) {
		ptrace = allow
	}
	lists := []struct {
		rule seccompRule
		nrs  []uint32
	}{
		{allow, seccompAllowed},
		{allow, seccompArchAllowed},
		{ptrace, seccompPtrace},
		{eperm, seccompRefused},
		{eperm, seccompArchRefused},
		{seccompRule{ret: seccompENOSYS}, seccompENOSYSCalls},
	}
	for _, l := range lists {
		if err := add(l.rule, l.nrs...); err != nil {
			return p, err
		}
	}
	for nr, c := range seccompArgChecks {
		if err := add(seccompRule{check: c}, nr); err != nil {
			return p, err
		}
	}
	return p, nil
}

// kernelAtLeast reports whether release ("6.1.0-18-amd64", "4.19.112+")
// is major.minor or newer; false if it cannot be parsed.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	digits := func(s string) (int, bool) {
		end := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if end >= 0 {
			s = s[:end]
		}
		n, err := strconv.Atoi(s)
		return n, err == nil
	}
	ma, ok1 := digits(parts[0])
	mi, ok2 := digits(parts[1])
	if !ok1 || !ok2 {
		return false
	}
	return ma > major || ma == major && mi >= minor
}
