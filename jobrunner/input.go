package jobrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/drrev/telehandler/sandbox"
)

// jobInput is the writing end of a job's input: the write end of its stdin
// pipe, or the master of its terminal (shared with the drain that reads the
// job's output from it, which closes it). One writer holds it at a time.
type jobInput struct {
	f   *os.File
	tty bool

	// mu guards holder and closed.
	mu sync.Mutex
	// holder names the writer holding the input ("" = nobody).
	holder string
	// closed is set once the stdin pipe was closed (EOF sent, or the job
	// ended); a terminal is never closed by its writers.
	closed bool
}

// closeStdin closes a stdin pipe (the job reads EOF); a no-op for a terminal
// and when already closed.
func (in *jobInput) closeStdin() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.tty || in.closed {
		return nil
	}
	in.closed = true
	return in.f.Close()
}

// Input is one writer's exclusive hold on a job's input, from AttachInput
// until Release (or Close). Its methods are for one goroutine. (An
// interface so that the server's tests can fake it.)
type Input interface {
	// Write writes p to the job's stdin or terminal and returns once all
	// of it was written: it blocks while the job does not read (a full
	// pipe or terminal buffer), which is the flow control of a writer
	// feeding a job. It returns early with ctx's error when ctx ends, and
	// with ErrInputClosed when the job closed its input or ended; n is
	// what was written.
	Write(ctx context.Context, p []byte) (n int, err error)
	// Resize sets the size of the job's terminal (the job gets SIGWINCH);
	// a no-op for a job without one.
	Resize(rows, cols uint16) error
	// Close closes the job's stdin (it reads EOF; nobody can attach any
	// more) and releases the input. For a terminal it only releases it:
	// the terminal lives as long as the job, and Ctrl-D is a byte like
	// any other.
	Close() error
	// Release lets the next writer attach; the job's input stays open.
	// Safe to call more than once.
	Release()
	// Done is closed once the job ended: nothing can be written any more
	// (a writer waiting for input to pass on can stop).
	Done() <-chan struct{}
}

// input is the Input of AttachInput.
type input struct {
	in       *jobInput
	done     <-chan struct{} // the job's done
	released bool
}

// AttachInput gives holder the job's input, or fails: ErrJobNotFound,
// ErrNoInput (started without stdin or tty), ErrInputBusy naming the
// current holder, ErrInputClosed (EOF was sent, or the job ended). The
// caller must Release it (or Close it).
func (r *Runner) AttachInput(id, holder string) (Input, error) {
	j, err := r.lookup(id)
	if err != nil {
		return nil, err
	}
	in := j.input
	if in == nil {
		return nil, fmt.Errorf("%w: job %q", ErrNoInput, id)
	}
	select {
	case <-j.done:
		return nil, fmt.Errorf("%w: job %q ended", ErrInputClosed, id)
	default:
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return nil, fmt.Errorf("%w: job %q", ErrInputClosed, id)
	}
	if in.holder != "" {
		return nil, fmt.Errorf("%w (%s)", ErrInputBusy, in.holder)
	}
	in.holder = holder
	return &input{in: in, done: j.done}, nil
}

func (i *input) Write(ctx context.Context, p []byte) (int, error) {
	f := i.in.f
	// A blocked write is interrupted by a deadline in the past, set when
	// ctx ends; the deadline is cleared for the next writer.
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	n, err := f.Write(p)
	if !stop() {
		_ = f.SetWriteDeadline(time.Time{})
	}
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		return n, ctx.Err()
	case errors.Is(err, os.ErrClosed), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.EIO):
		// EPIPE: no process of the job holds its stdin open any more;
		// EIO: nothing of the job holds its terminal.
		return n, ErrInputClosed
	}
	return n, fmt.Errorf("write job input: %w", err)
}

func (i *input) Resize(rows, cols uint16) error {
	if !i.in.tty {
		return nil
	}
	if err := sandbox.SetWindowSize(i.in.f, rows, cols); err != nil {
		if errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EIO) {
			return ErrInputClosed
		}
		return fmt.Errorf("resize job terminal: %w", err)
	}
	return nil
}

func (i *input) Close() error {
	err := i.in.closeStdin()
	i.Release()
	return err
}

func (i *input) Release() {
	if i.released {
		return
	}
	i.released = true
	i.in.mu.Lock()
	i.in.holder = ""
	i.in.mu.Unlock()
}

func (i *input) Done() <-chan struct{} { return i.done }
