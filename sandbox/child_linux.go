package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSpecSize bounds the Spec the shim accepts on specFD.
const maxSpecSize = 16 << 20

// RunChild is the shim: the `__child` role of the binary, run by Start in
// fresh namespaces (see protocol.go for the contract). It reads the Spec,
// moves its thread into the job's cgroup (v1, when the spec lists the tasks
// files), enters a new cgroup namespace rooted at the job's cgroup, makes mount
// propagation private, builds the job's view (view.go), brings lo up,
// limits the capabilities, sets the hostname, switches credentials, joins
// a fresh session keyring, sets no_new_privs, marks every fd but 0-2
// close-on-exec, installs the seccomp filter and execs the user's command.
// A warm shim (argv[2] "warm", pool_linux.go) does the steps up to the
// capabilities before its job comes. It never returns: it execs,
// or reports the failure on errorFD and exits with childFailedExit.
//
// The command becomes PID 1 of its PID namespace. The kernel then drops
// signals PID 1 has no handler for, SIGTERM included, when they come from
// inside the namespace, and when PID 1 exits the kernel kills every other
// process of the namespace.
func RunChild() {
	// Namespaces and credentials are per thread until exec; keep this
	// goroutine on one thread from here to execve.
	runtime.LockOSThread()
	// Go keeps SIGHUP and SIGINT ignored when it starts with them ignored
	// (a parent under nohup, a test binary), and execve keeps an ignored
	// signal ignored: the job would inherit that. Handled signals are reset
	// to their default at execve, as every other signal the runtime
	// handles is. Nothing sends these to a shim (a warm one is killed with
	// SIGKILL).
	signal.Notify(make(chan os.Signal, 1), unix.SIGHUP, unix.SIGINT)

	err := runChild()
	report(err)
	os.Exit(childFailedExit)
}

// stepError is a failed step of the shim.
type stepError struct {
	kind  string // kindExec or kindShim
	stage string
	err   error
}

func (e *stepError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

func shimErr(stage string, err error) error {
	return &stepError{kind: kindShim, stage: stage, err: err}
}

func execErr(stage string, err error) error {
	return &stepError{kind: kindExec, stage: stage, err: err}
}

// runChild does the shim's work. It returns only on failure.
func runChild() error {
	// Refuse to run anywhere but in the fresh PID namespace Start made: run
	// by hand on a host it would make the host's mounts private and cover
	// its /proc.
	if os.Getpid() != 1 {
		return shimErr("check namespace", errors.New("not PID 1 of a new PID namespace: the shim is started only by the sandbox"))
	}
	// The parent-death signal Start set at clone time is per thread: only
	// the process's initial thread has it, and this goroutine may be locked
	// to another one (main does not always run there). Arm it on the thread
	// that will exec. Had the server died before, the spec read below
	// sees EOF and the shim exits.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return shimErr("set parent-death signal", err)
	}

	if len(os.Args) > 2 && os.Args[2] == warmArg {
		return runWarm()
	}
	// The blocking read is also the "continue" signal: the parent writes
	// once the job's cgroup exists (and, on v1 without tasks files, once it
	// has moved the shim into it).
	spec, err := readSpec()
	if err != nil {
		return err
	}
	// v1: the thread that will exec the command moves itself into the
	// job's cgroup in every hierarchy before it does anything else.
	tasks := spec.CgroupTasks
	if spec.Init {
		tasks = initCgroupFiles(tasks) // the init outlives the exec: all its threads join
	}
	if err := joinCgroup(tasks); err != nil {
		return err
	}
	home, err := enterView(spec.View, spec.ResolvConf)
	if err != nil {
		return err
	}
	return runJob(spec, home)
}

// runWarm is a warm shim's life (pool_linux.go, protocol.go): it reads the
// warm spec, joins its cgroup (v1; cloned in on v2), builds the view,
// becomes the job's user, says it is ready and blocks until the job's
// spec and stdio come on warmFD (or it is killed: the pool recycles it, or
// the server died). Then it goes on as any shim.
func runWarm() error {
	ws, err := readWarmSpec()
	if err != nil {
		return err
	}
	if err := joinCgroup(ws.CgroupTasks); err != nil {
		return err
	}
	home, err := enterView(ws.View, "")
	if err != nil {
		return err
	}
	// The job's user is the one the view was built for: a dynamic user's
	// (its user keyring cleared), with the default hostname.
	uid, gid := ws.View.HomeUID, ws.View.HomeGID
	if _, err := becomeJobUser(shimSpec{Spec: Spec{UID: &uid, GID: &gid, DynamicUser: true}}); err != nil {
		return err
	}
	writeAll(warmFD, []byte{warmReady})
	spec, err := recvJobSpec()
	if err != nil {
		return err
	}
	// The parent sends only what a warm shim can do: its view, user and
	// hostname are set, it has no terminal socket and no network.
	if spec.TTY || spec.ResolvConf != "" || spec.Image != "" || spec.Hostname != "" ||
		len(spec.CgroupTasks) > 0 || len(spec.Seccomp) > 0 {
		return shimErr("read spec", errors.New("a warm shim cannot run a job with a terminal, a network, an image, a hostname, a cgroup to join or a filter of its own"))
	}
	if !spec.DynamicUser || spec.UID == nil || spec.GID == nil || *spec.UID != uid || *spec.GID != gid {
		return shimErr("read spec", errors.New("a warm shim runs its job as the dynamic user it was warmed for"))
	}
	spec.Seccomp = ws.Seccomp
	return execJob(spec, home, -1)
}

// enterView does the steps that do not depend on the job's command or
// user (a warm shim does them before its job comes): it roots a new cgroup
// namespace at the shim's cgroup, makes mount propagation private, builds
// the job's view (with resolvConf, a host path, over /etc/resolv.conf when
// it is not ""), brings lo up and limits the capability bounding set. It
// returns the job's home.
func enterView(v view, resolvConf string) (string, error) {
	// Now that the shim is in the job's cgroup (v2: cloned into it; v1: its
	// thread wrote itself in just above, or the parent moved it before it
	// sent the spec), a new cgroup namespace is rooted
	// there: the job sees its cgroup as "/" in /proc/self/cgroup, and on v2
	// (mounted nsdelegate, as systemd does) even a root job cannot move
	// itself out of it. Created here, not at clone time, where it would be
	// rooted at the server's cgroup.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return "", shimErr("new cgroup namespace", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", shimErr("make mounts private", err)
	}
	// A networked job's resolv.conf (child_network_linux.go), taken while
	// the host's paths are in reach and put in place once the view is.
	resolv, err := openResolvConf(resolvConf)
	if err != nil {
		return "", shimErr("mount resolv.conf", err)
	}
	// The job's file system view (view.go): the host's root (or an image)
	// read-only, private tmpfs mounts, a minimal /dev, a fresh /proc and
	// /sys with only the job's own cgroup, the server's files hidden.
	home, err := buildView(v)
	if err != nil {
		return "", err
	}
	if err := mountResolvConf(resolv); err != nil {
		return "", shimErr("mount resolv.conf", err)
	}
	if err := loopbackUp(); err != nil {
		return "", shimErr("bring lo up", err)
	}
	// Out of the bounding set, CAP_SYS_ADMIN and every other capability but
	// jobCapabilities are never among what the command gets: not even a
	// root job can remount its view or its cgroups writable, or mount
	// anything else. (The shim's own effective capabilities, which the
	// steps up to the credential switch use, stay.)
	if err := limitBoundingSet(); err != nil {
		return "", err
	}
	return home, nil
}

// runJob is the shim's work once it is in its cgroup and view: from the
// terminal to the exec. It returns only on failure.
func runJob(spec shimSpec, home string) error {
	slave, err := becomeJobUser(spec)
	if err != nil {
		return err
	}
	return execJob(spec, home, slave)
}

// becomeJobUser opens the job's terminal (Spec.TTY; it returns the slave,
// else -1), sets the hostname, switches to the job's user and joins a fresh
// session keyring. A warm shim does it before its job comes.
func becomeJobUser(spec shimSpec) (int, error) {
	var err error
	// Spec.TTY: the job's terminal, in its view's own devpts instance
	// (pty_linux.go); the master goes to the parent now, the slave becomes
	// the command's terminal right before exec.
	slave := -1
	if spec.TTY {
		if slave, err = openTTY(spec); err != nil {
			return -1, err
		}
	}
	hostname := spec.Hostname
	if hostname == "" {
		hostname = defaultHostname
	}
	if err := unix.Sethostname([]byte(hostname)); err != nil {
		return -1, shimErr("set hostname", err)
	}
	// As root, so that it cannot fail; the job's own Dir is entered after
	// the credential switch so that its permissions are the job user's.
	if err := unix.Chdir("/"); err != nil {
		return -1, shimErr("chdir /", err)
	}

	if err := switchCredentials(spec.UID, spec.GID); err != nil {
		return -1, err
	}
	if spec.UID == nil {
		// A root job keeps Docker's 14 capabilities and nothing else.
		if err := dropRootCapabilities(); err != nil {
			return -1, err
		}
	}
	if err := joinSessionKeyring(spec.DynamicUser); err != nil {
		return -1, err
	}
	return slave, nil
}

// execJob enters the job's directory, marks every fd but 0-2 (and the
// terminal's slave, when slave >= 0) close-on-exec, installs the seccomp
// filter and execs the command (or starts it under the shim's init). It
// returns only on failure.
func execJob(spec shimSpec, home string, slave int) error {
	dir := spec.Dir
	if dir == "" {
		dir = home
	}
	if err := unix.Chdir(dir); err != nil {
		return execErr("chdir", fmt.Errorf("working directory %q: %w", dir, err))
	}

	env := jobEnv(spec.Env, home)
	if spec.TTY {
		env = withTERM(env)
	}
	path, err := lookPath(spec.Path, env)
	if err != nil {
		return execErr("look up command", err)
	}

	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return shimErr("set no_new_privs", err)
	}
	if slave >= 0 {
		if err := useTTY(slave); err != nil {
			return err
		}
	}
	if err := closeOnExecFrom(3); err != nil {
		return shimErr("mark fds close-on-exec", err)
	}
	// The Go runtime may have blocked signals on this thread; the mask
	// survives execve, the job must start with none blocked.
	var none unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &none, nil); err != nil {
		return shimErr("unblock signals", err)
	}
	// Last: from here on only the calls the filter allows (see
	// seccomp_linux.go), on this thread, which execs the command.
	if err := installSeccomp(spec.Seccomp, spec.Init); err != nil {
		return shimErr("install seccomp filter", err)
	}

	argv := append([]string{spec.Path}, spec.Args...)
	// From here on, EOF on the error pipe means the exec succeeded.
	writeAll(errorFD, []byte{execMarker})
	if spec.Init {
		err = runInit(path, argv, env, slave >= 0) // returns only if the command could not start
	} else {
		err = unix.Exec(path, argv, env)
	}
	return classifyExec(spec.Path, err)
}

// joinCgroup writes "0" (this thread) to each tasks file. Only the calling
// thread moves: the shim's other threads stay behind and end at execve, so
// the command runs inside the cgroup from its first instruction, as
// DESIGN.md requires. The files are opened here, by their host paths: the
// shim's mount namespace is still a copy of the host's.
func joinCgroup(tasks []string) error {
	for _, p := range tasks {
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return shimErr("join cgroup", fmt.Errorf("open %s: %w", p, err))
		}
		_, err = unix.Write(fd, []byte("0"))
		unix.Close(fd)
		if err != nil {
			return shimErr("join cgroup", fmt.Errorf("write %s: %w", p, err))
		}
	}
	return nil
}

// readSpec reads the JSON Spec from specFD to EOF and closes it.
func readSpec() (shimSpec, error) {
	f := os.NewFile(specFD, "spec")
	if f == nil {
		return shimSpec{}, shimErr("read spec", errors.New("spec fd is not open"))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSpecSize+1))
	f.Close()
	if err != nil {
		return shimSpec{}, shimErr("read spec", err)
	}
	return decodeSpec(data)
}

// decodeSpec decodes the spec document read from specFD, which must hold a
// command and be at most maxSpecSize bytes.
func decodeSpec(data []byte) (shimSpec, error) {
	var spec shimSpec
	if len(data) > maxSpecSize {
		return spec, shimErr("read spec", fmt.Errorf("spec larger than %d bytes", maxSpecSize))
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return spec, shimErr("read spec", err)
	}
	if spec.Path == "" {
		return spec, execErr("read spec", errors.New("empty command"))
	}
	return spec, nil
}

// loopbackUp sets IFF_UP on lo, as `ip link set lo up` would.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// switchCredentials drops supplementary groups and sets the gid, then the
// uid, when given. A credential change clears the parent-death signal, so it
// is armed again.
func switchCredentials(uid, gid *uint32) error {
	if uid == nil && gid == nil {
		return nil
	}
	if err := unix.Setgroups(nil); err != nil {
		return execErr("set credentials", fmt.Errorf("setgroups: %w", err))
	}
	if gid != nil {
		if err := unix.Setgid(int(*gid)); err != nil {
			return execErr("set credentials", fmt.Errorf("setgid %d: %w", *gid, err))
		}
	}
	if uid != nil {
		if err := unix.Setuid(int(*uid)); err != nil {
			return execErr("set credentials", fmt.Errorf("setuid %d: %w", *uid, err))
		}
	}
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return shimErr("set parent-death signal", err)
	}
	return nil
}

// lookPath finds file like exec.LookPath, but in the PATH of the job's
// environment (defaultPath when it has none). Relative PATH entries are
// skipped. A name with a slash is returned as is: execve reports its errors.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	pathList := defaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathList = v // the last one wins, as in getenv
		}
	}
	for _, dir := range filepath.SplitList(pathList) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", &execError{name: file, err: unix.ENOENT, msg: "executable file not found in $PATH"}
}

// isExecutable reports whether p is a regular file the current (already
// switched) user may execute.
func isExecutable(p string) bool {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	return unix.Faccessat(unix.AT_FDCWD, p, unix.X_OK, unix.AT_EACCESS) == nil
}

// execError names the command that could not be executed.
type execError struct {
	name string
	err  unix.Errno
	msg  string // "" = the errno's text
}

func (e *execError) Error() string {
	msg := e.msg
	if msg == "" {
		msg = e.err.Error()
	}
	return fmt.Sprintf("exec %q: %s", e.name, msg)
}
func (e *execError) Unwrap() error { return e.err }

// classifyExec turns execve's error into a step error: problems with the
// command itself are the caller's (kindExec), the rest the sandbox's.
func classifyExec(name string, err error) error {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return shimErr("exec", err)
	}
	switch errno {
	case unix.ENOENT, unix.EACCES, unix.ENOEXEC, unix.ENOTDIR, unix.EISDIR, unix.ELOOP,
		unix.ENAMETOOLONG, unix.ETXTBSY, unix.EPERM, unix.E2BIG, unix.ELIBBAD:
		return execErr("exec", &execError{name: name, err: errno})
	}
	return shimErr("exec", &execError{name: name, err: errno})
}

// closeOnExecFrom marks every fd >= first close-on-exec, errorFD included,
// so that a successful exec closes the error pipe and leaks nothing.
func closeOnExecFrom(first int) error {
	err := unix.CloseRange(uint(first), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	// Kernels before 5.11: walk /proc/self/fd (the fresh /proc of our
	// namespace). The directory's own fd is marked too; it is closed here.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < first {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil && !errors.Is(err, unix.EBADF) {
			return err
		}
	}
	return nil
}

// report writes err as a childError on errorFD. Nothing else is possible if
// that fails: the parent then sees the shim exit with childFailedExit.
func report(err error) {
	ce := childError{Kind: kindShim, Stage: "shim", Message: err.Error()}
	var se *stepError
	if errors.As(err, &se) {
		ce.Kind, ce.Stage = se.kind, se.stage
		ce.Message = se.err.Error()
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		ce.Errno = int(errno)
	}
	data, mErr := json.Marshal(ce)
	if mErr != nil {
		return
	}
	writeAll(errorFD, data)
}

// writeAll writes data to fd, giving up silently on an error: the parent
// then sees the shim end without a report.
func writeAll(fd int, data []byte) {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		data = data[n:]
	}
}

// jobEnv is the command's environment: env, or a minimal PATH when env is
// nil, with HOME set to the job's home unless env sets it.
func jobEnv(env []string, home string) []string {
	if env == nil {
		env = []string{"PATH=" + defaultPath}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "HOME=") {
			return env
		}
	}
	return append(env[:len(env):len(env)], "HOME="+home)
}
