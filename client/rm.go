package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// RmCommand is `telehandler rm [--force] JOB...`.
func RmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove ended jobs: their status and their output",
		ArgsUsage: "JOB...",
		Description: `Removes each JOB (its name, id, unique id prefix or jobs/ID) from the server: its status and its output
are gone for good, and its name is printed. A job that still runs is refused
unless --force, which stops it first. You may remove your own jobs; an admin
may remove any. The server also removes ended jobs by itself after a while
(serve --retain, --retain-bytes).

Examples:
  telehandler rm jobs/3f5x...
  telehandler rm --force $JOB                        # stop it, then remove it
  telehandler rm $(telehandler list -q --state completed)`,
		Flags: append(connFlags(),
			&cli.BoolFlag{
				Name:    "force",
				Aliases: []string{"f"},
				Usage:   "stop a running job first instead of refusing it",
			},
		),
		Action: runRm,
	}
}

func runRm(c *cli.Context) error {
	if c.NArg() == 0 {
		return errors.New("missing JOB: telehandler rm JOB... (telehandler list -q shows the names)")
	}
	// Names, ids and id prefixes are resolved by the server.
	names, err := jobArgs(c)
	if err != nil {
		return err
	}
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Each removal of a running job may wait for the job to stop.
	failed := 0
	for _, name := range names {
		ctx, cancel := context.WithTimeout(c.Context, time.Minute)
		// A name or prefix is resolved first, so that the job's full name
		// is what is removed and printed.
		st, err := conn.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
		if err == nil {
			name = st.GetJob().GetName()
			_, err = conn.DeleteJob(ctx, &pb.DeleteJobRequest{Name: name, Force: c.Bool("force")})
		}
		cancel()
		if err != nil {
			failed++
			for _, line := range strings.Split(conn.explain(err).Error(), "\n") {
				fmt.Fprintf(c.App.ErrWriter, "telehandler: %s\n", line)
			}
			continue
		}
		fmt.Fprintln(c.App.Writer, safeText(name))
	}
	if failed > 0 {
		// Each failure was printed; the exit status says some failed.
		return &ExitError{Code: 1}
	}
	return nil
}
