package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// KillCommand is `telehandler kill [-s SIGNAL] [--all] JOB...`.
func KillCommand() *cli.Command {
	return &cli.Command{
		Name:      "kill",
		Usage:     "send a signal to jobs (default SIGTERM)",
		ArgsUsage: "JOB...",
		Description: `Sends SIGNAL to each JOB's command, as kill(1) does to a process: the default
is TERM, as with kill(1) (docker kill's default is KILL: use -s KILL, or
telehandler stop, which also waits until every process is gone). SIGNAL is a
name with or without SIG, or its number: HUP INT QUIT KILL USR1 USR2 ALRM TERM
CONT STOP TSTP TTIN TTOU WINCH.

The command is PID 1 of the job's namespace: it gets only the signals it has
a handler for (KILL and STOP always). Start the job with --init for a plain
command to get them, or use --all to signal every process of the job.
JOB is a job's name, its id, a unique prefix of its id, or jobs/ID.

Examples:
  telehandler kill web                 # SIGTERM
  telehandler kill -s HUP web          # reload
  telehandler kill -s INT --all $JOB   # every process of the job`,
		Flags: append(connFlags(),
			&cli.StringFlag{
				Name:    "signal",
				Aliases: []string{"s"},
				Usage:   "the `SIGNAL` to send: a name (TERM, SIGTERM) or a number (15)",
				Value:   "TERM",
			},
			&cli.BoolFlag{
				Name:  "all",
				Usage: "signal every process of the job, not only its command",
			},
		),
		Action: runKill,
	}
}

func runKill(c *cli.Context) error {
	names, err := jobArgs(c)
	if err != nil {
		return err
	}
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	var failed []error
	for _, name := range names {
		ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
		_, err := conn.SignalJob(ctx, &pb.SignalJobRequest{Name: name, Signal: c.String("signal"), All: c.Bool("all")})
		cancel()
		if err != nil {
			if len(names) == 1 {
				return conn.explain(err)
			}
			failed = append(failed, fmt.Errorf("%s: %w", name, conn.explain(err)))
		}
	}
	return errors.Join(failed...)
}

// forwardedSignals are the signals start --watch sends on to the job, as
// docker run does.
var forwardedSignals = []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}

// detachWindow: a second Ctrl-C within it detaches instead of being sent.
const detachWindow = time.Second

// forwardSignals sends every signal from sigs to the job until ctx ends. A
// second SIGINT within detachWindow of the first calls detach instead (the
// job keeps running). The returned channel yields, once ctx ended and every
// send returned, whether it detached. Sends run apart from the loop, so
// that a slow server does not stretch the time between two Ctrl-C.
func forwardSignals(ctx context.Context, conn *Conn, name string, sigs <-chan os.Signal, stderr io.Writer, detach func()) <-chan bool {
	detached := make(chan bool, 1)
	go func() {
		var sends sync.WaitGroup
		defer sends.Wait()
		var lastInt time.Time
		for {
			select {
			case <-ctx.Done():
				sends.Wait()
				detached <- false
				return
			case sig := <-sigs:
				if sig == os.Interrupt {
					if !lastInt.IsZero() && time.Since(lastInt) < detachWindow {
						detach()
						<-ctx.Done()
						sends.Wait()
						detached <- true
						return
					}
					lastInt = time.Now()
				}
				sends.Add(1)
				go func() {
					defer sends.Done()
					sendSignal(ctx, conn, name, sig.(syscall.Signal), stderr)
				}()
			}
		}
	}()
	return detached
}

// sendSignal forwards one signal to the job, saying so on stderr; a job
// that already ended is no error (its end ends the watch).
func sendSignal(ctx context.Context, conn *Conn, name string, sig syscall.Signal, stderr io.Writer) {
	// Not canceled with the watch: a Ctrl-C sent just before detaching
	// still reaches the job.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	sigName := "SIG" + unixSignalName(sig)
	_, err := conn.SignalJob(ctx, &pb.SignalJobRequest{Name: name, Signal: sigName})
	switch {
	case err == nil:
		if sig == syscall.SIGINT {
			fmt.Fprintf(stderr, "telehandler: sent SIGINT to %s (Ctrl-C again within 1s detaches)\n", name)
		}
	case status.Code(err) == codes.FailedPrecondition, ctx.Err() != nil:
	default:
		fmt.Fprintf(stderr, "telehandler: send %s to %s: %v\n", sigName, name, conn.explain(err))
	}
}

// unixSignalName is the name (without SIG) of a forwarded signal.
func unixSignalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGHUP:
		return "HUP"
	}
	return fmt.Sprint(int(sig))
}
