package jobrunner

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRunnerInput: a job started with Stdin reads what AttachInput writes,
// byte for byte, then EOF on Close; one writer at a time; a write to a job
// that does not read blocks until its context ends; after the end nothing
// can attach.
func TestRunnerInput(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)

	st, err := e.r.Start(ctx, StartRequest{Command: "cat", Limits: fastLimits(), Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Stdin || st.TTY {
		t.Errorf("status Stdin %v TTY %v, want true false", st.Stdin, st.TTY)
	}
	in, err := e.r.AttachInput(st.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.AttachInput(st.ID, "admin"); !errors.Is(err, ErrInputBusy) || !strings.Contains(err.Error(), "alice") {
		t.Errorf("second AttachInput: %v, want ErrInputBusy naming alice", err)
	}
	data := randomData(t, 8<<20)
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 32<<10)
		if _, err := in.Write(ctx, rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	d := newDigest()
	if err := e.r.watch(ctx, st.ID, 0, d.add); err != nil {
		t.Fatal(err)
	}
	if d.sum() != sum(data) {
		t.Errorf("cat wrote %d bytes that differ from the %d written to its stdin", d.next, len(data))
	}
	end := e.r.mustStatus(t, st.ID)
	if end.State != StateCompleted {
		t.Errorf("cat ended %v, want COMPLETED (it read EOF)", end.State)
	}
	if _, err := e.r.AttachInput(st.ID, "alice"); !errors.Is(err, ErrInputClosed) {
		t.Errorf("AttachInput after the end: %v, want ErrInputClosed", err)
	}

	// A job that never reads: the write blocks (the pipe is full) until
	// its context ends; the input stays open for the next writer.
	st, err = e.r.Start(ctx, StartRequest{Command: "sleep", Args: []string{"100"}, Limits: fastLimits(), Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	in, err = e.r.AttachInput(st.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	n, err := in.Write(wctx, make([]byte, 4<<20))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || n >= 4<<20 {
		t.Errorf("write of 4 MiB to a job that does not read: %d bytes, %v; want it blocked until the deadline", n, err)
	}
	in.Release()
	in, err = e.r.AttachInput(st.ID, "bob")
	if err != nil {
		t.Fatalf("attach after a release: %v", err)
	}
	if _, err := e.r.Stop(ctx, st.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write(ctx, []byte("x")); !errors.Is(err, ErrInputClosed) {
		t.Errorf("write after the job ended: %v, want ErrInputClosed", err)
	}
	in.Release()

	// Without Stdin nothing can attach.
	st, err = e.r.Start(ctx, StartRequest{Command: "true", Limits: fastLimits()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.AttachInput(st.ID, "alice"); !errors.Is(err, ErrNoInput) {
		t.Errorf("AttachInput of a job without stdin: %v, want ErrNoInput", err)
	}
}

// TestRunnerTTY: a TTY job's terminal output is logged as stdout, its input
// and size come through AttachInput, and it ends with its own status.
func TestRunnerTTY(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	st, err := e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", `read a; stty size; echo "got $a"; exit 4`},
		Limits: fastLimits(), Stdin: true, TTY: true, TTYRows: 10, TTYCols: 20})
	if err != nil {
		t.Fatal(err)
	}
	if !st.TTY {
		t.Error("status TTY false for a TTY job")
	}
	in, err := e.r.AttachInput(st.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Resize(30, 90); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write(ctx, []byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	in.Close() // a terminal stays open: only released
	var out strings.Builder
	if err := e.r.watch(ctx, st.ID, 0, func(c Chunk) error {
		if c.Stream != Stdout {
			t.Errorf("terminal output logged as %v", c.Stream)
		}
		out.Write(c.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "30 90\r\n") || !strings.Contains(got, "got hello\r\n") {
		t.Errorf("terminal output %q, want the echo, 30 90 and got hello", got)
	}
	if end := e.r.mustStatus(t, st.ID); end.ExitCode != 4 {
		t.Errorf("job ended with %d, want 4", end.ExitCode)
	}
	e.checkGone(t, st.ID)
}
