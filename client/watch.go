package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/limits"
)

// WatchCommand is `telehandler watch JOB`.
func WatchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "stream a job's output from its first byte and exit with its exit code",
		ArgsUsage: "JOB",
		Description: `Writes the job's stdout to stdout and its stderr to stderr, from the first byte
the job wrote, then follows the output live until the job ends, and exits with
the job's exit code (128+N when signal N killed it), like ssh does.

A broken connection is resumed where it stopped; if that fails, watch prints
the error and exits non-zero (never 0). Ctrl-C stops watching, not the job.
JOB is jobs/ID or ID.

Between stdout and stderr, output comes in the order the server read the
job's two pipes, which is not always the order the job wrote them: start
the job with --merge (2>&1) for the exact order.

Output the server dropped (past its output cap, or when its disk was full)
is reported on stderr, where it is missing, and watch then exits non-zero
(1 when the job itself succeeded). A job the server stopped because it
shut down says so, and watch exits as for any stopped job.

Example:
  JOB=$(telehandler start -- sh -c 'echo out; echo err >&2; exit 3')
  telehandler watch $JOB; echo "exit status $?"     # out, err, exit status 3`,
		Flags:  connFlags(),
		Action: runWatch,
	}
}

func runWatch(c *cli.Context) error {
	name, err := jobArg(c)
	if err != nil {
		return err
	}
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	return watchJob(c.Context, conn, name, c.App.Writer, c.App.ErrWriter, firstRetry)
}

// Resuming a broken watch: this many attempts in a row without progress,
// waiting from firstRetry, doubling each time.
const (
	maxRetries = 5
	firstRetry = 250 * time.Millisecond
)

// watchJob streams the job's output to stdout and stderr until it ended,
// then returns an *ExitError with the job's exit code (nil for 0). Ctrl-C
// (SIGINT) or SIGTERM stops watching and leaves the job running. A stream
// broken by an unavailable server is resumed at the last byte received,
// waiting backoff before the first retry and twice as long each time.
func watchJob(parent context.Context, conn *Conn, name string, stdout, stderr io.Writer, backoff time.Duration) error {
	return watchJobFrom(parent, conn, name, 0, stdout, stderr, backoff)
}

// watchJobFrom is watchJob from output offset from (attach starts at the
// current end).
func watchJobFrom(parent context.Context, conn *Conn, name string, from int64, stdout, stderr io.Writer, backoff time.Duration) error {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	shown := safeText(name) // the name in our messages; the server may have chosen it

	var (
		offset = from
		job    *pb.Job // the job as it ended, from the stream's last message
	)
	retries, wait := 0, backoff
	for {
		n, final, err := streamOutput(ctx, conn, name, offset, stdout, stderr)
		offset += n
		if err == nil {
			job = final
			break
		}
		if isCanceled(ctx, err) {
			return &ExitError{Code: 130, Msg: fmt.Sprintf("stopped watching %s; the job keeps running (telehandler stop %s ends it)", shown, shown)}
		}
		if status.Code(err) != codes.Unavailable || handshakeFailed(err) {
			return conn.explain(err)
		}
		if n > 0 {
			retries, wait = 0, backoff
		}
		if retries++; retries > maxRetries {
			return fmt.Errorf("watch %s broke at byte %d: %w", shown, offset, conn.explain(err))
		}
		fmt.Fprintf(stderr, "telehandler: connection lost (%s); resuming %s at byte %d\n", safeText(status.Convert(err).Message()), shown, offset)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return &ExitError{Code: 130, Msg: fmt.Sprintf("stopped watching %s; the job keeps running", shown)}
		}
		wait *= 2
	}

	// The stream ended after the job's last byte; its last message says
	// how the job ended (a server without it is asked).
	if job == nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := conn.GetJobStatus(sctx, &pb.GetJobStatusRequest{Name: name})
		if err != nil {
			return fmt.Errorf("output of %s complete, but its status: %w", shown, conn.explain(err))
		}
		job = resp.GetJob()
	}
	st := job.GetStatus()
	if st.GetState() == pb.State_STATE_RUNNING {
		return fmt.Errorf("the output stream of %s ended while the job still runs", shown)
	}
	if total := st.GetOutputBytes(); offset != total {
		return fmt.Errorf("the output stream of %s ended at byte %d of %d: output was lost", shown, offset, total)
	}
	if st.GetOomKilled() {
		fmt.Fprintf(stderr, "telehandler: %s ran out of memory (limit %s) and was killed\n", shown, limits.FormatBytes(job.GetLimits().GetMemoryBytes()))
	}
	if st.GetEndReason() == pb.EndReason_END_REASON_SERVER_SHUTDOWN {
		fmt.Fprintf(stderr, "telehandler: %s was stopped by server shutdown\n", shown)
	}
	if st.GetEndReason() == pb.EndReason_END_REASON_SERVER_LOST {
		fmt.Fprintf(stderr, "telehandler: %s ended with the server, which stopped while it ran (killed or crashed): its output until then is all there is\n", shown)
	}
	code := jobExitCode(st)
	if st.GetOutputTruncated() {
		// Never exit 0 for output that was not delivered.
		fmt.Fprintf(stderr, "telehandler: the output of %s is incomplete: %s\n", shown, describeTruncation(st))
		code = max(code, 1)
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// streamOutput runs one WatchJobOutput call from offset and returns how
// many bytes it wrote and, once the stream ended cleanly, a nil error and
// the job from its last message (nil from a server that sends none). Gaps
// (output the server dropped) are reported on stderr where they occur.
func streamOutput(ctx context.Context, conn *Conn, name string, offset int64, stdout, stderr io.Writer) (int64, *pb.Job, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: name, Offset: offset})
	if err != nil {
		return 0, nil, err
	}
	var (
		n   int64
		job *pb.Job
	)
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, job, nil
		}
		if err != nil {
			return n, nil, err
		}
		if m.GetJob() != nil {
			job = m.GetJob()
			continue
		}
		if m.GetOffset() != offset+n {
			return n, nil, fmt.Errorf("output of %s jumped from byte %d to %d", safeText(name), offset+n, m.GetOffset())
		}
		if d := m.GetDroppedBytes(); d > 0 {
			fmt.Fprintf(stderr, "telehandler: %d bytes of output missing here: the server could not write them to its disk\n", d)
			continue
		}
		w := stdout
		if m.GetStream() == pb.Stream_STREAM_STDERR {
			w = stderr
		}
		if _, err := w.Write(m.GetData()); err != nil {
			return n, nil, fmt.Errorf("write output: %w", err)
		}
		n += int64(len(m.GetData()))
	}
}

// handshakeFailed reports whether a call failed because TLS was refused: we
// did not trust the server's certificate, or (a TLS alert from the server)
// it did not accept ours. Retrying cannot fix a certificate.
func handshakeFailed(err error) bool {
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "authentication handshake failed") || strings.Contains(msg, "remote error: tls:")
}
