package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/drrev/telehandler/jobrunner"
	"github.com/drrev/telehandler/sandbox"
)

// fakeRunner is a JobRunner without processes. The command decides what a
// job does:
//
//	"missing"   fails to start with sandbox.ErrExec
//	"broken"    fails to start with sandbox.ErrShim (a server fault)
//	"emit"      writes each argument as one chunk, alternating stdout and
//	            stderr, and ends with exit code 3
//	"sleep"     writes like emit, then runs until stopped
//	"gappy"     writes "a", loses 5 bytes (a gap), writes "b", completes
//	            with its output truncated by a write error
//	anything    else completes at once with exit code 0
type fakeRunner struct {
	// mu guards every field below and the jobs' fields.
	mu       sync.Mutex
	jobs     map[string]*fakeJob
	shutdown bool
	starts   []jobrunner.StartRequest
	signals  []fakeSignal
	// ids are handed out to the next jobs, in order, before random ones.
	ids []string
}

// fakeSignal is one Signal call.
type fakeSignal struct {
	id  string
	sig syscall.Signal
	all bool
}

type fakeJob struct {
	st    jobrunner.Status
	out   []jobrunner.Chunk
	done  chan struct{} // closed when the job ends
	input *fakeInput    // non-nil when started with Stdin
}

func newFakeRunner() *fakeRunner { return &fakeRunner{jobs: map[string]*fakeJob{}} }

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (f *fakeRunner) Start(ctx context.Context, req jobrunner.StartRequest) (jobrunner.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, req)
	if f.shutdown {
		return jobrunner.Status{}, jobrunner.ErrShuttingDown
	}
	if err := f.admitLocked(req); err != nil {
		return jobrunner.Status{}, err
	}
	switch req.Command {
	case "missing":
		return jobrunner.Status{}, fmt.Errorf("%w: exec %q: no such file or directory", sandbox.ErrExec, req.Command)
	case "broken":
		return jobrunner.Status{}, fmt.Errorf("%w: mount /proc: permission denied", sandbox.ErrShim)
	}
	for _, o := range f.jobs {
		if req.Name != "" && o.st.Owner == req.Owner && o.st.Name == req.Name {
			return jobrunner.Status{}, fmt.Errorf("%w: %q", jobrunner.ErrNameTaken, req.Name)
		}
	}
	j := &fakeJob{done: make(chan struct{})}
	j.st = jobrunner.Status{
		ID: f.newIDLocked(), Owner: req.Owner, Name: req.Name, Init: req.Init, Command: req.Command, Args: req.Args, Dir: req.Dir,
		Limits: req.Limits, State: jobrunner.StateRunning, ExitCode: -1, Started: time.Now(),
	}
	if req.Stdin {
		j.input = &fakeInput{release: make(chan struct{}, 100), attached: make(chan struct{}, 100)}
		j.st.Stdin, j.st.TTY = true, req.TTY
	}
	switch req.Command {
	case "sleep", "emit":
		var off int64
		for i, a := range req.Args {
			s := jobrunner.Stdout
			if i%2 == 1 {
				s = jobrunner.Stderr
			}
			j.out = append(j.out, jobrunner.Chunk{Stream: s, Offset: off, Data: []byte(a)})
			off += int64(len(a))
		}
		j.st.OutputBytes = off
		if req.Command == "emit" {
			j.endLocked(3, 0, jobrunner.ReasonNone)
		}
	case "gappy":
		j.out = []jobrunner.Chunk{{Stream: jobrunner.Stdout, Data: []byte("a")}, {Offset: 1, Dropped: 5},
			{Stream: jobrunner.Stdout, Offset: 1, Data: []byte("b")}}
		j.st.OutputBytes, j.st.OutputTruncated, j.st.OutputDropped = 2, true, 5
		j.st.OutputTruncation, j.st.OutputError = jobrunner.TruncatedWriteError, "no space left on device"
		j.endLocked(0, 0, jobrunner.ReasonNone)
	default:
		j.endLocked(0, 0, jobrunner.ReasonNone)
	}
	f.jobs[j.st.ID] = j
	return j.st, nil
}

// endLocked ends the job, stopped for reason (ReasonNone: it ended by
// itself); the runner's mu is held.
func (j *fakeJob) endLocked(code, sig int, reason jobrunner.EndReason) {
	j.st.State = jobrunner.StateCompleted
	if code != 0 || sig != 0 {
		j.st.State = jobrunner.StateFailed
	}
	j.st.ExitCode, j.st.Signal = code, sig
	j.st.Stopped, j.st.Reason = reason != jobrunner.ReasonNone, reason
	j.st.Ended = time.Now()
	close(j.done)
}

func (f *fakeRunner) Stop(ctx context.Context, id string, grace time.Duration) (jobrunner.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return jobrunner.Status{}, fmt.Errorf("%w: %s", jobrunner.ErrJobNotFound, id)
	}
	if j.st.State != jobrunner.StateRunning {
		return j.st, fmt.Errorf("%w: %s", jobrunner.ErrNotRunning, id)
	}
	j.endLocked(-1, 9, jobrunner.ReasonStopped)
	return j.st, nil
}

func (f *fakeRunner) Status(id string) (jobrunner.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return jobrunner.Status{}, fmt.Errorf("%w: %s", jobrunner.ErrJobNotFound, id)
	}
	return j.st, nil
}

func (f *fakeRunner) List() []jobrunner.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []jobrunner.Status
	for _, j := range f.jobs {
		out = append(out, j.st)
	}
	slices.SortFunc(out, func(a, b jobrunner.Status) int {
		return cmp.Or(a.Started.Compare(b.Started), strings.Compare(a.ID, b.ID))
	})
	return out
}

// admitLocked applies req.Quota to the running jobs as jobrunner.Runner
// does (Start holds mu throughout, so the count cannot change under it).
func (f *fakeRunner) admitLocked(req jobrunner.StartRequest) error {
	total, owned := 0, 0
	for _, j := range f.jobs {
		if j.st.State == jobrunner.StateRunning {
			total++
			if j.st.Owner == req.Owner {
				owned++
			}
		}
	}
	q := req.Quota
	if q.PerOwner > 0 && owned >= q.PerOwner {
		return &jobrunner.QuotaError{Owner: req.Owner, PerOwner: true, Limit: q.PerOwner, Owned: owned, Total: total}
	}
	if q.Total > 0 && total >= q.Total {
		return &jobrunner.QuotaError{Owner: req.Owner, Limit: q.Total, Owned: owned, Total: total}
	}
	return nil
}

// WatchChunks hands out the job's chunks as they were written, ignoring
// maxChunk, so that the server's own splitting is tested too.
func (f *fakeRunner) WatchChunks(ctx context.Context, id string, from int64, _ int, fn func(jobrunner.Chunk) error) (jobrunner.Status, error) {
	f.mu.Lock()
	j, ok := f.jobs[id]
	f.mu.Unlock()
	if !ok {
		return jobrunner.Status{}, fmt.Errorf("%w: %s", jobrunner.ErrJobNotFound, id)
	}
	if err := f.watchChunks(ctx, j, from, fn); err != nil {
		return jobrunner.Status{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return j.st, nil // even if removed meanwhile
}

func (f *fakeRunner) watchChunks(ctx context.Context, j *fakeJob, from int64, fn func(jobrunner.Chunk) error) error {
	f.mu.Lock()
	out, done, total := slices.Clone(j.out), j.done, j.st.OutputBytes
	f.mu.Unlock()
	if from < 0 || from > total {
		return fmt.Errorf("%w: %d", jobrunner.ErrInvalidOffset, from)
	}
	for _, c := range out {
		end := c.Offset + int64(len(c.Data))
		if c.Dropped > 0 {
			if c.Offset >= from {
				if err := fn(c); err != nil {
					return err
				}
			}
			continue
		}
		if end <= from {
			continue
		}
		if c.Offset < from {
			c.Data, c.Offset = c.Data[from-c.Offset:], from
		}
		// Data is only valid during fn: hand out a buffer that is
		// scribbled over afterwards, as a real runner may reuse it.
		buf := slices.Clone(c.Data)
		c.Data = buf
		err := fn(c)
		for i := range buf {
			buf[i] = 'X'
		}
		if err != nil {
			return err
		}
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeRunner) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdown = true
	for _, j := range f.jobs {
		if j.st.State == jobrunner.StateRunning {
			j.endLocked(-1, 9, jobrunner.ReasonServerShutdown)
		}
	}
	return nil
}

// newIDLocked is the next id: a fixed one when the test queued some in
// ids (to test prefixes), else a random one. f.mu is held.
func (f *fakeRunner) newIDLocked() string {
	if len(f.ids) > 0 {
		id := f.ids[0]
		f.ids = f.ids[1:]
		return id
	}
	return randomID()
}

func (f *fakeRunner) Refs() []jobrunner.Ref {
	f.mu.Lock()
	defer f.mu.Unlock()
	var refs []jobrunner.Ref
	for _, j := range f.jobs {
		refs = append(refs, jobrunner.Ref{ID: j.st.ID, Owner: j.st.Owner, Name: j.st.Name})
	}
	return refs
}

// Signal records the signal; SIGKILL ends a running job.
func (f *fakeRunner) Signal(id string, sig syscall.Signal, all bool) (jobrunner.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return jobrunner.Status{}, fmt.Errorf("%w: %s", jobrunner.ErrJobNotFound, id)
	}
	if j.st.State != jobrunner.StateRunning {
		return j.st, fmt.Errorf("%w: %s", jobrunner.ErrNotRunning, id)
	}
	f.signals = append(f.signals, fakeSignal{id, sig, all})
	if sig == syscall.SIGKILL {
		j.endLocked(-1, int(sig), jobrunner.ReasonNone)
	}
	return j.st, nil
}

// TailOffset counts lines as OutputLog.TailOffset does.
func (f *fakeRunner) TailOffset(id string, n int64, s jobrunner.Stream) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return 0, fmt.Errorf("%w: %s", jobrunner.ErrJobNotFound, id)
	}
	if n == 0 {
		return j.st.OutputBytes, nil
	}
	last := true // the first byte of s seen from the end is its last
	for k := len(j.out) - 1; k >= 0; k-- {
		c := j.out[k]
		if s != 0 && c.Stream != s {
			continue
		}
		for i := len(c.Data) - 1; i >= 0; i-- {
			if c.Data[i] == '\n' && !last {
				if n--; n == 0 {
					return c.Offset + int64(i) + 1, nil
				}
			}
			last = false
		}
	}
	return 0, nil
}

func (f *fakeRunner) isShutdown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shutdown
}

func (f *fakeRunner) lastStart() jobrunner.StartRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.starts[len(f.starts)-1]
}

// fakeInput records what a writer sent to a fake job started with Stdin.
type fakeInput struct {
	// mu guards the fields below.
	mu       sync.Mutex
	holder   string
	data     []byte
	sizes    [][2]uint16
	closed   bool
	release  chan struct{} // gets a value on every Release
	attached chan struct{} // gets a value on every attach
}

func (f *fakeRunner) AttachInput(id, holder string) (jobrunner.Input, error) {
	f.mu.Lock()
	j, ok := f.jobs[id]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", jobrunner.ErrJobNotFound, id)
	}
	in := j.input
	if in == nil {
		return nil, fmt.Errorf("%w: %s", jobrunner.ErrNoInput, id)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil, jobrunner.ErrInputClosed
	}
	if in.holder != "" {
		return nil, fmt.Errorf("%w (%s)", jobrunner.ErrInputBusy, in.holder)
	}
	in.holder = holder
	in.attached <- struct{}{}
	return &fakeHold{in: in, done: j.done}, nil
}

// fakeHold is one writer's hold on a fakeInput.
type fakeHold struct {
	in       *fakeInput
	done     chan struct{}
	released bool
}

func (h *fakeHold) Done() <-chan struct{} { return h.done }

func (h *fakeHold) Write(ctx context.Context, p []byte) (int, error) {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	h.in.data = append(h.in.data, p...)
	return len(p), nil
}

func (h *fakeHold) Resize(rows, cols uint16) error {
	h.in.mu.Lock()
	defer h.in.mu.Unlock()
	h.in.sizes = append(h.in.sizes, [2]uint16{rows, cols})
	return nil
}

func (h *fakeHold) Close() error {
	h.in.mu.Lock()
	h.in.closed = true
	h.in.mu.Unlock()
	h.Release()
	return nil
}

func (h *fakeHold) Release() {
	if h.released {
		return
	}
	h.released = true
	h.in.mu.Lock()
	h.in.holder = ""
	h.in.mu.Unlock()
	h.in.release <- struct{}{}
}

// input returns the fake input of job name ("jobs/ID").
func (f *fakeRunner) input(name string) *fakeInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jobs[strings.TrimPrefix(name, "jobs/")].input
}
