package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// AttachCommand is `telehandler attach JOB`.
func AttachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "attach your stdin (and terminal) to a running job started with -i or -it",
		ArgsUsage: "JOB",
		Description: `Re-attaches to a job started with start -i or start -it: your stdin goes to the
job's input, and its output from now on comes to your stdout and stderr, until
the job ends (attach exits with its exit code) or you leave.

For a job with a terminal (-it) your terminal goes raw: every key, Ctrl-C
included, goes to the job. Ctrl-P Ctrl-Q detaches and leaves it running.
Without a terminal, your stdin's EOF closes the job's stdin, and Ctrl-C
detaches.

One writer at a time: while someone is attached, attach fails and says who.
Only the job's owner or an admin may attach. JOB is a job's name, its id,
a unique prefix of its id, or jobs/ID.

Example:
  telehandler start -it -- sh      # then Ctrl-P Ctrl-Q: detached from jobs/ID
  telehandler attach jobs/ID`,
		Flags:  connFlags(),
		Action: runAttach,
	}
}

func runAttach(c *cli.Context) error {
	name, err := jobArg(c)
	if err != nil {
		return err
	}
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	resp, err := conn.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
	cancel()
	if err != nil {
		return conn.explain(err)
	}
	job := resp.GetJob()
	shown := safeText(name)
	switch {
	case !job.GetStdin():
		return fmt.Errorf("%s was started without -i: it has no input to attach to (telehandler watch %s shows its output)", shown, shown)
	case job.GetStatus().GetState() != pb.State_STATE_RUNNING:
		return fmt.Errorf("%s has ended: %s (telehandler watch %s shows its output)", shown, describeState(job.GetStatus()), shown)
	case job.GetTty() && !term.IsTerminal(int(os.Stdin.Fd())):
		return errors.New(shown + " has a terminal: attach needs a terminal on stdin")
	}
	s := &session{
		// The job's full name: a name or prefix is resolved once.
		conn: conn, name: job.GetName(), tty: job.GetTty(),
		from:  job.GetStatus().GetOutputBytes(),
		stdin: os.Stdin, stdout: c.App.Writer, stderr: c.App.ErrWriter,
	}
	return s.run(c.Context)
}
