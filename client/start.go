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
	"unicode/utf8"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/limits"
)

// StartCommand is `telehandler start [flags] -- CMD [ARGS...]`.
func StartCommand() *cli.Command {
	flags := append(connFlags(),
		&cli.BoolFlag{
			Name:    "watch",
			Aliases: []string{"w"},
			Usage:   "stream the job's output and exit with its exit code, like telehandler watch; Ctrl-C is sent to the job (twice within 1s: detach)",
		},
		&cli.StringFlag{
			Name:  "name",
			Usage: "name the job (unique among your jobs; letters, digits, '.', '_', '-'), to use instead of its id",
		},
		&cli.BoolFlag{
			Name:  "init",
			Usage: "run the command under a minimal init that forwards signals and reaps zombies (for commands without signal handlers)",
		},
		&cli.BoolFlag{
			Name:  "rm",
			Usage: "with --watch: remove the job (status and output) once it ended and its whole output was written here",
		},
		&cli.StringFlag{
			Name:    "dir",
			Usage:   "absolute working directory of the job (default: its own writable home, /home/job)",
			EnvVars: []string{"TELEHANDLER_DIR"},
		},
		&cli.StringFlag{
			Name:    "image",
			Usage:   "run the job in the server's root file system NAME (serve --image NAME=DIR) instead of the host's",
			EnvVars: []string{"TELEHANDLER_IMAGE"},
		},
		&cli.BoolFlag{
			Name:  "merge",
			Usage: "send the job's stderr into its stdout pipe, as 2>&1 does: one stream, in the exact order written",
		},
		&cli.BoolFlag{
			Name:    "interactive",
			Aliases: []string{"i"},
			Usage:   "pass your stdin on to the job's stdin (to its EOF); without it the job's stdin is /dev/null",
		},
		&cli.BoolFlag{
			Name:    "tty",
			Aliases: []string{"t"},
			Usage:   "give the job a terminal and attach yours to it (implies -i and --watch; Ctrl-P Ctrl-Q detaches)",
		},
		&oneNameFlag{&cli.StringSliceFlag{
			Name:    "env",
			Aliases: []string{"e"},
			Usage:   "environment variable KEY=VALUE of the job, or KEY to pass yours on (repeatable, -e and --env mixed; default a minimal PATH and HOME)",
		}},
	)
	flags = append(flags, &cli.BoolFlag{
		Name:    "network",
		Usage:   "give the job the network: egress to the outside through the server's NAT and DNS, never the server's host or other jobs (the server must run with serve --network)",
		EnvVars: []string{"TELEHANDLER_NETWORK"},
	})
	flags = append(flags, limits.Flags("", "%s (default: the server's)", nil)...)
	return &cli.Command{
		Name:      "start",
		Usage:     "start a job and print its name",
		ArgsUsage: "-- COMMAND [ARGS...]",
		Description: `Starts COMMAND (looked up in PATH) on the server, in its own namespaces and
cgroup, and prints the job's name (jobs/ID) alone on stdout once the command
runs. A command that cannot start (missing binary, bad --dir) is an error;
with --watch, a command that does not exist exits 127 and one that cannot be
executed 126, as with ssh and docker run.
Put -- before the command so that its own flags are not taken for start's.

With --watch --rm the job is removed from the server once it ended and its
whole output reached this terminal, as docker run --rm does; if watching stops
early (Ctrl-C, a lost connection) the job is kept. --rm needs --watch: a job
nobody watched would be removed before anyone saw its output.

stdout and stderr are two pipes, read apart: watch keeps them apart, but
between the two the order is the order the server read them, which is not
always the order the job wrote them. --merge gives the job one pipe for both
(stderr goes to stdout, as 2>&1 does) when the exact interleaving matters.

Limits not given take the server's defaults (10% of one CPU, 512 MiB of
memory, 100 MiB/s and 1000 IOPS of disk IO per direction, 1024 processes,
10 MiB/s of network each way) and may not exceed the server's maxima.

A job has no network (only lo) unless started with --network, on a server
that allows it: then it can reach the outside world, by name, and nothing
of the server's host, other jobs or cloud metadata addresses.

--name gives the job a name of yours that every command takes instead of its
id. With --watch, Ctrl-C (and SIGTERM, SIGHUP) is sent to the job, as docker
run does; a second Ctrl-C within a second detaches, leaving the job running.
The command is PID 1 of its namespace, so it gets only the signals it has a
handler for: --init runs it under a minimal init (forwarding signals, reaping
zombies; about 2.5 MiB per job) so that a plain "sleep" ends on Ctrl-C or
stop --grace. The job's status is then 128+N when signal N killed the command.

Examples:
  JOB=$(telehandler start -- sh -c 'echo out; echo err >&2; exit 3')
  telehandler start --watch --cpu 50% --memory 64MiB -- sh -c 'echo hello from $(hostname)'
  telehandler start --env GREETING=hi --dir /tmp -- sh -c 'pwd; echo $GREETING'
  telehandler start --watch --rm -- make test
  telehandler start --watch --merge -- sh -c 'echo out; echo err >&2'   # out, err in order, on stdout
  telehandler start --watch --image alpine -- cat /etc/alpine-release
  telehandler start --watch --network --network-bps 1MiB -- wget -O- https://example.com/
  telehandler start --name web --init -- python3 -m http.server
  telehandler start --watch --init -- sleep 1000      # Ctrl-C ends it

Interactive jobs: -i streams your stdin to the job's (flow-controlled, EOF
included); with --watch you see the output too. -t gives the job a terminal
of its own and puts yours in raw mode until the job ends or you detach with
Ctrl-P Ctrl-Q (telehandler attach JOB re-attaches); it exits with the job's
exit code.
  tar c mydir | telehandler start -i -- tar x -C /tmp
  echo hi | telehandler start -i --watch -- cat
  telehandler start -it -- sh`,

		Flags:  flags,
		Action: runStart,
		// -it is -i -t, as in docker.
		UseShortOptionHandling: true,
	}
}

func runStart(c *cli.Context) error {
	if c.NArg() == 0 {
		return errors.New("missing COMMAND: telehandler start [flags] -- COMMAND [ARGS...]")
	}
	if c.Bool("rm") && !c.Bool("watch") && !c.Bool("tty") {
		return errors.New("--rm needs --watch: the job is removed once its output was delivered to the watcher (without --watch, remove it later with telehandler rm JOB)")
	}
	lim, err := limits.FromFlags(c, "")
	if err != nil {
		return err
	}
	env, err := envArgs(c.StringSlice("env"))
	if err != nil {
		return err
	}
	tty := c.Bool("tty")
	interactive := c.Bool("interactive") || tty
	stdin := os.Stdin
	if tty && !term.IsTerminal(int(stdin.Fd())) {
		return errors.New("-t needs a terminal on stdin; to pass a pipe or a file on, use -i alone")
	}
	if !interactive && stdinHasData(stdin) {
		fmt.Fprintln(c.App.ErrWriter, "telehandler: warning: your stdin has data, but the job's stdin is /dev/null; use start -i to pass it on")
	}
	if err := textOnly(c.Args().Slice(), env, c.String("dir")); err != nil {
		return err
	}
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()

	// With --watch (not interactive: a terminal sends Ctrl-C as a byte),
	// signals are caught from before the job exists: one that comes while
	// it starts is sent to it once it runs.
	var sigs chan os.Signal
	if c.Bool("watch") && !interactive {
		sigs = make(chan os.Signal, 8)
		signal.Notify(sigs, forwardedSignals...)
		defer signal.Stop(sigs)
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	req := &pb.StartJobRequest{
		Command:     c.Args().First(),
		Args:        c.Args().Tail(),
		WorkingDir:  c.String("dir"),
		Env:         env,
		Limits:      limitsToProto(lim),
		DisplayName: c.String("name"),
		Init:        c.Bool("init"),
		// stream (issue 10.6)
		MergeOutput: c.Bool("merge"),
		// interactive (issue 12)
		Stdin: interactive,
		Tty:   tty,
		// iso (issue 8)
		Image: c.String("image"),
		// net (issue 13)
		Network: c.Bool("network"),
	}
	if tty {
		req.TtySize = windowSize(int(stdin.Fd()))
	}
	resp, err := conn.StartJob(ctx, req)
	if err != nil {
		explained := conn.explain(err)
		if c.Bool("watch") {
			// As ssh and docker run do for a command that is not there
			// (127) or cannot be run (126).
			switch reasonOf(err) {
			case pb.ErrorReason_ERROR_REASON_COMMAND_NOT_FOUND:
				return &ExitError{Code: 127, Msg: explained.Error()}
			case pb.ErrorReason_ERROR_REASON_COMMAND_NOT_EXECUTABLE:
				return &ExitError{Code: 126, Msg: explained.Error()}
			}
		}
		return explained
	}
	name := resp.GetJob().GetName()
	switch {
	case tty || (interactive && c.Bool("watch")):
		s := &session{conn: conn, name: name, tty: tty, stdin: stdin, stdout: c.App.Writer, stderr: c.App.ErrWriter}
		err = s.run(c.Context)
	case interactive:
		if _, err := fmt.Fprintln(c.App.Writer, safeText(name)); err != nil {
			return err
		}
		return feedStdin(c.Context, conn, name, stdin, c.App.ErrWriter)
	case !c.Bool("watch"):
		_, err := fmt.Fprintln(c.App.Writer, safeText(name))
		return err
	default:
		wctx, detach := context.WithCancel(c.Context)
		defer detach()
		fwd := forwardSignals(wctx, conn, name, sigs, c.App.ErrWriter, detach)
		err = watchJob(wctx, conn, name, c.App.Writer, c.App.ErrWriter, firstRetry, watchOptions{signals: true})
		detach()
		if <-fwd {
			shown := safeText(name)
			return &ExitError{Code: 130, Msg: fmt.Sprintf("detached from %s; it keeps running (telehandler watch %s follows it, telehandler stop %s ends it)", shown, shown, shown)}
		}
	}
	if c.Bool("rm") && delivered(err) {
		rctx, cancel := context.WithTimeout(c.Context, time.Minute)
		defer cancel()
		if _, rerr := conn.DeleteJob(rctx, &pb.DeleteJobRequest{Name: name}); rerr != nil {
			fmt.Fprintf(c.App.ErrWriter, "telehandler: --rm: %s was not removed: %s\n", safeText(name),
				strings.ReplaceAll(conn.explain(rerr).Error(), "\n", "\ntelehandler: "))
		}
	}
	return err
}

// delivered reports whether watchJob's result means the job ended and
// its whole output was written: success, or the job's own non-zero exit
// status (an ExitError without a message of its own).
func delivered(err error) bool {
	var ee *ExitError
	return err == nil || (errors.As(err, &ee) && ee.Msg == "")
}

// oneNameFlag is a repeatable flag whose long and short names may be mixed
// (--env A=1 -e B=2): urfave/cli refuses "two forms of the same flag" for
// aliases, although both names fill one list, in order. Reporting one
// name to that check (Names) keeps both registered (Apply) and listed in
// --help (String).
type oneNameFlag struct{ *cli.StringSliceFlag }

func (f *oneNameFlag) Names() []string { return []string{f.Name} }

// envArgs checks --env values: KEY=VALUE is kept, a bare KEY takes the
// value from this process's environment (as docker run -e does).
// textOnly refuses a command line, environment or directory that is not
// UTF-8 before it is sent: the API's strings are text, and gRPC would
// refuse it with an internal error naming none of them.
func textOnly(argv, env []string, dir string) error {
	const fix = "the API carries UTF-8 text only: pass other bytes in a file, or encoded (base64)"
	for i, a := range argv {
		if !utf8.ValidString(a) {
			if i == 0 {
				return fmt.Errorf("command %s is not UTF-8; %s", shellQuote(a, nil), fix)
			}
			return fmt.Errorf("argument %d (%s) is not UTF-8; %s", i, shellQuote(a, nil), fix)
		}
	}
	for _, e := range env {
		if !utf8.ValidString(e) {
			return fmt.Errorf("--env %s is not UTF-8; %s", shellQuote(e, nil), fix)
		}
	}
	if !utf8.ValidString(dir) {
		return fmt.Errorf("--dir %s is not UTF-8; %s", shellQuote(dir, nil), fix)
	}
	return nil
}

func envArgs(vals []string) ([]string, error) {
	var env []string
	for _, v := range vals {
		k, _, ok := strings.Cut(v, "=")
		if k == "" {
			return nil, fmt.Errorf("--env %q: expected KEY=VALUE", v)
		}
		if !ok {
			val, set := os.LookupEnv(k)
			if !set {
				return nil, fmt.Errorf("--env %s: not set here; give KEY=VALUE", k)
			}
			v = k + "=" + val
		}
		env = append(env, v)
	}
	return env, nil
}

// feedStdin streams stdin into the job's stdin until EOF, which it passes
// on (start -i without --watch). Ctrl-C stops it and leaves the job's stdin
// open for telehandler attach.
func feedStdin(parent context.Context, conn *Conn, name string, stdin io.Reader, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res := sendInput(ctx, conn, inputConfig{name: name, in: stdin})
	name = safeText(name)
	if isCanceled(ctx, res.err) {
		return &ExitError{Code: 130, Msg: fmt.Sprintf("stopped sending input to %s after %d bytes; its stdin stays open (telehandler attach %s)", name, res.sent, name)}
	}
	if err := inputError(ctx, conn, res); err != nil {
		return err
	}
	if res.written < res.sent {
		fmt.Fprintf(stderr, "telehandler: %s stopped reading its stdin after %d of %d bytes\n", name, res.written, res.sent)
	}
	return nil
}
