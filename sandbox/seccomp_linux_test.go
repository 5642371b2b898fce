//go:build amd64 || arm64

package sandbox

import (
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Unit tests of the seccomp filter: the compiled program runs in
// golang.org/x/net/bpf's interpreter on seccomp_data records, as the kernel
// would run it. No root needed. The root tests (seccomp_root_linux_test.go)
// run it in the kernel.

// seccompVM runs a compiled policy.
type seccompVM struct {
	t  *testing.T
	vm *bpf.VM
}

func newSeccompVM(t *testing.T, p seccompPolicy) *seccompVM {
	t.Helper()
	insns, err := p.compile()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("the program does not verify: %v", err)
	}
	return &seccompVM{t: t, vm: vm}
}

// run returns the filter's answer for call nr of arch with args. The
// interpreter loads big-endian words, the kernel native-endian ones: each
// 32-bit word is written big-endian here so that it reads as the kernel
// reads it on a little-endian machine (low half of an argument first).
func (v *seccompVM) run(arch, nr uint32, args ...uint64) uint32 {
	v.t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[16+8*i+4:], uint32(a>>32))
	}
	ret, err := v.vm.Run(data)
	if err != nil {
		v.t.Fatalf("run nr %d: %v", nr, err)
	}
	return uint32(ret)
}

func retName(r uint32) string {
	switch r {
	case seccompAllow:
		return "allow"
	case seccompEPERM:
		return "EPERM"
	case seccompENOSYS:
		return "ENOSYS"
	case seccompKill:
		return "kill"
	}
	return fmt.Sprintf("%#x", r)
}

func mustPolicy(t *testing.T, release string) seccompPolicy {
	t.Helper()
	p, err := defaultSeccompPolicy(release)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSeccompPolicyAnswers checks the answer for every named call, for an
// unnamed one and for calls newer than the policy.
func TestSeccompPolicyAnswers(t *testing.T) {
	p := mustPolicy(t, "6.1.0-18-amd64")
	vm := newSeccompVM(t, p)
	check := func(what string, nrs []uint32, want uint32) {
		t.Helper()
		for _, nr := range nrs {
			if got := vm.run(seccompArch, nr); got != want {
				t.Errorf("%s: call %d: %s, want %s", what, nr, retName(got), retName(want))
			}
		}
	}
	check("allowed", seccompAllowed, seccompAllow)
	check("allowed on "+fmt.Sprint(seccompArch), seccompArchAllowed, seccompAllow)
	check("ptrace", seccompPtrace, seccompAllow)
	check("refused", seccompRefused, seccompEPERM)
	check("refused on this arch", seccompArchRefused, seccompEPERM)
	check("clone3", []uint32{unix.SYS_CLONE3}, seccompENOSYS)

	top := p.maxNamed()
	check("newer than the policy", []uint32{top + 1, top + 100, 0xffff, 1<<30 - 1}, seccompENOSYS)
	var hole uint32
	for nr := uint32(0); nr < top; nr++ {
		if _, named := p.rules[nr]; !named {
			hole = nr
			break
		}
	}
	if hole == 0 {
		t.Fatal("the policy names every number: no unnamed one to check")
	}
	check("unnamed", []uint32{hole}, seccompEPERM)

	// Before Linux 4.8 a tracer could change a call after the filter.
	vm = newSeccompVM(t, mustPolicy(t, "4.4.0-210-generic"))
	check("ptrace on 4.4", seccompPtrace, seccompEPERM)
}

// TestSeccompRefusesIssueList names every call issue 9 asks to refuse.
func TestSeccompRefusesIssueList(t *testing.T) {
	vm := newSeccompVM(t, mustPolicy(t, "6.12.0"))
	refused := append([]uint32{
		unix.SYS_UNSHARE, unix.SYS_SETNS,
		unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE,
		unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
		unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY, unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN,
		unix.SYS_USERFAULTFD, unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
		unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE,
		unix.SYS_DELETE_MODULE, unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT,
		unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_SETTIMEOFDAY, unix.SYS_ADJTIMEX,
		unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_SYSLOG, unix.SYS_LOOKUP_DCOOKIE, unix.SYS_NFSSERVCTL,
		unix.SYS_QUOTACTL,
	}, seccompArchRefused...)
	for _, nr := range refused {
		if got := vm.run(seccompArch, nr); got != seccompEPERM {
			t.Errorf("call %d: %s, want EPERM", nr, retName(got))
		}
	}
}

// TestSeccompAllowsWhatProgramsNeed: calls every Go runtime and libc
// start-up makes, so that a change of the lists cannot drop one unnoticed.
func TestSeccompAllowsWhatProgramsNeed(t *testing.T) {
	vm := newSeccompVM(t, mustPolicy(t, "6.12.0"))
	for _, nr := range []uint32{
		unix.SYS_READ, unix.SYS_WRITE, unix.SYS_OPENAT, unix.SYS_CLOSE, unix.SYS_MMAP, unix.SYS_MUNMAP,
		unix.SYS_MPROTECT, unix.SYS_MADVISE, unix.SYS_BRK, unix.SYS_FUTEX, unix.SYS_RT_SIGACTION,
		unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_SIGALTSTACK, unix.SYS_GETTID,
		unix.SYS_TGKILL, unix.SYS_SCHED_GETAFFINITY, unix.SYS_SCHED_YIELD, unix.SYS_NANOSLEEP,
		unix.SYS_CLOCK_GETTIME, unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_PWAIT,
		unix.SYS_EVENTFD2, unix.SYS_PIPE2, unix.SYS_FCNTL, unix.SYS_PRLIMIT64, unix.SYS_GETRANDOM,
		unix.SYS_EXECVE, unix.SYS_EXIT, unix.SYS_EXIT_GROUP, unix.SYS_WAIT4, unix.SYS_WAITID,
		unix.SYS_PIDFD_OPEN, unix.SYS_PIDFD_SEND_SIGNAL, unix.SYS_NEWFSTATAT, unix.SYS_STATX,
		unix.SYS_FACCESSAT2, unix.SYS_FCHMODAT2, unix.SYS_GETDENTS64, unix.SYS_SET_ROBUST_LIST,
		unix.SYS_SET_TID_ADDRESS, unix.SYS_RSEQ, unix.SYS_PRCTL, unix.SYS_UNAME, unix.SYS_IOCTL,
		unix.SYS_CLOSE_RANGE, unix.SYS_SECCOMP, unix.SYS_SETUID, unix.SYS_SETGID, unix.SYS_CHROOT,
	} {
		if got := vm.run(seccompArch, nr); got != seccompAllow {
			t.Errorf("call %d: %s, want allow", nr, retName(got))
		}
	}
}

// TestSeccompForeignArchitectures: another ABI's calls kill the process,
// whatever their number.
func TestSeccompForeignArchitectures(t *testing.T) {
	vm := newSeccompVM(t, mustPolicy(t, "6.12.0"))
	for _, arch := range []uint32{unix.AUDIT_ARCH_I386, unix.AUDIT_ARCH_ARM, unix.AUDIT_ARCH_X86_64, unix.AUDIT_ARCH_AARCH64} {
		if arch == seccompArch {
			continue
		}
		for _, nr := range []uint32{0, 1, unix.SYS_WRITE, unix.SYS_UNSHARE, 0xffff} {
			if got := vm.run(arch, nr); got != seccompKill {
				t.Errorf("arch %#x call %d: %s, want kill", arch, nr, retName(got))
			}
		}
	}
	// -1: a tracer skipping the call, whatever the bits.
	if got := vm.run(seccompArch, seccompSkippedNr); got != seccompAllow {
		t.Errorf("call -1: %s, want allow", retName(got))
	}
	if seccompForeignBit == 0 {
		return
	}
	// x32: x86_64's arch with __X32_SYSCALL_BIT.
	for _, nr := range []uint32{unix.SYS_WRITE, unix.SYS_GETPID, unix.SYS_UNSHARE} {
		if got := vm.run(seccompArch, nr|seccompForeignBit); got != seccompKill {
			t.Errorf("x32 call %d: %s, want kill", nr, retName(got))
		}
	}
}

// TestSeccompArgumentChecks: clone's namespace flags, personality's
// values and socket's families, including values whose high 32 bits
// carry garbage, which the kernel ignores.
func TestSeccompArgumentChecks(t *testing.T) {
	vm := newSeccompVM(t, mustPolicy(t, "6.12.0"))
	const hi = 0xdeadbeef << 32
	goThread := uint64(unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_SYSVSEM | unix.CLONE_THREAD)
	fork := uint64(unix.SIGCHLD)
	vfork := uint64(unix.CLONE_VM | unix.CLONE_VFORK | unix.CLONE_PIDFD | unix.SIGCHLD)
	for _, tc := range []struct {
		name string
		nr   uint32
		arg  uint64
		want uint32
	}{
		{"clone thread", unix.SYS_CLONE, goThread, seccompAllow},
		{"clone fork", unix.SYS_CLONE, fork, seccompAllow},
		{"clone vfork+pidfd", unix.SYS_CLONE, vfork, seccompAllow},
		{"clone fork, high bits", unix.SYS_CLONE, hi | fork, seccompAllow},
		{"clone NEWUSER", unix.SYS_CLONE, fork | unix.CLONE_NEWUSER, seccompEPERM},
		{"clone NEWNS", unix.SYS_CLONE, fork | unix.CLONE_NEWNS, seccompEPERM},
		{"clone NEWPID", unix.SYS_CLONE, fork | unix.CLONE_NEWPID, seccompEPERM},
		{"clone NEWNET", unix.SYS_CLONE, fork | unix.CLONE_NEWNET, seccompEPERM},
		{"clone NEWUTS", unix.SYS_CLONE, fork | unix.CLONE_NEWUTS, seccompEPERM},
		{"clone NEWIPC", unix.SYS_CLONE, fork | unix.CLONE_NEWIPC, seccompEPERM},
		{"clone NEWCGROUP", unix.SYS_CLONE, fork | unix.CLONE_NEWCGROUP, seccompEPERM},
		{"clone NEWUSER, high bits", unix.SYS_CLONE, hi | goThread | unix.CLONE_NEWUSER, seccompEPERM},
		{"personality PER_LINUX", unix.SYS_PERSONALITY, 0, seccompAllow},
		{"personality PER_LINUX32", unix.SYS_PERSONALITY, 8, seccompAllow},
		{"personality UNAME26", unix.SYS_PERSONALITY, 0x20000, seccompAllow},
		{"personality UNAME26|PER_LINUX32", unix.SYS_PERSONALITY, 0x20008, seccompAllow},
		{"personality query", unix.SYS_PERSONALITY, 0xffffffff, seccompAllow},
		{"personality ADDR_NO_RANDOMIZE", unix.SYS_PERSONALITY, 0x0040000, seccompEPERM},
		{"personality READ_IMPLIES_EXEC", unix.SYS_PERSONALITY, 0x0400000, seccompEPERM},
		{"personality 0xffff", unix.SYS_PERSONALITY, 0xffff, seccompEPERM},
		{"personality ADDR_NO_RANDOMIZE, high bits", unix.SYS_PERSONALITY, 1<<32 | 0x0040000, seccompEPERM},
		{"socket AF_UNIX", unix.SYS_SOCKET, unix.AF_UNIX, seccompAllow},
		{"socket AF_INET", unix.SYS_SOCKET, unix.AF_INET, seccompAllow},
		{"socket AF_INET6", unix.SYS_SOCKET, unix.AF_INET6, seccompAllow},
		{"socket AF_NETLINK", unix.SYS_SOCKET, unix.AF_NETLINK, seccompAllow},
		{"socket AF_ALG", unix.SYS_SOCKET, unix.AF_ALG, seccompEPERM},
		{"socket AF_VSOCK", unix.SYS_SOCKET, unix.AF_VSOCK, seccompEPERM},
		{"socket AF_ALG, high bits", unix.SYS_SOCKET, 1<<32 | unix.AF_ALG, seccompEPERM},
	} {
		if got := vm.run(seccompArch, tc.nr, tc.arg); got != tc.want {
			t.Errorf("%s (%#x): %s, want %s", tc.name, tc.arg, retName(got), retName(tc.want))
		}
	}
}

// TestSeccompLongSearch: a policy whose search blocks are longer than a
// conditional jump reaches (255 instructions) still answers every call
// right (the unconditional jump path of search).
func TestSeccompLongSearch(t *testing.T) {
	p := seccompPolicy{arch: seccompArch, rules: map[uint32]seccompRule{}}
	answers := []uint32{seccompAllow, seccompEPERM, seccompENOSYS}
	for nr := uint32(0); nr < 1500; nr++ {
		p.rules[nr] = seccompRule{ret: answers[nr%3]}
	}
	p.rules[700] = seccompRule{check: seccompArgChecks[unix.SYS_PERSONALITY]}
	insns, err := p.compile()
	if err != nil {
		t.Fatal(err)
	}
	if len(insns) < 2*255 {
		t.Fatalf("only %d instructions: the long jumps are not exercised", len(insns))
	}
	vm := newSeccompVM(t, p)
	for nr := uint32(0); nr < 1500; nr++ {
		want := answers[nr%3]
		if nr == 700 {
			want = seccompEPERM // personality check, argument 0x40000 below
		}
		if got := vm.run(seccompArch, nr, 0x40000); got != want {
			t.Fatalf("call %d: %s, want %s", nr, retName(got), retName(want))
		}
	}
	if got := vm.run(seccompArch, 700, 0); got != seccompAllow {
		t.Errorf("call 700 (personality check) with 0: %s, want allow", retName(got))
	}
	if got := vm.run(seccompArch, 1500); got != seccompENOSYS {
		t.Errorf("call 1500: %s, want ENOSYS", retName(got))
	}
}

// TestSeccompProgramEncoding: the wire form round-trips, stays well
// within the kernel's limit, and the shim rejects a malformed one.
func TestSeccompProgramEncoding(t *testing.T) {
	prog, err := seccompProgram()
	if err != nil {
		t.Fatal(err)
	}
	filter, err := decodeSeccomp(prog)
	if err != nil {
		t.Fatal(err)
	}
	insns, err := mustPolicy(t, "6.12.0").compile()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bpf.Assemble(insns)
	if err != nil {
		t.Fatal(err)
	}
	if len(filter) != len(raw) {
		t.Fatalf("decoded %d instructions, compiled %d", len(filter), len(raw))
	}
	for i, r := range raw {
		if f := filter[i]; f.Code != r.Op || f.Jt != r.Jt || f.Jf != r.Jf || f.K != r.K {
			t.Fatalf("instruction %d: decoded %+v, compiled %+v", i, f, r)
		}
	}
	t.Logf("seccomp filter: %d instructions, %d bytes on the wire", len(filter), len(prog))
	if len(filter) > 512 {
		t.Errorf("%d instructions: the binary search should keep the filter small", len(filter))
	}
	for _, bad := range [][]byte{nil, make([]byte, 7), make([]byte, 8*(maxSeccompInsns+1))} {
		if _, err := decodeSeccomp(bad); err == nil {
			t.Errorf("decodeSeccomp of %d bytes: no error", len(bad))
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    bool
	}{
		{"6.1.0-18-amd64", true},
		{"4.8.0", true},
		{"4.19.112+", true},
		{"4.7.10-generic", false},
		{"3.10.0-1160.el7.x86_64", false},
		{"10.0", true},
		{"garbage", false},
		{"", false},
	} {
		if got := kernelAtLeast(tc.release, 4, 8); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 4, 8) = %v, want %v", tc.release, got, tc.want)
		}
	}
}
