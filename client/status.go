package client

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// StatusCommand is `telehandler status JOB...`.
func StatusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show jobs' state, exit status, limits and resource usage",
		ArgsUsage: "JOB...",
		Description: `Prints each job's state (RUNNING, COMPLETED, or FAILED with the exit code or
signal, and whether it was stopped or ran out of memory), its start and end
times, its limits and its resource usage. JOB is a job's name, its id, a
unique prefix of its id, or jobs/ID. With several jobs, text output puts a
blank line between them and -o json prints an array; a job that cannot be
shown is reported on stderr, the others are still printed, and status exits 1.

Examples:
  telehandler status web
  telehandler status 3mxk2d7q web db
  telehandler status -o json $JOB | jq -r .status.state`,
		Flags:  append(connFlags(), outputFlag()),
		Action: runStatus,
	}
}

func runStatus(c *cli.Context) error {
	names, err := jobArgs(c)
	if err != nil {
		return err
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	var (
		jobs   []*pb.Job
		failed []error
	)
	for _, name := range names {
		ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
		resp, err := conn.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
		cancel()
		if err != nil {
			if len(names) == 1 {
				return conn.explain(err)
			}
			failed = append(failed, conn.explain(err))
			continue
		}
		jobs = append(jobs, resp.GetJob())
	}
	if err := printJobs(c.App.Writer, format, jobs, len(names) > 1); err != nil {
		return err
	}
	return errors.Join(failed...)
}

// printJobs writes jobs as text (blank lines between them) or as JSON: one
// object for a single job, an array when several were asked for.
func printJobs(w io.Writer, format string, jobs []*pb.Job, several bool) error {
	if format == "json" {
		if !several {
			return printJSON(w, jobs[0])
		}
		return printJSONArray(w, jobs)
	}
	for i, j := range jobs {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := printJob(w, j); err != nil {
			return err
		}
	}
	return nil
}
