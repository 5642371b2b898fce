package client

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// session is an interactive job seen from this terminal: its input from
// our stdin, its output (from byte from) to our stdout and stderr.
type session struct {
	conn *Conn
	name string
	// tty: the job has a terminal; ours goes raw while attached.
	tty bool
	// from is the output offset to show from (0 for a new job; the
	// current end when attaching).
	from           int64
	stdin          *os.File
	stdout, stderr io.Writer
}

// run streams input and output until the job ends (then it returns the
// job's exit status, as watch does), the user detaches (nil, after saying
// how to re-attach), or a signal stops it (the job keeps running). For a
// terminal session our terminal is raw (Ctrl-C, Ctrl-Z, Ctrl-D are bytes
// for the job) and restored on every way out: the job's end, a detach,
// SIGTERM, SIGHUP, SIGINT, an error or a panic.
func (s *session) run(parent context.Context) error {
	ctx, stop := signal.NotifyContext(parent, syscall.SIGTERM, syscall.SIGHUP, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	cfg := inputConfig{name: s.name, in: s.stdin, tty: s.tty}
	if s.tty {
		fd := int(s.stdin.Fd())
		old, err := term.MakeRaw(fd)
		if err != nil {
			return fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		defer term.Restore(fd, old)
		cfg.size = windowSize(fd)
		resize := make(chan *pb.WindowSize, 1)
		cfg.resize = resize
		winch := make(chan os.Signal, 1)
		notifyWinch(winch)
		defer signal.Stop(winch)
		go forwardResizes(ctx, fd, winch, resize)
	}

	inputDone := make(chan inputResult, 1)
	go func() { inputDone <- sendInput(ctx, s.conn, cfg) }()
	watchDone := make(chan error, 1)
	go func() { watchDone <- watchJobFrom(ctx, s.conn, s.name, s.from, s.stdout, s.stderr, firstRetry) }()

	for {
		select {
		case err := <-watchDone:
			return err
		case res := <-inputDone:
			inputDone = nil
			if res.detached && s.tty {
				cancel()
				<-watchDone
				// The job's prompt may have left the cursor mid-line.
				fmt.Fprint(s.stderr, "\r\n")
				name := safeText(s.name)
				return &ExitError{Code: 0, Msg: fmt.Sprintf("detached from %s, which keeps running; telehandler attach %s re-attaches", name, name)}
			}
			if err := inputError(ctx, s.conn, res); err != nil {
				// Refused (someone else holds the input, the job has
				// none) or broken: the session is over.
				cancel()
				<-watchDone
				return err
			}
		}
	}
}

// inputError is the error of an input stream worth telling the user: not
// the end of our own context (a job that ended or stopped reading ends the
// stream without an error: its output says how it ended).
func inputError(ctx context.Context, conn *Conn, res inputResult) error {
	if res.err == nil || isCanceled(ctx, res.err) {
		return nil
	}
	err := conn.explain(res.err)
	if status.Code(res.err) == codes.FailedPrecondition && strings.Contains(err.Error(), "held by") {
		return fmt.Errorf("%w\nhint: one writer at a time: the other must detach first (Ctrl-P Ctrl-Q, or Ctrl-C without a terminal)", err)
	}
	return err
}

// windowSize is the size of the terminal fd, nil when unknown.
func windowSize(fd int) *pb.WindowSize {
	cols, rows, err := term.GetSize(fd)
	if err != nil {
		return nil
	}
	return &pb.WindowSize{Rows: uint32(rows), Cols: uint32(cols)}
}

// forwardResizes puts the terminal's size on resize at every SIGWINCH,
// replacing a size not sent yet, until ctx ends.
func forwardResizes(ctx context.Context, fd int, winch <-chan os.Signal, resize chan *pb.WindowSize) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-winch:
		}
		ws := windowSize(fd)
		if ws == nil {
			continue
		}
		select {
		case <-resize: // drop the older size
		default:
		}
		resize <- ws
	}
}
