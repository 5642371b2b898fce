package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/internal/watchcodec"
	"github.com/drrev/telehandler/limits"
)

// WatchCommand is `telehandler watch [--tail N] [--no-follow] JOB`.
func WatchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "stream a job's output from its first byte (or its last lines) and exit with its exit code",
		ArgsUsage: "JOB",
		Description: `Writes the job's stdout to stdout and its stderr to stderr, from the first byte
the job wrote, then follows the output live until the job ends, and exits with
the job's exit code (128+N when signal N killed it), like ssh does.

--tail N starts at the last N lines instead (stdout and stderr counted
together, in the order written; 0 = only what comes next; with
--tail-per-stream, the last N of each stream); the server finds them without
sending the rest. --no-follow prints the output there is and exits at once:
with the job's exit code if it has ended, 0 while it runs (docker logs
without -f).

A broken connection is resumed where it stopped; if that fails, watch prints
the error and exits non-zero (never 0). Ctrl-C stops watching, not the job
(telehandler kill sends it a signal). JOB is a job's name, its id, a unique
prefix of its id, or jobs/ID.

Between stdout and stderr, output comes in the order the server read the
job's two pipes, which is not always the order the job wrote them: start
the job with --merge (2>&1) for the exact order.

Output the server dropped (past its output cap, or when its disk was full)
is reported on stderr, where it is missing, and watch then exits non-zero
(1 when the job itself succeeded). A job the server stopped because it
shut down says so, and watch exits as for any stopped job.

Examples:
  JOB=$(telehandler start -- sh -c 'echo out; echo err >&2; exit 3')
  telehandler watch $JOB; echo "exit status $?"     # out, err, exit status 3
  telehandler watch --tail 20 web                    # the last 20 lines, then follow
  telehandler watch --tail 5 --no-follow web         # the last 5 lines, then exit`,
		Flags: append(connFlags(),
			&cli.Int64Flag{
				Name:        "tail",
				Usage:       "start at the last `N` lines of the output (stdout and stderr together)",
				DefaultText: "from the first byte",
			},
			&cli.BoolFlag{
				Name:  "tail-per-stream",
				Usage: "with --tail N: the last N lines of stdout and the last N of stderr, each counted on its own",
			},
			&cli.BoolFlag{
				Name:  "no-follow",
				Usage: "print the output there is and exit: with the job's code if it ended, 0 while it runs",
			},
		),
		Action: runWatch,
	}
}

func runWatch(c *cli.Context) error {
	name, err := jobArg(c)
	if err != nil {
		return err
	}
	var opts watchOptions
	if n := c.Int64("tail"); c.IsSet("tail") {
		if n < 0 {
			return fmt.Errorf("--tail %d is negative: give a number of lines (0 = only new output)", n)
		}
		opts.tail = &n
	}
	if c.Bool("tail-per-stream") {
		if opts.tail == nil {
			return errors.New("--tail-per-stream goes with --tail N")
		}
		opts.tailPerStream = true
	}
	opts.noFollow = c.Bool("no-follow")
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	// The reference (a name, an id prefix) is resolved once: every call
	// of this watch then names the same job.
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	resp, err := conn.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
	cancel()
	if err != nil {
		return conn.explain(err)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// One stream: gRPC's reader goroutine reads and decrypts, ours
		// writes, and they hand each message to each other. With a second
		// P every hand-off also wakes a thread (futex, spinning Ms, sysmon
		// retaking Ps from syscalls: a third of watch's CPU in perf); with
		// one, the writer runs when the reader waits on the socket. In
		// alternating runs on a loaded 2-core machine, watch's CPU per GiB
		// went from 1.5-1.7 to 1.0-1.1 at best.
		runtime.GOMAXPROCS(1)
	}
	return watchJob(c.Context, conn, resp.GetJob().GetName(), c.App.Writer, c.App.ErrWriter, firstRetry, opts)
}

// watchOptions are how watchJob starts and ends; the zero value is from
// the first byte to the job's end, with Ctrl-C ending the watch.
type watchOptions struct {
	// tail, when set, starts at the last *tail lines.
	tail *int64
	// tailPerStream counts the tail's lines of each stream on its own.
	tailPerStream bool
	// noFollow ends at the output there is (WatchJobOutputRequest.no_follow).
	noFollow bool
	// from is the output offset to start at without a tail (attach starts
	// at the current end).
	from int64
	// signals, when set, replaces the watch's own Ctrl-C handling: the
	// caller handles the signals (start --watch forwards them to the
	// job) and ends the watch by canceling the context.
	signals bool
}

// Resuming a broken watch: this many attempts in a row without progress,
// waiting from firstRetry, doubling each time.
const (
	maxRetries = 5
	firstRetry = 250 * time.Millisecond
)

// watchJob streams the job's output to stdout and stderr until it ended,
// then returns an *ExitError with the job's exit code (nil for 0). Ctrl-C
// (SIGINT) or SIGTERM stops watching and leaves the job running (unless
// opts.signals). A stream broken by an unavailable server is resumed at
// the last byte received, waiting backoff before the first retry and twice
// as long each time. name must be the job's resource name (jobs/ID).
func watchJob(parent context.Context, conn *Conn, name string, stdout, stderr io.Writer, backoff time.Duration, opts watchOptions) error {
	ctx := parent
	if !opts.signals {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	shown := safeText(name) // the name in our messages; the server may have chosen it

	// With --tail the first byte's offset is the server's to choose: pos
	// is known once a message came (or from the start without --tail).
	pos := position{offset: opts.from, known: opts.tail == nil}
	var job *pb.Job // the job as it ended, from the stream's last message
	retries, wait := 0, backoff
	for {
		req := &pb.WatchJobOutputRequest{Name: name, Offset: pos.offset, NoFollow: opts.noFollow}
		if !pos.known {
			req.TailLines, req.TailPerStream = opts.tail, opts.tailPerStream
		}
		before := pos
		final, err := streamOutput(ctx, conn, req, &pos, stdout, stderr)
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
		if pos != before {
			retries, wait = 0, backoff
		}
		if retries++; retries > maxRetries {
			return fmt.Errorf("watch %s broke at byte %d: %w", shown, pos.offset, conn.explain(err))
		}
		fmt.Fprintf(stderr, "telehandler: connection lost (%s); resuming %s at byte %d\n", safeText(status.Convert(err).Message()), shown, pos.offset)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return &ExitError{Code: 130, Msg: fmt.Sprintf("stopped watching %s; the job keeps running", shown)}
		}
		wait *= 2
	}

	// The stream ended after the job's last byte (or, with no-follow, the
	// last byte there was); its last message says how the job is (a server
	// without it is asked).
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
		if opts.noFollow {
			return nil // documented: 0 while the job runs
		}
		return fmt.Errorf("the output stream of %s ended while the job still runs", shown)
	}
	// With --no-follow the job may have written more since; with --tail
	// and no output at all, where it would have started is unknown.
	if total := st.GetOutputBytes(); !opts.noFollow && pos.known && pos.offset != total {
		return fmt.Errorf("the output stream of %s ended at byte %d of %d: output was lost", shown, pos.offset, total)
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

// watchJobFrom is watchJob from output offset from.
func watchJobFrom(parent context.Context, conn *Conn, name string, from int64, stdout, stderr io.Writer, backoff time.Duration) error {
	return watchJob(parent, conn, name, stdout, stderr, backoff, watchOptions{from: from})
}

// position is where a watch is in the job's output.
type position struct {
	offset int64 // the next byte expected
	known  bool  // false until the server chose the start of a --tail
}

// streamOutput runs one WatchJobOutput call and advances pos past every
// byte it wrote. Once the stream ended cleanly it returns a nil error and
// the job from its last message (nil from a server that sends none). Gaps
// (output the server dropped) are reported on stderr where they occur.
//
// The messages are decoded by watchcodec: each one's data is written from
// gRPC's receive buffers as they are (one writev), then the buffers go back
// to gRPC's pool; no copy, no garbage per message.
func streamOutput(ctx context.Context, conn *Conn, req *pb.WatchJobOutputRequest, pos *position, stdout, stderr io.Writer) (*pb.Job, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.WatchJobOutput(ctx, req, grpc.ForceCodecV2(watchcodec.Codec{}))
	if err != nil {
		return nil, err
	}
	var (
		job *pb.Job
		m   watchcodec.Frame
		iov [][]byte // m's data, for writeBuffers
	)
	defer m.Release()
	for {
		m.Release()
		err := stream.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			return job, nil
		}
		if err != nil {
			return nil, err
		}
		if m.Job != nil {
			job = m.Job
			continue
		}
		if !pos.known {
			pos.offset, pos.known = m.Offset, true
		}
		if m.Offset > pos.offset && req.GetTailPerStream() {
			// Skipped: output of one stream before its own tail.
			pos.offset = m.Offset
		}
		if m.Offset != pos.offset {
			return nil, fmt.Errorf("output of %s jumped from byte %d to %d", safeText(req.GetName()), pos.offset, m.Offset)
		}
		if d := m.Dropped; d > 0 {
			fmt.Fprintf(stderr, "telehandler: %d bytes of output missing here: the server could not write them to its disk\n", d)
			continue
		}
		w := stdout
		if m.Stream == pb.Stream_STREAM_STDERR {
			w = stderr
		}
		iov = iov[:0]
		for _, b := range m.Data {
			iov = append(iov, b.ReadOnlyData())
		}
		if err := writeBuffers(w, iov); err != nil {
			return nil, fmt.Errorf("write output: %w", err)
		}
		pos.offset += int64(m.Data.Len())
	}
}

// writeBuffers writes bufs to w in order, in one writev where w is a file.
func writeBuffers(w io.Writer, bufs [][]byte) error {
	if f, ok := w.(*os.File); ok && len(bufs) > 1 {
		return writevFile(f, bufs)
	}
	return writeEach(w, bufs)
}

// handshakeFailed reports whether a call failed because TLS was refused: we
// did not trust the server's certificate, or (a TLS alert from the server)
// it did not accept ours. Retrying cannot fix a certificate.
func handshakeFailed(err error) bool {
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "authentication handshake failed") || strings.Contains(msg, "remote error: tls:")
}

// writeEach writes bufs to w one after the other.
func writeEach(w io.Writer, bufs [][]byte) error {
	for _, b := range bufs {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}
