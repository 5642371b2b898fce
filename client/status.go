package client

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// StatusCommand is `telehandler status JOB`.
func StatusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show a job's state, exit status, limits and resource usage",
		ArgsUsage: "JOB",
		Description: `Prints the job's state (RUNNING, COMPLETED, or FAILED with the exit code or
signal, and whether it was stopped or ran out of memory), its start and end
times, its limits and its resource usage. JOB is jobs/ID or ID.

Examples:
  telehandler status jobs/3mxk2d7q1vjh8c4n6b5t0r9wya
  telehandler status -o json $JOB | jq -r .status.state`,
		Flags:  append(connFlags(), outputFlag()),
		Action: runStatus,
	}
}

func runStatus(c *cli.Context) error {
	name, err := jobArg(c)
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
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	resp, err := conn.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
	if err != nil {
		return conn.explain(err)
	}
	if format == "json" {
		return printJSON(c.App.Writer, resp.GetJob())
	}
	return printJob(c.App.Writer, resp.GetJob())
}
