//go:build amd64 || arm64

package sandbox

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Root tests of the seccomp filter: jobs attack the kernel surface for
// real, and ordinary programs still work. The probes are this test binary
// (helperEnv), a Go program that behaves the same on the host and in the
// cgroup v2 VM.

// seccompHelpers are the helper programs of these tests (helperEnv).
var seccompHelpers = map[string]func() int{
	"seccomp-probe": runSeccompProbe,
	"seccomp-x32":   runX32,
	"gowork":        runGoWork,
	"personality":   runPersonality,
}

// seccompProbe is one refused call made by the probe helper, with
// arguments that are harmless should the call get through (a clock that
// cannot be set, a path that does not exist, a read-only query), so that a
// broken filter fails the test without harming the host.
type seccompProbe struct {
	name string
	call func() unix.Errno
	want unix.Errno // EPERM, or ENOSYS for clone3
}

func sys(nr uintptr, args ...uintptr) unix.Errno {
	var a [6]uintptr
	copy(a[:], args)
	r, _, e := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if e == 0 && (nr == unix.SYS_USERFAULTFD || nr == unix.SYS_SOCKET || nr == unix.SYS_OPEN_TREE) {
		unix.Close(int(r)) // got a descriptor: the filter let it through
	}
	return e
}

// rawClone calls clone (or clone3) directly; a child, should the call
// succeed, exits at once.
func rawClone(nr uintptr, a0, a1 uintptr) unix.Errno {
	r, _, e := unix.RawSyscall6(nr, a0, a1, 0, 0, 0, 0)
	if e == 0 && r == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return e
}

func ptr[T any](p *T) uintptr { return uintptr(unsafe.Pointer(p)) }

func cstr(s string) uintptr {
	b, err := unix.BytePtrFromString(s)
	if err != nil {
		panic(err)
	}
	return uintptr(unsafe.Pointer(b))
}

const missing = "/nonexistent-telehandler-seccomp-probe"

// negArg is a negative int as a system call argument.
func negArg(n int) uintptr { return uintptr(n) }

// atFDCWD is AT_FDCWD (-100) as a system call argument.
var atFDCWD = negArg(unix.AT_FDCWD)

// seccompProbes are the calls every architecture has; archSeccompProbes
// adds the others.
func seccompProbes() []seccompProbe {
	eperm := unix.EPERM
	ts := unix.Timespec{Sec: 1}
	var timex unix.Timex // Modes 0: a query
	cloneArgs := struct{ flags, pidfd, childTID, parentTID, exitSignal, stack, stackSize, tls uint64 }{
		exitSignal: uint64(unix.SIGCHLD)}
	probes := []seccompProbe{
		{"unshare(CLONE_NEWUSER)", func() unix.Errno { return sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER) }, eperm},
		{"unshare(CLONE_NEWNS)", func() unix.Errno { return sys(unix.SYS_UNSHARE, unix.CLONE_NEWNS) }, eperm},
		{"unshare(CLONE_NEWNET)", func() unix.Errno { return sys(unix.SYS_UNSHARE, unix.CLONE_NEWNET) }, eperm},
		{"setns", func() unix.Errno {
			fd, err := unix.Open("/proc/self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err.(unix.Errno)
			}
			defer unix.Close(fd)
			return sys(unix.SYS_SETNS, uintptr(fd), unix.CLONE_NEWUTS)
		}, eperm},
		{"clone(CLONE_NEWUSER)", func() unix.Errno {
			return rawClone(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0)
		}, eperm},
		{"clone(CLONE_NEWNET|CLONE_NEWNS)", func() unix.Errno {
			return rawClone(unix.SYS_CLONE, unix.CLONE_NEWNET|unix.CLONE_NEWNS|uintptr(unix.SIGCHLD), 0)
		}, eperm},
		{"clone3", func() unix.Errno {
			return rawClone(unix.SYS_CLONE3, ptr(&cloneArgs), unsafe.Sizeof(cloneArgs))
		}, unix.ENOSYS},
		{"mount tmpfs", func() unix.Errno {
			return sys(unix.SYS_MOUNT, cstr("none"), cstr(missing), cstr("tmpfs"), 0, 0)
		}, eperm},
		{"umount2", func() unix.Errno { return sys(unix.SYS_UMOUNT2, cstr(missing), 0) }, eperm},
		// On fd 0, /dev/null: without the filter ENOTTY, harmless.
		{"ioctl(TIOCSTI)", func() unix.Errno {
			c := byte('x')
			return sys(unix.SYS_IOCTL, 0, unix.TIOCSTI, ptr(&c))
		}, eperm},
		{"ioctl(TIOCLINUX)", func() unix.Errno {
			c := byte(0)
			return sys(unix.SYS_IOCTL, 0, unix.TIOCLINUX, ptr(&c))
		}, eperm},
		{"pivot_root", func() unix.Errno { return sys(unix.SYS_PIVOT_ROOT, cstr(missing), cstr(missing)) }, eperm},
		{"open_tree", func() unix.Errno {
			return sys(unix.SYS_OPEN_TREE, atFDCWD, cstr("/"), unix.OPEN_TREE_CLOEXEC)
		}, eperm},
		{"fsopen", func() unix.Errno { return sys(unix.SYS_FSOPEN, cstr("tmpfs"), 0) }, eperm},
		{"fspick", func() unix.Errno { return sys(unix.SYS_FSPICK, atFDCWD, cstr("/"), 0) }, eperm},
		{"fsconfig", func() unix.Errno { return sys(unix.SYS_FSCONFIG, ^uintptr(0), 0, 0, 0, 0) }, eperm},
		{"fsmount", func() unix.Errno { return sys(unix.SYS_FSMOUNT, ^uintptr(0), 0, 0) }, eperm},
		{"move_mount", func() unix.Errno {
			return sys(unix.SYS_MOVE_MOUNT, ^uintptr(0), cstr(""), ^uintptr(0), cstr(""), 0)
		}, eperm},
		{"mount_setattr", func() unix.Errno { return sys(unix.SYS_MOUNT_SETATTR, ^uintptr(0), cstr(""), 0, 0, 0) }, eperm},
		{"keyctl", func() unix.Errno {
			return sys(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, negArg(unix.KEY_SPEC_SESSION_KEYRING), 0)
		}, eperm},
		{"add_key", func() unix.Errno {
			return sys(unix.SYS_ADD_KEY, cstr("user"), cstr("telehandler-probe"), cstr("x"), 1,
				negArg(unix.KEY_SPEC_PROCESS_KEYRING))
		}, eperm},
		{"request_key", func() unix.Errno {
			return sys(unix.SYS_REQUEST_KEY, cstr("user"), cstr("telehandler-probe-none"), 0, 0)
		}, eperm},
		{"bpf", func() unix.Errno { return sys(unix.SYS_BPF, unix.BPF_PROG_LOAD, 0, 0) }, eperm},
		{"perf_event_open", func() unix.Errno { return sys(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0) }, eperm},
		{"userfaultfd", func() unix.Errno { return sys(unix.SYS_USERFAULTFD, unix.O_CLOEXEC) }, eperm},
		{"io_uring_setup", func() unix.Errno { return sys(unix.SYS_IO_URING_SETUP, 1, 0) }, eperm},
		{"io_uring_enter", func() unix.Errno { return sys(unix.SYS_IO_URING_ENTER, ^uintptr(0), 0, 0, 0, 0, 0) }, eperm},
		{"io_uring_register", func() unix.Errno { return sys(unix.SYS_IO_URING_REGISTER, ^uintptr(0), 0, 0, 0) }, eperm},
		// 1000 segments: EINVAL, were it let through (no kexec image changes).
		{"kexec_load", func() unix.Errno { return sys(unix.SYS_KEXEC_LOAD, 0, 1000, 0, 0) }, eperm},
		// An unknown flag: EINVAL, were it let through.
		{"kexec_file_load", func() unix.Errno {
			return sys(unix.SYS_KEXEC_FILE_LOAD, ^uintptr(0), ^uintptr(0), 0, 0, 0x80000000)
		}, eperm},
		{"init_module", func() unix.Errno { return sys(unix.SYS_INIT_MODULE, 0, 0, cstr("")) }, eperm},
		{"finit_module", func() unix.Errno { return sys(unix.SYS_FINIT_MODULE, ^uintptr(0), cstr(""), 0) }, eperm},
		{"delete_module", func() unix.Errno {
			return sys(unix.SYS_DELETE_MODULE, cstr("telehandler_probe_none"), unix.O_NONBLOCK)
		}, eperm},
		// Wrong magic numbers: EINVAL, were it let through.
		{"reboot", func() unix.Errno { return sys(unix.SYS_REBOOT, 0, 0, 0, 0) }, eperm},
		{"swapon", func() unix.Errno { return sys(unix.SYS_SWAPON, cstr(missing), 0) }, eperm},
		{"swapoff", func() unix.Errno { return sys(unix.SYS_SWAPOFF, cstr(missing)) }, eperm},
		{"acct", func() unix.Errno { return sys(unix.SYS_ACCT, cstr(missing)) }, eperm},
		// CLOCK_MONOTONIC cannot be set: EINVAL, were it let through.
		{"clock_settime", func() unix.Errno {
			return sys(unix.SYS_CLOCK_SETTIME, unix.CLOCK_MONOTONIC, ptr(&ts))
		}, eperm},
		{"settimeofday", func() unix.Errno { return sys(unix.SYS_SETTIMEOFDAY, 0, 0) }, eperm},
		{"adjtimex", func() unix.Errno { return sys(unix.SYS_ADJTIMEX, ptr(&timex)) }, eperm},
		{"clock_adjtime", func() unix.Errno { return sys(unix.SYS_CLOCK_ADJTIME, unix.CLOCK_REALTIME, ptr(&timex)) }, eperm},
		{"open_by_handle_at", func() unix.Errno { return sys(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0) }, eperm},
		// SYSLOG_ACTION_SIZE_BUFFER: a query.
		{"syslog", func() unix.Errno { return sys(unix.SYS_SYSLOG, 10, 0, 0) }, eperm},
		{"personality(ADDR_NO_RANDOMIZE)", func() unix.Errno { return sys(unix.SYS_PERSONALITY, 0x0040000) }, eperm},
		{"personality(0xffff)", func() unix.Errno { return sys(unix.SYS_PERSONALITY, 0xffff) }, eperm},
		{"lookup_dcookie", func() unix.Errno { return sys(unix.SYS_LOOKUP_DCOOKIE, 0, 0, 0) }, eperm},
		{"quotactl", func() unix.Errno { return sys(unix.SYS_QUOTACTL, 0, 0, 0, 0) }, eperm},
		{"sethostname", func() unix.Errno { return sys(unix.SYS_SETHOSTNAME, cstr("x"), 1) }, eperm},
		{"get_mempolicy", func() unix.Errno { return sys(unix.SYS_GET_MEMPOLICY, 0, 0, 0, 0, 0) }, eperm},
		{"kcmp", func() unix.Errno { return sys(unix.SYS_KCMP, 1, 1, 0, 0, 0) }, eperm},
		{"pidfd_getfd", func() unix.Errno { return sys(unix.SYS_PIDFD_GETFD, ^uintptr(0), 0, 0) }, eperm},
		{"socket(AF_ALG)", func() unix.Errno { return sys(unix.SYS_SOCKET, unix.AF_ALG, unix.SOCK_SEQPACKET, 0) }, eperm},
		{"socket(AF_VSOCK)", func() unix.Errno { return sys(unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0) }, eperm},
		// The kernel reads family as an int: 1<<32|AF_ALG is AF_ALG.
		{"socket(1<<32|AF_ALG)", func() unix.Errno {
			return sys(unix.SYS_SOCKET, 1<<32|unix.AF_ALG, unix.SOCK_SEQPACKET, 0)
		}, eperm},
	}
	return append(probes, archSeccompProbes()...)
}

// runSeccompProbe is the "seccomp-probe" helper: it makes every probe's
// call and prints "name: errno" (or "name: ok"), then checks that the calls
// the filter must allow with arguments work.
func runSeccompProbe() int {
	for _, p := range seccompProbes() {
		res := "ok"
		if e := p.call(); e != 0 {
			res = unix.ErrnoName(e)
		}
		fmt.Printf("%s: %s\n", p.name, res)
	}
	for _, a := range []struct {
		name string
		call func() unix.Errno
	}{
		{"personality(query)", func() unix.Errno { return sys(unix.SYS_PERSONALITY, 0xffffffff) }},
		{"personality(PER_LINUX)", func() unix.Errno { return sys(unix.SYS_PERSONALITY, 0) }},
		{"socket(AF_UNIX)", func() unix.Errno { return sys(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM, 0) }},
		{"socket(AF_INET)", func() unix.Errno { return sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM, 0) }},
		// Another ioctl on /dev/null: the filter lets it through to the
		// kernel, which answers ENOTTY.
		{"ioctl(TCGETS)", func() unix.Errno {
			var tio unix.Termios
			return sys(unix.SYS_IOCTL, 0, unix.TCGETS, ptr(&tio))
		}},
		// What a tracer skipping a call leaves: no call, ENOSYS, not a kill.
		{"syscall(-1)", func() unix.Errno { return sys(^uintptr(0)) }},
	} {
		res := "ok"
		if e := a.call(); e != 0 {
			res = unix.ErrnoName(e)
		}
		fmt.Printf("allowed %s: %s\n", a.name, res)
	}
	return 0
}

// runGoWork is the "gowork" helper: an ordinary Go program's work,
// goroutines, the garbage collector, timers, files and a child process.
func runGoWork() int {
	var wg sync.WaitGroup
	sums := make([]int, 8)
	for i := range sums {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([][]byte, 0, 64)
			for j := range 200000 {
				sums[i] += j % (i + 1)
				if j%5000 == 0 {
					buf = append(buf, make([]byte, 4096))
				}
			}
			_ = buf
		}()
	}
	wg.Wait()
	runtime.GC()
	f, err := os.CreateTemp("", "telehandler-gowork-")
	if err != nil {
		fmt.Println("create temp:", err)
		return 1
	}
	defer os.Remove(f.Name())
	fmt.Fprintln(f, "hello")
	f.Close()
	if b, err := os.ReadFile(f.Name()); err != nil || string(b) != "hello\n" {
		fmt.Println("read back:", err, string(b))
		return 1
	}
	// os/exec: clone (CLONE_VFORK|CLONE_VM|CLONE_PIDFD), execve, pidfd, wait.
	out, err := exec.Command("/bin/sh", "-c", "echo child $((6*7))").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "child 42" {
		fmt.Printf("child: %v %q\n", err, out)
		return 1
	}
	fmt.Println("go ok", len(sums))
	return 0
}

// runX32 is the "seccomp-x32" helper: one call of the x32 ABI, which the
// filter answers by killing the process (SIGSYS).
func runX32() int {
	if seccompForeignBit == 0 {
		fmt.Println("no x32 ABI on", runtime.GOARCH)
		return 3
	}
	_, _, e := unix.RawSyscall(unix.SYS_GETPID|seccompForeignBit, 0, 0, 0)
	fmt.Println("x32 getpid survived:", e)
	return 0
}

// runPersonality is the "personality" helper: sets ADDR_NO_RANDOMIZE,
// allowed only without the filter.
func runPersonality() int {
	old, _, e := unix.Syscall(unix.SYS_PERSONALITY, 0x0040000, 0, 0)
	if e != 0 {
		fmt.Println("personality:", unix.ErrnoName(e))
		return 1
	}
	unix.Syscall(unix.SYS_PERSONALITY, old, 0, 0)
	fmt.Println("personality: ok")
	return 0
}

// seccompStatus is the "Seccomp:" mode in the job's /proc/self/status (0 off,
// 2 filter), as grep prints it.
func seccompMode(t *testing.T, out string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Seccomp:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no Seccomp: line in %q", out)
	return ""
}

func helperSpec(t *testing.T, helper string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Path: exe, Env: []string{helperEnv + "=" + helper, "PATH=" + defaultPath}}
}

// TestSeccompRefusesKernelSurface: a root job makes every refused call
// and gets EPERM (ENOSYS for clone3), and the calls allowed by argument
// still work.
func TestSeccompRefusesKernelSurface(t *testing.T) {
	ts := newTestSandbox(t)
	j := ts.startJob(t, Limits{}, helperSpec(t, "seccomp-probe"))
	state, out := j.wait(t)
	if state.ExitCode != 0 {
		t.Fatalf("probe: %+v, output %q", state, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name, res, ok := strings.Cut(line, ": "); ok {
			got[name] = res
		}
	}
	for _, p := range seccompProbes() {
		if want := unix.ErrnoName(p.want); got[p.name] != want {
			t.Errorf("%s: %q, want %s", p.name, got[p.name], want)
		}
	}
	for _, name := range []string{"personality(query)", "personality(PER_LINUX)", "socket(AF_UNIX)", "socket(AF_INET)"} {
		if got["allowed "+name] != "ok" {
			t.Errorf("%s: %q, want ok", name, got["allowed "+name])
		}
	}
	if got["allowed ioctl(TCGETS)"] != "ENOTTY" {
		t.Errorf("ioctl(TCGETS) on /dev/null: %q, want ENOTTY (let through)", got["allowed ioctl(TCGETS)"])
	}
	if got["allowed syscall(-1)"] != "ENOSYS" {
		t.Errorf("syscall(-1): %q, want ENOSYS", got["allowed syscall(-1)"])
	}
	if t.Failed() {
		t.Logf("probe output:\n%s", out)
	}
}

// TestSeccompForeignABIKills: an x32 call (amd64) kills the job with
// SIGSYS. (i386 and arm32 calls need another instruction set; the unit
// test TestSeccompForeignArchitectures covers them.)
func TestSeccompForeignABIKills(t *testing.T) {
	if seccompForeignBit == 0 {
		t.Logf("%s has no ABI that shares its AUDIT_ARCH: nothing to call", runtime.GOARCH)
		return
	}
	ts := newTestSandbox(t)
	j := ts.startJob(t, Limits{}, helperSpec(t, "seccomp-x32"))
	state, out := j.wait(t)
	if state.Signal != int(unix.SIGSYS) {
		t.Errorf("x32 call: %+v, output %q; want killed by SIGSYS", state, out)
	}
}

// TestSeccompUnshareCommand: util-linux's (or busybox's) unshare -Ur, the
// attack of issue 9, fails. Run when the host has an unshare command.
func TestSeccompUnshareCommand(t *testing.T) {
	ts := newTestSandbox(t)
	path, err := exec.LookPath("unshare")
	if err != nil {
		t.Logf("no unshare command on this host; the probe test makes the call itself")
		return
	}
	j := ts.startJob(t, Limits{}, Spec{Path: path, Args: []string{"-Ur", "id", "-u"}})
	state, out := j.wait(t)
	if state.ExitCode == 0 || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("unshare -Ur id -u: %+v, output %q; want Operation not permitted", state, out)
	}
}

// TestSeccompOrdinaryPrograms: the shell, coreutils, a Go program (this
// test binary, and a static one), and python3, strace and git when the
// host has them, work under the filter, as root and as another user.
func TestSeccompOrdinaryPrograms(t *testing.T) {
	ts := newTestSandbox(t)
	run := func(name string, spec Spec, want string) {
		t.Helper()
		j := ts.startJob(t, Limits{}, spec)
		state, out := j.wait(t)
		if state.ExitCode != 0 || !strings.Contains(out, want) {
			t.Errorf("%s: %+v, output %q; want exit 0 and %q", name, state, out, want)
		}
	}

	script := sh(`grep Seccomp: /proc/self/status
echo hello world | tr a-z A-Z | sort | head -n 1
ls / >/dev/null && echo ls ok
seq 3 | xargs echo
d=$(mktemp -d) && echo data >"$d/f" && cp "$d/f" "$d/g" && cat "$d/g" && rm -r "$d"
date +%Y >/dev/null && sleep 0.01 && echo done`)
	j := ts.startJob(t, Limits{}, script)
	state, out := j.wait(t)
	if state.ExitCode != 0 || seccompMode(t, out) != "2" ||
		!strings.Contains(out, "HELLO WORLD\nls ok\n1 2 3\ndata\ndone") {
		t.Errorf("shell and coreutils: %+v, output %q; want Seccomp 2 and every line", state, out)
	}
	nobody := uint32(65534)
	script = sh(`grep Seccomp: /proc/self/status; id -u`)
	script.UID, script.GID = &nobody, &nobody
	j = ts.startJob(t, Limits{}, script)
	if state, out := j.wait(t); state.ExitCode != 0 || seccompMode(t, out) != "2" || !strings.Contains(out, "65534") {
		t.Errorf("as 65534: %+v, output %q; want Seccomp 2", state, out)
	}

	run("Go program (this test binary)", helperSpec(t, "gowork"), "go ok 8")
	if static := staticGoProgram(t); static != "" {
		run("static Go program", Spec{Path: static}, "static go ok")
	}

	// Looked up in the job's PATH: the host's may name directories jobs do
	// not see (a pyenv under /root, say).
	if py, err := lookPath("python3", []string{"PATH=" + defaultPath}); err == nil {
		run("python3", Spec{Path: py, Args: []string{"-c", `
import hashlib, json, os, subprocess, tempfile, threading
r = []
ts = [threading.Thread(target=lambda: r.append(hashlib.sha256(b"x" * 100000).hexdigest())) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
with tempfile.TemporaryDirectory() as d:
    open(os.path.join(d, "f"), "w").write(json.dumps({"n": len(set(r))}))
    n = json.load(open(os.path.join(d, "f")))["n"]
print("python ok", n, subprocess.run(["echo", "sub"], capture_output=True, text=True).stdout.strip())
`}}, "python ok 1 sub")
	} else {
		t.Logf("no python3 on this host")
	}

	// ptrace is allowed: strace works, and so does its fault injection,
	// which skips the call by setting its number to -1.
	if strace, err := lookPath("strace", []string{"PATH=" + defaultPath}); err == nil {
		run("strace", sh(strace+` -qq -f -o /dev/null /bin/true && echo strace ok
`+strace+` -qq -o /dev/null -e inject=uname:error=EPERM uname 2>/dev/null; echo "injected rc=$?"`), "strace ok\ninjected rc=1")
	} else {
		t.Logf("no strace on this host")
	}

	if git, err := lookPath("git", []string{"PATH=" + defaultPath}); err == nil {
		run("git", Spec{Path: "/bin/sh", Args: []string{"-c", `set -e
d=$(mktemp -d); cd "$d"; export HOME="$d"
` + git + ` init -q
echo hello >f
` + git + ` add f
` + git + ` -c user.name=t -c user.email=t@example.com commit -qm first
echo "git ok $(` + git + ` log --oneline | wc -l) $(` + git + ` status --short | wc -l)"
cd /; rm -rf "$d"`}}, "git ok 1 0")
	} else {
		t.Logf("no git on this host")
	}
}

// staticGoProgram is a statically linked Go program with goroutines: this
// test binary when it is one (CGO_ENABLED=0, as in the cgroup v2 VM), else
// one built here from a tiny source (the host's -race test binary is
// dynamic). "" when this binary is already static: gowork covered it.
func staticGoProgram(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	dynamic := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			dynamic = true
		}
	}
	f.Close()
	if !dynamic {
		t.Logf("this test binary is static: the Go program test ran a static Go binary")
		return ""
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	src := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(src, []byte(`package main

import (
	"fmt"
	"sync"
)

func main() {
	var wg sync.WaitGroup
	sums := make([]int, 4)
	for i := range sums {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 1000000 {
				sums[i] += j
			}
		}()
	}
	wg.Wait()
	fmt.Println("static go ok", sums[0] == sums[3])
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Next to this test binary: wherever the job can run that, it can
	// run this.
	bin := filepath.Join(filepath.Dir(exe), "seccomp-static-go")
	cmd := exec.Command(goCmd, "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build a static Go program: %v\n%s", err, out)
	}
	t.Cleanup(func() { os.Remove(bin) })
	return bin
}

// TestSeccompOff: with Config.DisableSeccomp (serve --seccomp=off), a job
// runs without a filter.
func TestSeccompOff(t *testing.T) {
	ts := newTestSandbox(t)
	cfg := testConfig(t, ts.rec)
	cfg.DisableSeccomp = true
	ts.setConfig(t, cfg)
	j := ts.startJob(t, Limits{}, sh(`grep Seccomp: /proc/self/status`))
	if state, out := j.wait(t); state.ExitCode != 0 || seccompMode(t, out) != "0" {
		t.Errorf("Seccomp with the filter off: %+v, output %q; want 0", state, out)
	}
	j = ts.startJob(t, Limits{}, helperSpec(t, "personality"))
	if state, out := j.wait(t); state.ExitCode != 0 || !strings.Contains(out, "personality: ok") {
		t.Errorf("personality(ADDR_NO_RANDOMIZE) with the filter off: %+v, output %q; want ok", state, out)
	}
}
