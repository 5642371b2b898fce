// Package jobrunner owns jobs: it starts commands in the sandbox, follows
// each job's life from RUNNING to COMPLETED or FAILED, captures its stdout
// and stderr into one on-disk output log per job, and lets any number of
// watchers follow that log from any offset.
//
// jobrunner knows nothing of gRPC, TLS or users: an owner is just a string
// recorded with the job; deciding who may see or stop a job is the caller's
// business.
package jobrunner

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/drrev/telehandler/sandbox"
	"github.com/drrev/telehandler/sandbox/network"
)

// Config configures New.
type Config struct {
	// StateDir holds the jobs' output logs; it is created (0700) if
	// missing. Required.
	StateDir string
	// OutputCap is the most output bytes kept per job; 0 = DefaultOutputCap
	// (1 GiB).
	OutputCap int64
	// Sandbox starts the jobs; nil = sandbox.New(sandbox.Config{}) (this
	// binary as the shim, the host's cgroups under "telehandler").
	Sandbox *sandbox.Sandbox
	// Now is the clock for start and end times and for retention; nil =
	// time.Now.
	Now func() time.Time
	// Retain is how long an ended job (status, record and output) is kept
	// after it ended; 0 = DefaultRetain (7 days).
	Retain time.Duration
	// RetainBytes is the most output log bytes kept on disk: past it the
	// jobs that ended first are removed (running jobs are never removed);
	// 0 = DefaultRetainBytes (10 GiB).
	RetainBytes int64
	// RetainJobs is the most ended jobs kept (each holds its status and
	// up to MaxKeptCommandLine of command line in memory): past it the
	// jobs that ended first are removed; 0 = DefaultRetainJobs (10,000).
	RetainJobs int
	// Logger receives the records that could not be loaded or written, the
	// retention's removals, and the events no caller sees: a job's output
	// that cannot be written (once per job) and kept again, a job stopped
	// by Shutdown. nil = discard.
	Logger *slog.Logger
	// Network is the job network jobs that ask for it join; nil = no job
	// may (Start fails with ErrNetworkOff). The caller owns it (and closes
	// it after Shutdown).
	Network *network.Manager
}

// Defaults of Config.
const (
	DefaultRetain            = 7 * 24 * time.Hour
	DefaultRetainBytes int64 = 10 << 30
	DefaultRetainJobs        = 10_000
	// sweepInterval is how often retention runs besides after each job's
	// end.
	sweepInterval = time.Minute
)

// Runner runs jobs. All methods are safe for concurrent use.
type Runner struct {
	stateDir    string
	outputCap   int64
	sandbox     *sandbox.Sandbox
	now         func() time.Time
	retain      time.Duration
	retainBytes int64
	retainJobs  int
	log         *slog.Logger
	// unlock releases the state directory's lock (Shutdown calls it).
	unlock func()
	// stopSweep ends the retention loop; sweepDone is closed when it has
	// returned.
	stopSweep, sweepDone chan struct{}
	shutdownOnce         sync.Once
	network              *network.Manager
	// spares are new jobs' files made ahead (spare.go).
	spares *spares

	// mu guards jobs, order, names, load and shuttingDown, and orders
	// starting.Add against Shutdown's starting.Wait.
	mu   sync.Mutex
	jobs map[string]*job
	// order holds the jobs of jobs by start time then id, oldest first
	// (addLocked, deleteLocked): ListPage walks it.
	order []*job
	// names holds the name of every job in jobs that has one (addLocked,
	// deleteLocked), and of every Start in flight that asked for one
	// (reserved before the command starts, so two Starts cannot take the
	// same name).
	names map[ownerName]struct{}
	// load counts the slots of the running-jobs cap: Start takes one
	// before it starts the command (and gives it back if that fails),
	// supervise gives it back when it sets job.ended. It is the only count
	// of running jobs (see Quota).
	load         load
	shuttingDown bool
	// netLoad counts the networked jobs' slots (Quota.NetworkPerOwner),
	// taken and given back with their load slots.
	netLoad load

	// starting counts Start calls between the shutdown check and the job's
	// registration, so that Shutdown sees every job.
	starting sync.WaitGroup
	// goroutines counts every goroutine of every job (a reader per output
	// pipe or terminal, and one supervisor each).
	goroutines sync.WaitGroup
}

// New returns a Runner for cfg. It creates and locks the state directory,
// removes the cgroups (and kills the processes) a crashed earlier run left
// behind, and loads the jobs of earlier runs from their records (see
// loadRecords), then applies retention and keeps applying it every minute
// until Shutdown.
func New(cfg Config) (*Runner, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("jobrunner: no state directory")
	}
	if cfg.OutputCap < 0 {
		return nil, fmt.Errorf("jobrunner: output cap %d is negative", cfg.OutputCap)
	}
	if cfg.OutputCap == 0 {
		cfg.OutputCap = DefaultOutputCap
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Retain < 0 || cfg.RetainBytes < 0 || cfg.RetainJobs < 0 {
		return nil, fmt.Errorf("jobrunner: retention %v, %d bytes, %d jobs is negative", cfg.Retain, cfg.RetainBytes, cfg.RetainJobs)
	}
	if cfg.RetainJobs == 0 {
		cfg.RetainJobs = DefaultRetainJobs
	}
	if cfg.Retain == 0 {
		cfg.Retain = DefaultRetain
	}
	if cfg.RetainBytes == 0 {
		cfg.RetainBytes = DefaultRetainBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("jobrunner: create state directory: %w", err)
	}
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("jobrunner: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	if cfg.Sandbox == nil {
		sb, err := sandbox.New(sandbox.Config{})
		if err != nil {
			return nil, fmt.Errorf("jobrunner: %w", err)
		}
		cfg.Sandbox = sb
	}
	if err := cfg.Sandbox.Cgroups().Cleanup(); err != nil {
		return nil, fmt.Errorf("jobrunner: clean up after an earlier run: %w", err)
	}
	r := &Runner{
		stateDir:    cfg.StateDir,
		outputCap:   cfg.OutputCap,
		sandbox:     cfg.Sandbox,
		now:         cfg.Now,
		retain:      cfg.Retain,
		retainBytes: cfg.RetainBytes,
		retainJobs:  cfg.RetainJobs,
		log:         cfg.Logger,
		unlock:      unlock,
		stopSweep:   make(chan struct{}),
		sweepDone:   make(chan struct{}),
		jobs:        make(map[string]*job),
		network:     cfg.Network,
		names:       make(map[ownerName]struct{}),
		spares:      newSpares(),
	}
	if err := r.loadRecords(); err != nil {
		return nil, fmt.Errorf("jobrunner: %w", err)
	}
	r.sweep()
	go r.sweepLoop()
	go r.spareLoop()
	// After Cleanup, which would kill warm shims; Shutdown drains the pool.
	cfg.Sandbox.StartPool()
	ok = true
	return r, nil
}

// ownerName is a job name in its owner's scope.
type ownerName struct{ owner, name string }

// idLen is the length of the ids newID makes.
const idLen = 26

// looksLikeID reports whether s has the shape of a job id newID makes.
func looksLikeID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// reserveNameLocked claims name for owner, or fails with ErrNameTaken.
// r.mu must be held.
func (r *Runner) reserveNameLocked(owner, name string) error {
	if name == "" {
		return nil
	}
	k := ownerName{owner, name}
	if _, taken := r.names[k]; taken {
		return fmt.Errorf("%w: %s already has a job named %q", ErrNameTaken, owner, name)
	}
	r.names[k] = struct{}{}
	return nil
}

// freeNameLocked gives back a name reserveNameLocked claimed ("" = none).
// r.mu must be held.
func (r *Runner) freeNameLocked(owner, name string) {
	if name != "" {
		delete(r.names, ownerName{owner, name})
	}
}

// newID returns 128 random bits as 26 lowercase base32 characters.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("job id: %w", err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])), nil
}

// Start starts a job and returns its status once the command runs. When
// the command cannot start, the error wraps sandbox.ErrExec (missing
// binary, bad directory, bad credentials) or sandbox.ErrShim, and no job
// is kept. Invalid requests wrap ErrInvalidRequest; after Shutdown, Start
// fails with ErrShuttingDown; when req.Quota has no room, with a
// *QuotaError (ErrTooManyJobs).
func (r *Runner) Start(ctx context.Context, req StartRequest) (_ Status, err error) {
	if err := req.validate(); err != nil {
		return Status{}, err
	}
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	r.mu.Lock()
	if r.shuttingDown {
		r.mu.Unlock()
		return Status{}, ErrShuttingDown
	}
	if err := r.reserveNameLocked(req.Owner, req.Name); err != nil {
		r.mu.Unlock()
		return Status{}, err
	}
	if err := r.load.admitLocked(req.Owner, req.Quota); err != nil {
		r.freeNameLocked(req.Owner, req.Name)
		r.mu.Unlock()
		return Status{}, err
	}
	if err := r.admitNetworkLocked(req); err != nil {
		r.load.releaseLocked(req.Owner)
		r.mu.Unlock()
		return Status{}, err
	}
	r.starting.Add(1)
	r.mu.Unlock()
	defer r.starting.Done()
	defer func() {
		if err != nil { // no job: give the slot and the name back
			r.mu.Lock()
			r.load.releaseLocked(req.Owner)
			if req.Network {
				r.netLoad.releaseLocked(req.Owner)
			}
			r.freeNameLocked(req.Owner, req.Name)
			r.mu.Unlock()
		}
	}()

	files, err := r.takeJobFiles()
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return Status{}, fmt.Errorf("%w (%s): no job can start until space is freed", ErrStateDirFull, errorCause(err))
	}
	if err != nil {
		return Status{}, err
	}
	id, log := files.id, files.log
	outR, outW, err := os.Pipe()
	if err != nil {
		r.discardJobFiles(files)
		return Status{}, fmt.Errorf("stdout pipe: %w", err)
	}
	growPipe(outR)
	// With MergeOutput the job's fd 2 is the same pipe as its fd 1.
	errR, errW := outR, outW
	if !req.MergeOutput {
		errR, errW, err = os.Pipe()
		if err != nil {
			outR.Close()
			outW.Close()
			r.discardJobFiles(files)
			return Status{}, fmt.Errorf("stderr pipe: %w", err)
		}
		growPipe(errR)
	}
	closePipes := func(fs ...*os.File) {
		fs = slices.Compact(fs) // merged: each pipe end once
		for _, f := range fs {
			f.Close()
		}
	}

	// -i without a terminal: a stdin pipe whose write end the job's input
	// writers share (AttachInput). With a terminal, the shim replaces fds
	// 0-2 with it (the output pipes then reach EOF at once).
	var inR, inW *os.File
	if req.Stdin && !req.TTY {
		if inR, inW, err = os.Pipe(); err != nil {
			closePipes(outR, outW, errR, errW)
			r.discardJobFiles(files)
			return Status{}, fmt.Errorf("stdin pipe: %w", err)
		}
	}

	command, args, cut := cutCommandLine(req.Command, req.Args)
	j := &job{
		id:      id,
		owner:   req.Owner,
		name:    req.Name,
		init:    req.Init,
		command: command,
		args:    args,
		dir:     req.Dir,
		cmdCut:  cut,
		limits:  req.Limits,
		network: req.Network,
		started: r.now(),
		log:     log,
		done:    make(chan struct{}),
	}
	// The record is on disk before the command can run, so that a job
	// that ran is never missing from history: should the server die from
	// here on, the job comes back FAILED (ReasonServerLost), even one
	// whose command had not run yet. The record of its end replaces this
	// one; a start that fails removes it.
	r.writeRecordInto(j, files.rec)
	files.rec = nil
	r.refillSpares()

	cfg := sandbox.StartConfig{Name: id, Limits: req.Limits, Stdout: outW, Stderr: errW, Stdin: inR}
	if req.Network {
		cfg.Network = r.attachNetwork(req.Limits.NetworkBPS)
	}
	proc, err := r.sandbox.Start(sandbox.Spec{
		Path:    req.Command,
		Args:    req.Args,
		Dir:     req.Dir,
		Env:     req.Env,
		UID:     req.UID,
		GID:     req.GID,
		TTY:     req.TTY,
		TTYRows: req.TTYRows,
		TTYCols: req.TTYCols,

		DynamicUser: req.DynamicUser,
		Image:       req.Image,
		Init:        req.Init,
	}, cfg)
	// The job has its own copies of the write ends (or is gone); ours would
	// keep the pipes from ever reaching EOF.
	closePipes(outW, errW)
	if inR != nil {
		inR.Close()
	}
	if err != nil {
		closePipes(outR, errR)
		if inW != nil {
			inW.Close()
		}
		r.discardJobFiles(files)
		return Status{}, fmt.Errorf("start job: %w", err)
	}
	j.proc = proc
	pipes := []outputSource{{outR, Stdout}, {errR, Stderr}}
	if req.MergeOutput {
		pipes = pipes[:1]
	}
	switch {
	case proc.TTY() != nil:
		j.input = &jobInput{f: proc.TTY(), tty: true}
		// The terminal's output is the job's stdout; its drain closes
		// the master once the job is gone (EIO).
		pipes = append(pipes, outputSource{proc.TTY(), Stdout})
	case inW != nil:
		j.input = &jobInput{f: inW}
	}
	r.mu.Lock()
	r.addLocked(j) // its slot and its name, taken above, are now the job's
	r.mu.Unlock()

	var drains sync.WaitGroup
	r.goroutines.Add(len(pipes) + 1)
	drains.Add(len(pipes))
	for _, p := range pipes {
		go func() {
			defer r.goroutines.Done()
			defer drains.Done()
			r.drain(j, p.f, p.s)
		}()
	}
	go func() {
		defer r.goroutines.Done()
		r.supervise(j, &drains)
	}()
	// Its cgroup has accounted next to nothing yet: not worth reading.
	return j.snapshot(false), nil
}

// admitNetworkLocked admits a networked job: the runner must have a
// network and the owner must be under req.Quota.NetworkPerOwner. r.mu is
// held.
func (r *Runner) admitNetworkLocked(req StartRequest) error {
	if !req.Network {
		return nil
	}
	if r.network == nil {
		return ErrNetworkOff
	}
	if err := r.netLoad.admitLocked(req.Owner, Quota{PerOwner: req.Quota.NetworkPerOwner}); err != nil {
		return fmt.Errorf("%w: %q runs %d networked jobs, its limit is %d",
			ErrTooManyNetworkJobs, req.Owner, req.Quota.NetworkPerOwner, req.Quota.NetworkPerOwner)
	}
	return nil
}

// attachNetwork is the sandbox's network hook of a job limited to bps
// bytes per second each way.
func (r *Runner) attachNetwork(bps uint64) func(int) (sandbox.NetworkAttachment, error) {
	return func(pid int) (sandbox.NetworkAttachment, error) {
		att, err := r.network.Attach(pid, bps)
		if errors.Is(err, network.ErrAddressesExhausted) {
			return sandbox.NetworkAttachment{}, fmt.Errorf("%w: %w", ErrTooManyNetworkJobs, err)
		}
		if err != nil {
			return sandbox.NetworkAttachment{}, err
		}
		return sandbox.NetworkAttachment{ResolvConf: att.ResolvConf, Release: att.Release}, nil
	}
}

// outputSource is a file of the job's output (a pipe or its terminal) and
// the stream its bytes are logged as.
type outputSource struct {
	f *os.File
	s Stream
}

// discardLog finishes and removes the log of a job that did not start.
func (r *Runner) discardLog(log *OutputLog) {
	log.Finish()
	os.Remove(log.Path())
}

// drain copies one of the job's pipes into its log until EOF, with one
// reusable buffer. It keeps reading when the log drops output (cap reached
// or write failed) so that the job never blocks on a full pipe. The first
// failed write of the job is logged, and so is the first write that
// succeeds after one.
func (r *Runner) drain(j *job, f *os.File, s Stream) {
	defer f.Close()
	// Most jobs write little: a small buffer, until a read fills it.
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			// A failed write is recorded by the log (Truncation, Err,
			// Dropped); keep draining.
			if werr := j.log.Write(s, buf[:n]); werr != nil {
				j.writeFailed.Do(func() {
					r.log.Error("job output dropped: its log cannot be written; the job keeps running, and output is kept again once a write succeeds",
						"job_id", j.id, "owner", j.owner, "error", werr.Error())
				})
			} else if j.log.Err() != nil {
				j.writeResumed.Do(func() {
					r.log.Info("job output kept again after failed writes", "job_id", j.id,
						"dropped_bytes", j.log.Dropped())
				})
			}
		}
		if err != nil {
			// io.EOF once every writer (the job's processes) is gone;
			// any other read error also ends the stream.
			return
		}
		if n == len(buf) && n < drainBufferSize {
			buf = make([]byte, drainBufferSize)
		}
	}
}

// drainBufferSize is drain's buffer once the job wrote faster than a small
// one empties its pipe: fewer, larger reads and log writes.
const drainBufferSize = 256 << 10

// supervise waits for the job's command, then for its output to be fully
// collected (the command is PID 1 of its namespace, so its exit kills every
// other process that could hold the pipes open), records the terminal
// status, finishes the log (waking watchers) and closes done.
func (r *Runner) supervise(j *job, drains *sync.WaitGroup) {
	exit := j.proc.Wait()
	endedAt := r.now()
	j.mu.Lock()
	j.exited = true
	j.mu.Unlock()
	if j.input != nil {
		// Nothing of the job reads its stdin any more: unblock and refuse
		// its writers, and free the pipe.
		_ = j.input.closeStdin()
	}

	drains.Wait()
	j.mu.Lock()
	j.ended = true
	j.exit = exit
	j.endedAt = endedAt
	j.mu.Unlock()
	r.mu.Lock()
	r.load.releaseLocked(j.owner)
	if j.network {
		r.netLoad.releaseLocked(j.owner)
	}
	r.mu.Unlock()
	j.log.Finish()
	// The final record is on disk before anyone learns the job ended.
	r.writeRecord(j)
	close(j.done)
	r.sweep()
}

// lookup returns the job with id, or an error wrapping ErrJobNotFound.
func (r *Runner) lookup(id string) (*job, error) {
	r.mu.Lock()
	j, ok := r.jobs[id]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrJobNotFound, id)
	}
	return j, nil
}

// Status returns the job's current status.
func (r *Runner) Status(id string) (Status, error) {
	j, err := r.lookup(id)
	if err != nil {
		return Status{}, err
	}
	return j.status(), nil
}

// List returns the status of every job, oldest first. It reads the cgroup
// statistics of every running job.
func (r *Runner) List() []Status {
	r.mu.Lock()
	jobs := make([]*job, 0, len(r.jobs))
	for _, j := range r.jobs {
		jobs = append(jobs, j)
	}
	r.mu.Unlock()
	list := make([]Status, 0, len(jobs))
	for _, j := range jobs {
		list = append(list, j.status())
	}
	slices.SortFunc(list, func(a, b Status) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return list
}

// Ref is what identifies a job to its callers: its id, owner and name.
type Ref struct {
	ID, Owner, Name string
}

// Refs returns the id, owner and name of every job, in no particular
// order. Unlike List it reads no cgroup: it is cheap enough to resolve a
// job reference on every call.
func (r *Runner) Refs() []Ref {
	r.mu.Lock()
	defer r.mu.Unlock()
	refs := make([]Ref, 0, len(r.jobs))
	for _, j := range r.jobs {
		refs = append(refs, Ref{ID: j.id, Owner: j.owner, Name: j.name})
	}
	return refs
}

// Signal sends sig to the job's command, or with all to every process of
// the job, and returns the job's status. A job whose command already
// exited gets nothing: the error wraps ErrNotRunning.
func (r *Runner) Signal(id string, sig syscall.Signal, all bool) (Status, error) {
	j, err := r.lookup(id)
	if err != nil {
		return Status{}, err
	}
	j.mu.Lock()
	exited := j.exited
	j.mu.Unlock()
	if exited {
		return j.status(), fmt.Errorf("%w: job %q", ErrNotRunning, id)
	}
	if err := j.proc.Signal(sig, all); err != nil {
		if errors.Is(err, sandbox.ErrDone) {
			return j.status(), fmt.Errorf("%w: job %q", ErrNotRunning, id)
		}
		return j.status(), fmt.Errorf("signal job %q: %w", id, err)
	}
	return j.status(), nil
}

// TailOffset returns the logical offset where the last n lines of the
// job's output committed so far start (stdout and stderr together, in the
// order written, for s == 0; else the lines of stream s): the size of the
// output for n == 0, 0 when it has n lines or fewer. See
// OutputLog.TailOffset.
func (r *Runner) TailOffset(id string, n int64, s Stream) (int64, error) {
	j, err := r.lookup(id)
	if err != nil {
		return 0, err
	}
	return j.log.TailOffset(n, s)
}

// Wait blocks until the job ended and its output is complete, and returns
// its terminal status; or returns ctx's error.
func (r *Runner) Wait(ctx context.Context, id string) (Status, error) {
	j, err := r.lookup(id)
	if err != nil {
		return Status{}, err
	}
	select {
	case <-j.done:
		return j.status(), nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// Stop ends every process of the job and returns its terminal status once
// the job ended and its output is complete. With grace > 0 the job's
// processes get SIGTERM first and are killed only if the job still runs
// after grace (or when ctx ends first). The job is marked stopped
// (ReasonStopped). Stopping a job whose command already exited returns its
// terminal status with an error wrapping ErrNotRunning.
func (r *Runner) Stop(ctx context.Context, id string, grace time.Duration) (Status, error) {
	return r.stop(ctx, id, grace, ReasonStopped)
}

// stop is Stop, marking the job stopped for reason (ReasonStopped or
// ReasonServerShutdown).
func (r *Runner) stop(ctx context.Context, id string, grace time.Duration, reason EndReason) (Status, error) {
	j, err := r.lookup(id)
	if err != nil {
		return Status{}, err
	}
	j.mu.Lock()
	exited := j.exited
	if !exited && !j.stopped {
		j.stopped, j.stopReason = true, reason
	}
	j.mu.Unlock()
	if exited {
		select {
		case <-j.done:
		case <-ctx.Done():
			return Status{}, ctx.Err()
		}
		return j.status(), fmt.Errorf("%w: job %q", ErrNotRunning, id)
	}

	if grace > 0 {
		if err := j.proc.Terminate(); err == nil {
			t := time.NewTimer(grace)
			select {
			case <-j.proc.Done():
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	if err := j.proc.Kill(); err != nil {
		return j.status(), fmt.Errorf("stop job %q: %w", id, err)
	}
	select {
	case <-j.done:
		return j.status(), nil
	case <-ctx.Done():
		return j.status(), ctx.Err()
	}
}

// WatchChunks calls fn with the job's output from logical offset from
// (stdout and stderr together, in the order the log received them: the
// two pipes are read by two goroutines, so between the streams this is not
// always the order the job wrote; StartRequest.MergeOutput keeps it exact;
// 0 = the first byte), in chunks of at most maxChunk bytes, each as large
// as the output allows, then follows it live until the job ended and every
// byte was delivered. Then it returns the job's status as it ended: taken
// from the job the watch followed, so that a job removed meanwhile (rm
// --force, retention) still tells its watchers how it ended. See
// OutputLog.WatchChunks for the errors (ErrInvalidOffset, ErrCorruptLog,
// ctx.Err(), fn's error).
func (r *Runner) WatchChunks(ctx context.Context, id string, from int64, maxChunk int, fn func(Chunk) error) (Status, error) {
	j, err := r.lookup(id)
	if err != nil {
		return Status{}, err
	}
	err = j.log.WatchChunks(ctx, from, maxChunk, fn)
	if errors.Is(err, fs.ErrNotExist) {
		// Removed (rm, retention) between the lookup and the open.
		return Status{}, fmt.Errorf("%w: %q", ErrJobNotFound, id)
	}
	if err != nil {
		return Status{}, err
	}
	// The log is finished, so the job ended: supervise records the end
	// before it finishes the log.
	return j.status(), nil
}

// Shutdown refuses new jobs, kills every running job (marked
// ReasonServerShutdown, one log line each), and waits until all of them
// ended and every goroutine of the Runner returned, or until ctx ends. Then
// it removes the parent cgroups, now empty. Its error also names every job
// whose cleanup failed (killing what the command left behind, the final
// accounting, or removing its cgroup).
// Finished jobs stay visible (Status, List, Watch keep working). The
// periodic retention stops at once; the state directory's lock is released
// once every job ended and its record is written.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	r.shuttingDown = true
	r.mu.Unlock()
	r.shutdownOnce.Do(func() {
		close(r.stopSweep)
		<-r.sweepDone
	})
	r.starting.Wait() // Starts in flight register their job or fail
	r.stopSpares()

	r.mu.Lock()
	jobs := make([]*job, 0, len(r.jobs))
	for _, j := range r.jobs {
		jobs = append(jobs, j)
	}
	r.mu.Unlock()

	var errs []error
	// No job starts any more: the warm shims go (their cgroups before the
	// parent's removal below), even if ctx ends first.
	if err := r.sandbox.Close(); err != nil {
		errs = append(errs, err)
	}
	for _, j := range jobs {
		select {
		case <-j.done:
			continue
		default:
		}
		st, err := r.stop(ctx, j.id, 0, ReasonServerShutdown)
		if err != nil && !errors.Is(err, ErrNotRunning) {
			errs = append(errs, err)
		}
		if err == nil && st.Reason == ReasonServerShutdown {
			r.log.Info("job stopped by server shutdown", "job_id", j.id, "owner", j.owner,
				"exit_code", st.ExitCode, "signal", st.Signal)
		}
	}
	for _, j := range jobs {
		select {
		case <-j.done:
		case <-ctx.Done():
			return errors.Join(append(errs, ctx.Err())...)
		}
	}
	// Every job is done: its goroutines are returning, if not gone yet.
	r.goroutines.Wait()
	// A job whose cleanup failed (now, or when it ended earlier) may have
	// left processes or its cgroup on the host: say so rather than report
	// a clean shutdown.
	for _, j := range jobs {
		if j.proc == nil {
			continue // loaded from an earlier run
		}
		if err := j.proc.CleanupErr(); err != nil {
			errs = append(errs, fmt.Errorf("job %q: %w", j.id, err))
		}
	}
	if cgs := r.sandbox.Cgroups(); cgs != nil && len(errs) == 0 {
		// Every job's cgroup is gone: leave no empty parent behind.
		if err := cgs.RemoveParent(); err != nil {
			errs = append(errs, err)
		}
	}
	// Every record is written: another server may use the directory.
	r.unlock()
	return errors.Join(errs...)
}
