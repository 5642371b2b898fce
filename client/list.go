package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// ListCommand is `telehandler list`.
func ListCommand() *cli.Command {
	return &cli.Command{
		Name:    "list",
		Aliases: []string{"ls"},
		Usage:   "list the jobs you can see (yours; an admin sees every job)",
		Description: `Lists jobs newest first with their owner, state, age and command (cut to 60
characters; telehandler status shows it whole). Every page the server sends
is read, so the list is complete however many jobs the server keeps.

Examples:
  telehandler list
  telehandler list --state running
  telehandler rm $(telehandler list -q --state completed)
  telehandler list --owner bob            # an admin: bob's jobs only
  telehandler list -o json | jq -r '.jobs[] | select(.status.state == "STATE_RUNNING") | .name'`,
		Flags: append(connFlags(), outputFlag(),
			&cli.StringFlag{
				Name:  "state",
				Usage: "only jobs in this state: running, completed or failed",
			},
			&cli.StringFlag{
				Name:  "owner",
				Usage: "only the jobs of this owner (an admin; a user sees only its own jobs)",
			},
			&cli.BoolFlag{
				Name:    "quiet",
				Aliases: []string{"q"},
				Usage:   "print the job names only, one a line",
			},
		),
		Action: runList,
	}
}

// listPageSize is what list asks for per page: the server's maximum (it
// may send fewer per page, never more than about 1 MiB).
const listPageSize = 1000

func runList(c *cli.Context) error {
	if c.NArg() > 0 {
		return errors.New("list takes no arguments (filter with --state or --owner)")
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	state, err := parseState(c.String("state"))
	if err != nil {
		return err
	}
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Minute)
	defer cancel()
	jobs, err := listJobs(ctx, conn, &pb.ListJobsRequest{PageSize: listPageSize, State: state, Owner: c.String("owner")})
	if err != nil {
		return err
	}
	switch {
	case c.Bool("quiet"):
		var b strings.Builder
		for _, j := range jobs {
			b.WriteString(safeText(j.GetName()) + "\n")
		}
		_, err := fmt.Fprint(c.App.Writer, b.String())
		return err
	case format == "json":
		return printJSON(c.App.Writer, &pb.ListJobsResponse{Jobs: jobs})
	}
	return printJobList(c.App.Writer, jobs, time.Now())
}

// printJobList writes jobs as list's table, their ages counted to now.
func printJobList(w io.Writer, jobs []*pb.Job, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOWNER\tSTATE\tAGE\tCOMMAND")
	for _, j := range jobs {
		age := "-"
		if t := j.GetStatus().GetStartTime(); t != nil {
			age = formatAge(now.Sub(t.AsTime()))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", safeText(j.GetName()), safeText(j.GetOwner()), describeState(j.GetStatus()), age,
			clipText(shellQuote(j.GetCommand(), j.GetArgs()), 60))
	}
	return tw.Flush()
}

// listJobs reads every page of ListJobs, newest first.
func listJobs(ctx context.Context, conn *Conn, req *pb.ListJobsRequest) ([]*pb.Job, error) {
	var jobs []*pb.Job
	for {
		resp, err := conn.ListJobs(ctx, req)
		if err != nil {
			return nil, conn.explain(err)
		}
		jobs = append(jobs, resp.GetJobs()...)
		if resp.GetNextPageToken() == "" {
			return jobs, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// parseState reads --state: running, completed or failed ("" = any).
func parseState(s string) (pb.State, error) {
	switch strings.ToLower(s) {
	case "":
		return pb.State_STATE_UNSPECIFIED, nil
	case "running":
		return pb.State_STATE_RUNNING, nil
	case "completed":
		return pb.State_STATE_COMPLETED, nil
	case "failed":
		return pb.State_STATE_FAILED, nil
	}
	return 0, fmt.Errorf("--state %q: use running, completed or failed", s)
}

// formatAge writes a duration as kubectl does: 42s, 5m, 3h, 2d.
func formatAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// clipText shortens s to n runes with an ellipsis. It reads no further
// than it keeps: list clips 10,000 command lines of up to 4 KiB each.
func clipText(s string, n int) string {
	runes := 0
	for i := range s {
		if runes == n-1 {
			if _, size := utf8.DecodeRuneInString(s[i:]); i+size == len(s) {
				return s // exactly n runes
			}
			return s[:i] + "…"
		}
		runes++
	}
	return s
}
