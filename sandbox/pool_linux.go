package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The warm shim pool (Config.ShimPool): shims started before their job, so
// that Start skips what costs most of a cold start (fork and exec of the
// binary, the Go runtime's start-up, the cgroup, the view's ~40 mounts).
//
// A warm shim is a shim (protocol.go) that is already inside its
// namespaces and its cgroup (created with Config.ShimPoolLimits but no CPU
// quota, see spawnWarm; named "pool-<random>"), has its view built for a
// dynamic uid the pool allocated for it, runs as that uid, and blocks
// reading its job on a socket.
// Start takes one for a job that fits (jobFitsWarm), rewrites the cgroup's
// limits that differ from the pool's (Cgroup.Update), sends the spec with
// the job's stdio (SCM_RIGHTS) and waits for the exec marker as for a cold
// shim. One warm shim serves exactly one job: its uid, view and cgroup are
// that job's from then on, and are released with it as a cold job's are.
//
// The job's cgroup keeps the warm shim's name: cgroup v2 cannot rename a
// cgroup (its kernfs has no rename operation; v1 can, within its parent),
// and nothing needs the name once the Process holds the Cgroup: Cleanup
// removes every cgroup under the parent, whatever its name.
//
// A refill goroutine keeps Config.ShimPool shims ready: after every take, and
// in the background. A shim ready for longer than Config.ShimPoolIdle is
// recycled (killed, its cgroup removed, its uid given back) and replaced, so
// that the pool never holds stale views (a host mount made since, a bind
// source replaced) for long. A warm shim dies with its server (EOF on its
// socket, or its parent-death signal); the next server's Cleanup removes
// its cgroup. Close drains the pool before the server removes its parent
// cgroup.
//
// The pool moves work off StartJob's path; it does not make a start
// cheaper in CPU (a warm shim costs what a cold one does, once). Under a
// sustained load of starts it empties and jobs start cold while it refills
// (one shim at a time, in the background).

// defaultShimPoolIdle is Config.ShimPoolIdle's default.
const defaultShimPoolIdle = 10 * time.Minute

// warmMinMemory is the smallest memory limit a job may have and still use a
// warm shim: the shim has charged its pages (runtime, view) to the cgroup
// already, and a lower limit written over them could OOM-kill it or fail
// (v1: EBUSY). Such a job starts cold, where the limit is in place before
// the shim's pages are charged.
const warmMinMemory = 32 << 20

// warmShim is a pooled shim waiting for its job.
type warmShim struct {
	sh *shim
	cg Cgroup
	// limits are the cgroup's limits now.
	limits Limits
	// tasks: the shim's thread joined the cgroup by itself (v1), the rest
	// of the process did not.
	tasks bool
	uid   uint32
	// release gives uid back.
	release func()
	ready   time.Time
}

// shimPool keeps warm shims ready. Its methods are safe for concurrent use.
type shimPool struct {
	s      *Sandbox
	size   int
	idle   time.Duration
	limits Limits

	mu sync.Mutex
	// warm are the ready shims, longest ready first (guarded by mu).
	warm []*warmShim
	// closed is set by close: nothing enters warm any more (guarded by
	// mu).
	closed bool
	// lastErr is why the last refill failed, nil once one succeeded
	// (guarded by mu).
	lastErr error

	// started is set once StartPool started run (guarded by mu).
	started bool

	kick chan struct{} // capacity 1: a shim was taken
	stop chan struct{} // closed by close
	done chan struct{} // closed when run returned
}

func newShimPool(s *Sandbox, size int, idle time.Duration, limits Limits) *shimPool {
	if idle <= 0 {
		idle = defaultShimPoolIdle
	}
	return &shimPool{
		s: s, size: size, idle: idle, limits: limits,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// StartPool starts filling the warm shim pool (Config.ShimPool) in the
// background; a no-op without one or when it was started already. Call it
// once the parent cgroup was cleaned up (Cgroups.Cleanup would kill the
// warm shims), and Close before the parent cgroup is removed.
func (s *Sandbox) StartPool() {
	if s.pool == nil {
		return
	}
	p := s.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.started {
		return
	}
	p.started = true
	go p.run()
}

// Close drains the warm shim pool: every warm shim is killed, its cgroup
// removed and its uid given back, and the refill stops for good (jobs then
// start cold). Running jobs are not touched. Its error names the cgroups it
// could not remove.
func (s *Sandbox) Close() error {
	if s.pool == nil {
		return nil
	}
	return s.pool.close()
}

// run refills the pool until close.
func (p *shimPool) run() {
	defer close(p.done)
	failures := 0
	for {
		wait := p.recycle()
		if p.missing() > 0 {
			w, err := p.s.spawnWarm(p.limits)
			p.mu.Lock()
			p.lastErr = err
			if err == nil && !p.closed {
				p.warm = append(p.warm, w)
				w = nil
			}
			p.mu.Unlock()
			if w != nil {
				w.discard() // closed meanwhile
			}
			if err == nil {
				failures = 0
				continue
			}
			// A host that cannot warm a shim (uids or pids exhausted,
			// a broken view) is not hammered: jobs start cold meanwhile
			// and report the error themselves.
			failures++
			wait = min(50*time.Millisecond<<min(failures, 10), 30*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-p.kick:
		case <-t.C:
		case <-p.stop:
			t.Stop()
			return
		}
		t.Stop()
	}
}

// missing is how many shims the pool lacks (0 once closed).
func (p *shimPool) missing() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0
	}
	return p.size - len(p.warm)
}

// recycle discards the shims ready for longer than p.idle and returns how
// long until the next one is due.
func (p *shimPool) recycle() time.Duration {
	now := time.Now()
	p.mu.Lock()
	var old []*warmShim
	for len(p.warm) > 0 && now.Sub(p.warm[0].ready) >= p.idle {
		old = append(old, p.warm[0])
		p.warm = p.warm[1:]
	}
	next := p.idle
	if len(p.warm) > 0 {
		next = p.idle - now.Sub(p.warm[0].ready)
	}
	p.mu.Unlock()
	for _, w := range old {
		w.discard()
	}
	return next
}

// take returns the shim ready for longest that is still alive, or nil
// when none is (the job then starts cold: waiting for one could take
// longer). Dead ones (killed while they waited: the OOM killer, an
// operator) are discarded. The caller wakes the refill (refill) once the
// job it took a shim for has started, or at once when take found none.
func (p *shimPool) take() *warmShim {
	for {
		p.mu.Lock()
		var w *warmShim
		if len(p.warm) > 0 && !p.closed {
			w = p.warm[0]
			p.warm[0] = nil
			p.warm = p.warm[1:]
		}
		p.mu.Unlock()
		if w == nil || w.alive() {
			return w
		}
		_ = w.discard()
	}
}

// refill wakes the pool's refill. Start calls it once the job that took a
// warm shim has exec'd, not when it took the shim: a shim warming up meanwhile
// (fork, exec and Go's start-up of the binary, about 8 ms of CPU) would
// take the CPU from the job's last steps on a small host.
func (p *shimPool) refill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// alive reports whether the warm shim still waits for its job: its end of
// the socket is open (it writes nothing after warmReady, so a readable
// socket means EOF: it died).
func (w *warmShim) alive() bool {
	rc, err := w.sh.warm.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		alive = err == nil && n == 0
	})
	return alive
}

// close stops the refill and discards every warm shim.
func (p *shimPool) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	started := p.started
	warm := p.warm
	p.warm = nil
	p.mu.Unlock()
	close(p.stop)
	if started {
		// A shim run is spawning now is discarded by run itself.
		<-p.done
	}
	var errs []error
	for _, w := range warm {
		if err := w.discard(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// discard kills a warm shim that got no job, reaps it, removes its cgroup
// and gives its uid back (unless the cgroup stays).
func (w *warmShim) discard() error {
	w.sh.abort()
	return removeOnError(w.cg, nil, w.release)
}

// spawnWarm starts a warm shim: a dynamic uid, a cgroup with limits, the
// shim in it, its view built. It returns once the shim said it is ready;
// on error nothing is left behind.
func (s *Sandbox) spawnWarm(limits Limits) (*warmShim, error) {
	uid, err := s.uids.allocate()
	if err != nil {
		return nil, err
	}
	release := func() { s.uids.release(uid) }
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		release()
		return nil, err
	}
	// The pool's limits but CPU: under a job's CPU quota (10% of a CPU by
	// default) the shim's start-up and view would take ten times as long
	// in wall time, and the refill could not keep up. This is the
	// server's work, as a cold shim's boot outside its cgroup is (v1);
	// the job's quota is written before the job gets the shim.
	limits.CPUMilli = 0
	cg, err := s.createCgroup(StartConfig{Name: "pool-" + hex.EncodeToString(b), Limits: limits})
	if err != nil {
		release()
		return nil, err
	}
	join, err := cg.Join()
	if err != nil {
		return nil, removeOnError(cg, fmt.Errorf("%w: %w", ErrShim, err), release)
	}
	sh, err := s.startShim(join.CloneFD, StartConfig{}, false, true)
	if err != nil {
		return nil, removeOnError(cg, err, release)
	}
	fail := func(err error) (*warmShim, error) {
		sh.abort()
		return nil, removeOnError(cg, err, release)
	}
	if join.CloneFD < 0 && len(join.Tasks) == 0 {
		if err := cg.Add(sh.cmd.Process.Pid); err != nil {
			return fail(fmt.Errorf("%w: move warm shim into cgroup: %w", ErrShim, err))
		}
	}
	v := s.view
	v.MaskSecrets = false // dynamic users only: see Start
	v.HomeUID, v.HomeGID = uid, uid
	// v1: the shim's thread joins by itself, as a cold shim's does (no
	// wait for the kernel's thread group lock, protocol.go).
	data, err := json.Marshal(warmSpec{View: s.jobView(v, cg), CgroupTasks: join.Tasks, Seccomp: s.seccomp})
	if err != nil {
		return fail(fmt.Errorf("%w: encode warm spec: %w", ErrShim, err))
	}
	deadline := time.Now().Add(s.startTimeout)
	_ = sh.specW.SetWriteDeadline(deadline)
	_, err = sh.specW.Write(data)
	sh.specW.Close()
	if err != nil {
		return fail(fmt.Errorf("%w: write warm spec: %w", ErrShim, err))
	}
	_ = sh.warm.SetReadDeadline(deadline)
	ready := make([]byte, 1)
	if _, err := io.ReadFull(sh.warm, ready); err != nil || ready[0] != warmReady {
		// Its report, if it made one, says why.
		_ = sh.errR.SetReadDeadline(time.Now().Add(time.Second))
		report, _ := io.ReadAll(io.LimitReader(sh.errR, maxChildErrorSize))
		if err == nil {
			err = fmt.Errorf("unexpected byte %q", ready[0])
		}
		var ce childError
		if json.Unmarshal(report, &ce) == nil && ce.Message != "" {
			err = fmt.Errorf("%s: %s", ce.Stage, ce.Message)
		}
		return fail(fmt.Errorf("%w: warm shim: %w", ErrShim, err))
	}
	_ = sh.warm.SetReadDeadline(time.Time{})
	return &warmShim{sh: sh, cg: cg, limits: limits, tasks: len(join.Tasks) > 0, uid: uid, release: release, ready: time.Now()}, nil
}

// jobFitsWarm reports whether a job can run in a warm shim: a dynamic
// user's (a warm shim's view and user are those of its uid) with the
// default hostname (both set before the job comes), on the host's view (no
// image), without a terminal or a network (both set up before the view is
// built), and with room in its memory limit for the shim's runtime.
// Anything else starts cold.
func jobFitsWarm(spec Spec, cfg StartConfig) bool {
	return spec.DynamicUser && spec.UID == nil && spec.GID == nil &&
		spec.Image == "" && spec.Hostname == "" && !spec.TTY && cfg.Network == nil &&
		(cfg.Limits.MemoryBytes == 0 || cfg.Limits.MemoryBytes >= warmMinMemory)
}

// startWarm runs spec in w: the cgroup gets the job's limits, then the
// shim its spec and stdio. ok is false when w could not take the job
// before any of it ran (its limits could not be written): w is discarded
// and the caller starts the job cold.
func (s *Sandbox) startWarm(w *warmShim, spec Spec, cfg StartConfig) (p *Process, ok bool, err error) {
	if err := w.cg.Update(w.limits, cfg.Limits); err != nil {
		_ = w.discard()
		return nil, false, nil
	}
	if spec.Init && w.tasks {
		// v1: only the warm shim's thread joined; the init outlives the
		// exec, so its whole process is moved now (the kernel's thread
		// group lock, as for a cold Init job). Its view hides the host's
		// cgroup files from the shim itself.
		if err := w.cg.Add(w.sh.cmd.Process.Pid); err != nil {
			_ = w.discard()
			return nil, false, nil
		}
	}
	spec.UID, spec.GID = &w.uid, &w.uid
	w.sh.stdio = [3]*os.File{cfg.Stdin, cfg.Stdout, cfg.Stderr}
	p, err = w.sh.finish(w.cg, CgroupJoin{CloneFD: -1}, spec, view{}, w.release, nil)
	if err != nil {
		return nil, true, err
	}
	p.pooled = true
	return p, true, nil
}

// sendWarm sends a warm shim its job: the stdio byte and files, then data,
// then EOF; by deadline.
func (sh *shim) sendWarm(data []byte, deadline time.Time) error {
	_ = sh.warm.SetWriteDeadline(deadline)
	var which byte
	var fds []int
	for i, f := range sh.stdio {
		if f == nil {
			continue
		}
		which |= []byte{warmStdin, warmStdout, warmStderr}[i]
		// Fd puts the file in blocking mode, as os/exec does for a
		// child's stdio: the job shares its open file description.
		fds = append(fds, int(f.Fd()))
	}
	var rights []byte
	if len(fds) > 0 {
		rights = unix.UnixRights(fds...)
	}
	_, _, err := sh.warm.WriteMsgUnix([]byte{which}, rights, nil)
	runtime.KeepAlive(sh.stdio)
	if err != nil {
		return err
	}
	if _, err := sh.warm.Write(data); err != nil {
		return err
	}
	return sh.warm.CloseWrite()
}

// warmSocket (parent) makes a warm shim's socketpair: the parent's end and
// the shim's (for ExtraFiles at warmFD).
func warmSocket() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: warm socketpair: %w", ErrShim, err)
	}
	pf := os.NewFile(uintptr(fds[0]), "warm socket")
	c, err := net.FileConn(pf)
	pf.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("%w: warm socket: %w", ErrShim, err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "warm socket (shim)"), nil
}
