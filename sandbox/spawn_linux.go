package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// defaultStartTimeout is Config.StartTimeout's default: the shim normally
// execs the command within milliseconds; this only keeps a wedged shim (a
// hung file system under the working directory, a frozen cgroup) from
// blocking Start forever.
const defaultStartTimeout = 30 * time.Second

// Sandbox starts commands in fresh namespaces, each inside its own cgroup.
// It holds no per-job state: a Process owns its job. Safe for concurrent use.
type Sandbox struct {
	cgroups      Cgroups
	exe          string
	startTimeout time.Duration
	// seccomp is the compiled filter every shim installs (shimSpec.Seccomp);
	// nil when Config.DisableSeccomp.
	seccomp []byte
	// view is the part of every job's view that Config fixes.
	view   view
	images map[string]string
	uids   *uidPool
	// cgroupMounts are the host's cgroup file systems, to name the job's
	// cgroup directories in its view.
	cgroupMounts []mountInfo
	// pool keeps warm shims (pool_linux.go); nil without Config.ShimPool.
	pool *shimPool
}

// New returns a Sandbox for cfg, filling in the defaults.
func New(cfg Config) (*Sandbox, error) {
	cgroups := cfg.Cgroups
	if cgroups == nil {
		var err error
		if cgroups, err = NewCgroups(CgroupConfig{}); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	exe := cfg.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	startTimeout := cfg.StartTimeout
	if startTimeout <= 0 {
		startTimeout = defaultStartTimeout
	}
	// Compiled once here, not per job: the shims only install it.
	var seccomp []byte
	if !cfg.DisableSeccomp {
		var err error
		if seccomp, err = seccompProgram(); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	v, err := cfg.baseView()
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := cfg.checkImages(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	uids := cfg.UIDs
	if uids == (UIDRange{}) {
		uids = DefaultUIDRange
	}
	if err := uids.validate("/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid"); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	mounts, err := readMountinfo(defaultMountinfo)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	var cgroupMounts []mountInfo
	for _, m := range mounts {
		if m.fsType == "cgroup" || m.fsType == "cgroup2" {
			cgroupMounts = append(cgroupMounts, m)
		}
	}
	if cfg.ShimPool < 0 {
		return nil, fmt.Errorf("sandbox: shim pool of %d: want 0 (none) or more", cfg.ShimPool)
	}
	if err := cfg.ShimPoolLimits.Validate(); err != nil {
		return nil, fmt.Errorf("sandbox: shim pool limits: %w", err)
	}
	s := &Sandbox{
		cgroups: cgroups, exe: exe, startTimeout: startTimeout,
		seccomp: seccomp,
		view:    v, images: maps.Clone(cfg.Images), uids: newUIDPool(uids), cgroupMounts: cgroupMounts,
	}
	// Each warm shim holds a uid of the range: at most half of it, so
	// that the jobs that start cold (a terminal, an image, a network)
	// always find uids the pool does not hold.
	if n := min(cfg.ShimPool, int(min(uids.Count/2, 1<<20))); n > 0 {
		s.pool = newShimPool(s, n, cfg.ShimPoolIdle, cfg.ShimPoolLimits)
	}
	return s, nil
}

// Cgroups returns the cgroup manager the sandbox creates jobs' cgroups with
// (for Cleanup at server start, for example).
func (s *Sandbox) Cgroups() Cgroups { return s.cgroups }

// Start creates the cgroup cfg.Name with cfg.Limits, starts the shim in new
// PID, mount, network, UTS, IPC (and cgroup) namespaces inside that cgroup
// (on v1 both at once: the shim boots while the cgroup is made), hands it
// spec, and returns once the user's command has been exec'd: the
// returned Process is running the command. Not one instruction of the command runs
// outside its cgroup (v2: the shim is cloned into it; v1: the shim's thread
// that execs the command moves itself into it first thing, see protocol.go).
//
// The command sees the view view.go describes (the host's root read-only, or
// the image spec.Image names), and runs as spec's user: with
// spec.DynamicUser, a uid of its own from Config.UIDs, given back once the
// job ended and its cgroup is gone.
//
// Errors wrap ErrExec when the command could not be started (missing binary,
// not executable, bad working directory, bad credentials), ErrShim when the
// sandbox could not be set up (or the shim did not exec the command within
// Config.StartTimeout: it is killed), ErrUnknownImage, ErrNoUID, or
// Cgroups.Create's error. On error nothing is left behind: the shim is
// reaped and the cgroup removed.
//
// The shim also enters a new cgroup namespace once it is in the job's cgroup,
// so the job sees its own cgroup as "/" in /proc/self/cgroup and, on v2
// mounted with nsdelegate, cannot move itself out even as root.
func (s *Sandbox) Start(spec Spec, cfg StartConfig) (*Process, error) {
	if spec.Path == "" {
		return nil, fmt.Errorf("%w: empty command", ErrExec)
	}
	v := s.view
	if spec.Image != "" {
		dir, ok := s.images[spec.Image]
		if !ok {
			name := strconv.Quote(spec.Image)
			if !validImageName().MatchString(spec.Image) {
				name = "(not a valid image name)"
			}
			return nil, fmt.Errorf("%w %s: this server has %s", ErrUnknownImage, name, s.imageNames())
		}
		v.Image, v.Hide = dir, nil
	}
	if s.pool != nil && jobFitsWarm(spec, cfg) {
		w := s.pool.take()
		if w == nil {
			s.pool.refill()
		} else {
			p, ok, err := s.startWarm(w, spec, cfg)
			s.pool.refill()
			if ok {
				return p, err
			}
		}
	}
	release := func() {}
	if spec.DynamicUser {
		if spec.UID != nil || spec.GID != nil {
			return nil, fmt.Errorf("%w: a dynamic user has no fixed uid or gid", ErrExec)
		}
		uid, err := s.uids.allocate()
		if err != nil {
			return nil, err
		}
		spec.UID, spec.GID = &uid, &uid
		release = func() { s.uids.release(uid) }
	}
	v.MaskSecrets = !spec.DynamicUser
	if spec.UID != nil {
		v.HomeUID = *spec.UID
	}
	if spec.GID != nil {
		v.HomeGID = *spec.GID
	}
	return s.start(spec, cfg, v, release)
}

// start is Start once the job's uid and view are chosen. release gives the
// uid back; it is called once the job is over and its cgroup is gone (on
// error: before start returns, unless the cgroup could not be removed).
func (s *Sandbox) start(spec Spec, cfg StartConfig, v view, release func()) (*Process, error) {
	// The one layout question: a shim cloned into its cgroup (v2) needs
	// the cgroup first; one that joins by itself (v1) boots (Go runtime,
	// package init: most of a start) while the cgroup is made, and waits
	// for its spec before it joins, see Cgroup.Join.
	if s.cgroups.Version() == 2 {
		cg, err := s.createCgroup(cfg)
		if err != nil {
			release()
			return nil, err
		}
		join, err := cg.Join()
		if err != nil {
			return nil, removeOnError(cg, fmt.Errorf("%w: %w", ErrShim, err), release)
		}
		sh, err := s.startShim(join.CloneFD, cfg, spec.TTY, false)
		if err != nil {
			return nil, removeOnError(cg, err, release)
		}
		return sh.finish(cg, join, spec, s.jobView(v, cg), release, cfg.Network)
	}
	sh, err := s.startShim(-1, cfg, spec.TTY, false)
	if err != nil {
		release()
		return nil, err
	}
	cg, err := s.createCgroup(cfg)
	if err != nil {
		sh.abort()
		release()
		return nil, err
	}
	join, err := cg.Join()
	if err != nil {
		sh.abort()
		return nil, removeOnError(cg, fmt.Errorf("%w: %w", ErrShim, err), release)
	}
	if join.CloneFD >= 0 {
		// Started already, it cannot be cloned in: it is moved instead.
		unix.Close(join.CloneFD)
		join.CloneFD = -1
	}
	return sh.finish(cg, join, spec, s.jobView(v, cg), release, cfg.Network)
}

// imageNames lists the images a job may ask for, for an error message.
func (s *Sandbox) imageNames() string {
	if len(s.images) == 0 {
		return "no images (serve --image NAME=DIR registers one)"
	}
	names := slices.Sorted(maps.Keys(s.images))
	return "images " + strings.Join(names, ", ")
}

func (s *Sandbox) createCgroup(cfg StartConfig) (Cgroup, error) {
	cg, err := s.cgroups.Create(cfg.Name, cfg.Limits)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %q: %w", cfg.Name, err)
	}
	return cg, nil
}

// removeOnError removes the cgroup of a start that failed with err, and
// then gives the job's uid back (release), unless the cgroup stays.
func removeOnError(cg Cgroup, err error, release func()) error {
	if dErr := cg.Delete(); dErr != nil {
		return errors.Join(err, fmt.Errorf("remove cgroup %q: %w", cg.Name(), dErr))
	}
	release()
	return err
}

// shim is a started shim waiting for its spec: the parent half of the
// protocol in protocol.go.
type shim struct {
	cmd   *exec.Cmd
	specW *os.File // write end of the spec pipe
	errR  *os.File // read end of the error pipe
	// timeout bounds the spec write and the wait for the exec.
	timeout time.Duration
	// seccomp is sent in the spec (Sandbox.seccomp).
	seccomp []byte
	// ttySock is the parent's end of the socket the terminal's master
	// comes on (Spec.TTY), else nil.
	ttySock *os.File
	// warm is the parent's end of a warm shim's socket (warmFD), else
	// nil; stdio are the job's stdin, stdout and stderr (nil: none) it
	// sends with the spec.
	warm  *net.UnixConn
	stdio [3]*os.File
}

// startShim starts the shim in its namespaces, cloned into the cgroup
// whose directory cloneFD is when cloneFD >= 0 (v2; startShim closes it),
// with the terminal's socket at ttyFD when tty, or as a warm shim with its
// socket at warmFD when warm. The shim then blocks reading its spec (warm:
// its warmSpec).
func (s *Sandbox) startShim(cloneFD int, cfg StartConfig, tty, warm bool) (*shim, error) {
	if cloneFD >= 0 {
		defer unix.Close(cloneFD)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%w: spec pipe: %w", ErrShim, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, fmt.Errorf("%w: error pipe: %w", ErrShim, err)
	}
	// The shim has its own copies once started; ours of its ends would
	// keep the pipes open.
	defer specR.Close()
	defer errW.Close()
	var ttySock, ttyChild *os.File
	if tty {
		if ttySock, ttyChild, err = ttySocket(); err != nil {
			specW.Close()
			errR.Close()
			return nil, err
		}
		defer ttyChild.Close()
	}
	var warmConn *net.UnixConn
	var warmChild *os.File
	if warm {
		if warmConn, warmChild, err = warmSocket(); err != nil {
			specW.Close()
			errR.Close()
			return nil, err
		}
		defer warmChild.Close()
	}
	fail := func(err error) (*shim, error) {
		specW.Close()
		errR.Close()
		if ttySock != nil {
			ttySock.Close()
		}
		if warmConn != nil {
			warmConn.Close()
		}
		return nil, err
	}

	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		// The job dies with the server; the shim arms it again after a
		// credential switch (which clears it). The kernel ties it to the
		// thread that forked, which Go never ends unless a goroutine exits
		// while locked to it: nothing in Telehandler does that.
		Pdeathsig: syscall.SIGKILL,
		// A session of its own: a Ctrl-C or hangup on the server's
		// terminal reaches the server, which stops its jobs, not the jobs
		// directly.
		Setsid: true,
	}
	if cloneFD >= 0 {
		attr.UseCgroupFD = true
		attr.CgroupFD = cloneFD
	}

	extra := make([]*os.File, 2, 3)
	extra[specFD-3] = specR
	extra[errorFD-3] = errW
	args := []string{s.exe, childArg}
	switch {
	case tty:
		extra = append(extra, ttyChild) // ttyFD
	case warm:
		extra = append(extra, warmChild) // warmFD
		args = append(args, warmArg)
	}
	cmd := &exec.Cmd{
		Path:        s.exe,
		Args:        args,
		Env:         []string{"GOMAXPROCS=1"}, // the job's environment is in the spec
		ExtraFiles:  extra,
		SysProcAttr: attr,
	}
	// A nil *os.File in an io.Writer would not be nil: set only real files.
	if cfg.Stdout != nil {
		cmd.Stdout = cfg.Stdout
	}
	if cfg.Stderr != nil {
		cmd.Stderr = cfg.Stderr
	}
	if cfg.Stdin != nil {
		cmd.Stdin = cfg.Stdin
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("%w: start shim %s: %w", ErrShim, s.exe, err))
	}
	return &shim{cmd: cmd, specW: specW, errR: errR, timeout: s.startTimeout, seccomp: s.seccomp, ttySock: ttySock, warm: warmConn}, nil
}

// abort kills a shim that was never sent its spec and reaps it.
func (sh *shim) abort() {
	sh.specW.Close()
	sh.errR.Close()
	if sh.ttySock != nil {
		sh.ttySock.Close()
	}
	if sh.warm != nil {
		sh.warm.Close()
	}
	_ = sh.cmd.Process.Kill()
	_ = sh.cmd.Wait()
}

// finish connects the shim's network namespace (when network is set), then
// does send's part and starts the job's reaper. On error the network
// attachment is released too.
func (sh *shim) finish(cg Cgroup, join CgroupJoin, spec Spec, v view, release func(), network func(int) (NetworkAttachment, error)) (*Process, error) {
	att, err := attachNetwork(sh, network)
	if err != nil {
		sh.abort()
		return nil, removeOnError(cg, err, release)
	}
	spec.ResolvConf = att.ResolvConf
	p, err := sh.send(cg, join, spec, v, release)
	if err != nil {
		return nil, releaseOnError(att, err)
	}
	p.netRelease = att.Release
	go p.reap()
	return p, nil
}

// send puts the shim into cg as join says (unless it was cloned into
// it), sends it spec and v and waits until the command was exec'd. On error
// the shim is reaped and cg removed (then release is called). The returned
// Process's reaper is not started yet.
func (sh *shim) send(cg Cgroup, join CgroupJoin, spec Spec, v view, release func()) (*Process, error) {
	wire := shimSpec{Spec: spec, View: v, Seccomp: sh.seccomp}
	switch {
	case sh.warm != nil:
		// In since it was warmed, with its view built and its filter
		// read (neither is sent again).
		wire.View, wire.Seccomp = view{}, nil
	case join.CloneFD >= 0:
		// Born inside.
	case len(join.Tasks) > 0:
		// The shim's thread moves itself in, first thing after reading
		// the spec.
		wire.CgroupTasks = join.Tasks
	default:
		// The shim blocks reading the spec until it has been moved.
		if err := cg.Add(sh.cmd.Process.Pid); err != nil {
			sh.abort()
			return nil, removeOnError(cg, fmt.Errorf("%w: move shim into cgroup: %w", ErrShim, err), release)
		}
	}
	specData, err := json.Marshal(wire)
	if err != nil {
		sh.abort()
		return nil, removeOnError(cg, fmt.Errorf("%w: encode spec: %w", ErrShim, err), release)
	}

	if sh.ttySock != nil {
		defer sh.ttySock.Close()
	}
	if sh.warm != nil {
		defer sh.warm.Close()
	}
	cmd := sh.cmd
	// A wedged shim (not reading its spec, stuck before exec) must not
	// hang Start: past the deadline the write or read fails, and the shim
	// is killed below. os.Pipe's files support deadlines.
	deadline := time.Now().Add(sh.timeout)
	_ = sh.specW.SetWriteDeadline(deadline)
	_ = sh.errR.SetReadDeadline(deadline)
	var writeErr error
	if sh.warm != nil {
		writeErr = sh.sendWarm(specData, deadline)
	} else {
		_, writeErr = sh.specW.Write(specData)
		sh.specW.Close()
	}
	report, readErr := io.ReadAll(io.LimitReader(sh.errR, maxChildErrorSize))
	sh.errR.Close()
	report, execTried := bytes.CutPrefix(report, []byte{execMarker})
	if execTried && len(report) == 0 && writeErr == nil && readErr == nil {
		// The marker, then EOF: the exec closed the error pipe.
		p := &Process{cmd: cmd, cg: cg, pid: cmd.Process.Pid, release: release, init: spec.Init, done: make(chan struct{})}
		if sh.ttySock != nil {
			master, err := recvMaster(sh.ttySock)
			if err != nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				return nil, removeOnError(cg, fmt.Errorf("%w: %w", ErrShim, err), release)
			}
			p.tty = master
		}
		return p, nil
	}

	// The shim failed (or died): it exits on its own after reporting; kill
	// it anyway so that a wedged shim cannot hang Start.
	if len(report) == 0 || readErr != nil || writeErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if errors.Is(writeErr, os.ErrDeadlineExceeded) || errors.Is(readErr, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: the shim did not exec the command within %v; killed", ErrShim, sh.timeout)
	} else {
		err = shimFailure(report, writeErr, readErr, waitErr, cmd.ProcessState)
	}
	return nil, removeOnError(cg, err, release)
}

// attachNetwork runs network (if set) on the waiting shim; on error it has
// released what it did.
func attachNetwork(sh *shim, network func(int) (NetworkAttachment, error)) (NetworkAttachment, error) {
	if network == nil {
		return NetworkAttachment{}, nil
	}
	att, err := network(sh.cmd.Process.Pid)
	if err != nil {
		return NetworkAttachment{}, fmt.Errorf("%w: connect the job's network: %w", ErrShim, err)
	}
	return att, nil
}

// releaseOnError releases the network attachment of a start that failed
// with err.
func releaseOnError(att NetworkAttachment, err error) error {
	if att.Release != nil {
		if rErr := att.Release(); rErr != nil {
			err = errors.Join(err, fmt.Errorf("release network: %w", rErr))
		}
	}
	return err
}

// execFailure is the ErrExec error of a command that could not start; a
// failure of execve or of the PATH lookup also wraps ErrCommandNotFound or
// ErrNotExecutable. The message is the shim's.
func execFailure(ce childError) error {
	err := fmt.Errorf("%w: %s", ErrExec, ce.Message)
	if ce.Stage != "exec" && ce.Stage != "look up command" {
		return err
	}
	switch unix.Errno(ce.Errno) {
	case 0:
		return err
	case unix.ENOENT, unix.ENOTDIR:
		return &detailedExecError{err: err, kind: ErrCommandNotFound}
	default:
		return &detailedExecError{err: err, kind: ErrNotExecutable}
	}
}

// detailedExecError is an ErrExec error that is also one of
// ErrCommandNotFound and ErrNotExecutable.
type detailedExecError struct {
	err  error
	kind error
}

func (e *detailedExecError) Error() string   { return e.err.Error() }
func (e *detailedExecError) Unwrap() []error { return []error{e.err, e.kind} }

// shimFailure turns what the shim said (or did not say) into Start's error.
func shimFailure(report []byte, writeErr, readErr, waitErr error, ps *os.ProcessState) error {
	var ce childError
	if len(report) > 0 && json.Unmarshal(report, &ce) == nil {
		if ce.Kind == kindExec {
			return execFailure(ce)
		}
		return fmt.Errorf("%w: %s: %s", ErrShim, ce.Stage, ce.Message)
	}
	status := "unknown status"
	if ps != nil {
		status = ps.String()
	}
	err := fmt.Errorf("%w: shim ended before exec without a report (%s)", ErrShim, status)
	if other := errors.Join(writeErr, readErr); other != nil {
		err = fmt.Errorf("%w: %w", err, other)
	}
	// waitErr only repeats the status of a shim that exited.
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		err = fmt.Errorf("%w: wait: %w", err, waitErr)
	}
	return err
}

// Process is a command running in the sandbox. Its one reaper goroutine
// waits for it, then kills what is left of the job, records the final
// accounting and removes the cgroup before Done is closed.
type Process struct {
	cmd  *exec.Cmd
	cg   Cgroup
	pid  int
	done chan struct{} // closed by reap once state is final
	// tty is the master of the job's terminal (Spec.TTY), else nil; its
	// owner is the caller (TTY).
	tty *os.File
	// release gives the job's uid back; reap calls it once the cgroup is
	// gone.
	release func()
	// netRelease releases the job's network attachment after it ended; nil
	// without one. Set by finish before it starts reap.
	netRelease func() error

	// init: PID 1 is the shim's minimal init, not the command (Spec.Init).
	init bool
	// pooled: the job ran in a warm shim (pool_linux.go).
	pooled bool

	// mu serializes the cgroup's Kill/Signal/Stats with its removal by reap.
	mu sync.Mutex
	// removed is true once reap removed the cgroup (guarded by mu).
	removed bool
	// state is written by reap before done is closed and never after; read
	// under mu or after <-done.
	state ExitState
	// cleanupErr is what went wrong removing the cgroup (same rules as state).
	cleanupErr error
}

// Pid is the host pid of the command (PID 1 of the job's PID namespace).
func (p *Process) Pid() int { return p.pid }

// TTY is the master of the job's terminal when it was started with
// Spec.TTY, else nil. The caller owns it: it reads the job's output from it
// (EIO once every process of the job closed the terminal: the end of the
// output), writes the job's input to it, sizes it (SetWindowSize) and
// closes it. The server never makes it a controlling terminal.
func (p *Process) TTY() *os.File { return p.tty }

// Done is closed when the command exited, the job's cgroup was emptied and
// removed, and Wait's result is ready.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until Done and returns how the command ended. Any number of
// callers may Wait.
func (p *Process) Wait() ExitState {
	<-p.done
	return p.state
}

// CleanupErr is the error, if any, of killing the rest of the job and
// removing its cgroup after the command ended; nil before Done.
func (p *Process) CleanupErr() error {
	select {
	case <-p.done:
		return p.cleanupErr
	default:
		return nil
	}
}

// Terminate sends SIGTERM to every process of the job. The command is PID 1
// of its namespace, which ignores SIGTERM unless it installed a handler; the
// other processes get it too, so a shell waiting on children usually ends
// when they do. A no-op once the job is done.
func (p *Process) Terminate() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return nil
	}
	if err := p.signalAllLocked(unix.SIGTERM); err != nil {
		return fmt.Errorf("terminate job: %w", err)
	}
	return nil
}

// signalAllLocked sends sig to every process of the job's cgroup, but for
// the init of an Init job: it would forward sig to the command, which gets
// it already (twice could mean "hurry" to it). p.mu is held.
func (p *Process) signalAllLocked(sig syscall.Signal) error {
	if !p.init {
		return p.cg.Signal(int(sig))
	}
	pids, err := p.cg.Procs()
	if err != nil {
		return err
	}
	pids = slices.DeleteFunc(pids, func(pid int) bool { return pid == p.pid })
	return signalPids(pids, sig)
}

// Signal sends sig to PID 1 of the job (the command, or the init that
// forwards it to the command), or with all to every process of the job's
// cgroup (but an init: see signalAllLocked). As PID 1 of its namespace, a
// command without init gets only the signals it has a handler for (and
// SIGKILL, SIGSTOP). SIGSTOP, which an init cannot catch to forward, goes
// to every process of an Init job but the init. ErrDone once the command
// has ended.
func (p *Process) Signal(sig syscall.Signal, all bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return ErrDone
	}
	if all || (p.init && sig == syscall.SIGSTOP) {
		if err := p.signalAllLocked(sig); err != nil {
			return fmt.Errorf("signal job: %w", err)
		}
		return nil
	}
	// By the process handle (a pidfd): never another process that reused
	// the pid.
	if err := p.cmd.Process.Signal(sig); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return ErrDone
		}
		return fmt.Errorf("signal job: %w", err)
	}
	return nil
}

// Kill kills every process of the job at once (its cgroup, and the command,
// PID 1 of the job's PID namespace, whose death ends the namespace) and
// returns when the job is done (Wait's result is ready). A no-op once the
// job is done.
func (p *Process) Kill() error {
	p.mu.Lock()
	if p.removed {
		p.mu.Unlock()
		return nil
	}
	err := p.cg.Kill()
	p.mu.Unlock()
	// Also the command itself, by its process handle (no pid reuse): done
	// waits for it alone, and a job moved out of its cgroup from the host
	// (a job cannot leave it: its cgroup mounts are read-only and it has
	// no CAP_SYS_ADMIN) is not killed by the cgroup. PID 1 dying makes the
	// kernel kill the rest of its PID namespace.
	if kErr := p.cmd.Process.Kill(); kErr != nil && !errors.Is(kErr, os.ErrProcessDone) {
		err = errors.Join(err, kErr)
	}
	if err != nil {
		return fmt.Errorf("kill job: %w", err)
	}
	<-p.done
	return nil
}

// Stats is the job's accounting: live while it runs, final once it is done.
func (p *Process) Stats() (Stats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.removed {
		return p.state.Stats, nil
	}
	st, err := p.cg.Stats()
	if err != nil {
		return Stats{}, fmt.Errorf("job stats: %w", err)
	}
	return st, nil
}

// reap waits for the command, kills whatever it left in the cgroup, reads the
// final accounting, removes the cgroup and closes done.
func (p *Process) reap() {
	waitErr := p.cmd.Wait()
	state := ExitState{ExitCode: -1, Exited: time.Now()}
	if ps := p.cmd.ProcessState; ps != nil {
		ws, _ := ps.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled():
			state.Signal = int(ws.Signal())
		case ws.Exited():
			state.ExitCode = ws.ExitStatus()
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if waitErr != nil && p.cmd.ProcessState == nil {
		errs = append(errs, fmt.Errorf("wait: %w", waitErr))
	}
	// PID 1's death already made the kernel kill the namespace; Kill makes
	// sure the cgroup is empty so that the stats are final.
	if err := p.cg.Kill(); err != nil {
		errs = append(errs, fmt.Errorf("kill rest of job: %w", err))
	}
	st, err := p.cg.Stats()
	if err != nil {
		errs = append(errs, fmt.Errorf("final stats: %w", err))
	}
	state.Stats = st
	state.OOMKilled = st.OOMKills > 0
	if err := p.cg.Delete(); err != nil {
		// The uid stays taken: something of the job may be left.
		errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
	} else {
		p.release()
	}
	if p.netRelease != nil {
		if err := p.netRelease(); err != nil {
			errs = append(errs, fmt.Errorf("release network: %w", err))
		}
	}
	p.state = state
	p.cleanupErr = errors.Join(errs...)
	p.removed = true
	close(p.done)
}
