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
		Description: `Lists jobs newest first: the start of their id (any unique prefix names the
job), their name (start --name), owner, state, age and command, in 100
columns (telehandler status shows a job whole). -o wide shows the full
jobs/ID, the state's reason and 60 characters of the command; -o json the
API's message. Every page the server sends is read, so the list is complete
however many jobs the server keeps.

Examples:
  telehandler list
  telehandler list -o wide
  telehandler list --state running
  telehandler rm $(telehandler list -q --state completed)
  telehandler list --owner bob            # an admin: bob's jobs only
  telehandler list -o json | jq -r '.jobs[] | select(.status.state == "STATE_RUNNING") | .name'`,
		Flags: append(connFlags(),
			&cli.StringFlag{
				Name:    "output",
				Aliases: []string{"o"},
				Usage:   "output format: text (fits 100 columns), wide, or json (the API's message as protojson)",
				Value:   "text",
				EnvVars: []string{"TELEHANDLER_OUTPUT"},
			},
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
	format := c.String("output")
	switch format {
	case "text", "wide", "json":
	default:
		return fmt.Errorf("-o %q: use text, wide or json", format)
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
	case format == "wide":
		return printWideList(c.App.Writer, jobs, time.Now())
	}
	return printList(c.App.Writer, jobs, time.Now())
}

// List layout: the default fits listWidth columns; ids are cut to
// shortIDLen characters (60 bits: unique in practice, and any unique
// prefix names the job).
const (
	listWidth    = 100
	shortIDLen   = 12
	listNameLen  = 16
	listOwnerLen = 12
	// listMinCommand is the least room the command gets.
	listMinCommand = 16
)

// printList writes the default layout: ID NAME OWNER STATE AGE COMMAND,
// every line at most listWidth columns.
func printList(w io.Writer, jobs []*pb.Job, now time.Time) error {
	rows := [][]string{{"ID", "NAME", "OWNER", "STATE", "AGE"}}
	for _, j := range jobs {
		id := strings.TrimPrefix(j.GetName(), "jobs/")
		if len(id) > shortIDLen {
			id = id[:shortIDLen] // a prefix, which names the job
		}
		rows = append(rows, []string{safeText(id), clipText(orDash(safeText(j.GetDisplayName())), listNameLen),
			clipText(safeText(j.GetOwner()), listOwnerLen), shortState(j.GetStatus()), jobAge(j, now)})
	}
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, cell := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	room := listWidth
	for _, wd := range widths {
		room -= wd + 2
	}
	room = max(room, listMinCommand)
	var b strings.Builder
	for i, r := range rows {
		for k, cell := range r {
			b.WriteString(cell)
			b.WriteString(strings.Repeat(" ", widths[k]-utf8.RuneCountInString(cell)+2))
		}
		if i == 0 {
			b.WriteString("COMMAND")
		} else {
			j := jobs[i-1]
			b.WriteString(clipText(shellQuote(j.GetCommand(), j.GetArgs()), room))
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printWideList writes the wide layout: the full resource name (jobs/ID),
// the whole state with its reason, and more of the command.
func printWideList(w io.Writer, jobs []*pb.Job, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tNAME\tOWNER\tSTATE\tAGE\tCOMMAND")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", safeText(j.GetName()), orDash(safeText(j.GetDisplayName())), safeText(j.GetOwner()),
			describeState(j.GetStatus()), jobAge(j, now), clipText(shellQuote(j.GetCommand(), j.GetArgs()), 60))
	}
	return tw.Flush()
}

// jobAge is how long ago the job started, or "-".
func jobAge(j *pb.Job, now time.Time) string {
	if t := j.GetStatus().GetStartTime(); t != nil {
		return formatAge(now.Sub(t.AsTime()))
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortState is describeState in a few characters for the default list:
// RUNNING, COMPLETED, EXIT 3, SIGKILL, or STOPPED, OOM or LOST (the
// server stopped while it ran) when that is why it ended.
func shortState(st *pb.JobStatus) string {
	switch {
	case st.GetState() == pb.State_STATE_RUNNING:
		return "RUNNING"
	case st.GetEndReason() == pb.EndReason_END_REASON_SERVER_LOST:
		return "LOST"
	case st.GetOomKilled():
		return "OOM"
	case st.GetStopped():
		return "STOPPED"
	case st.GetState() == pb.State_STATE_COMPLETED:
		return "COMPLETED"
	case st.GetSignal() != 0:
		return signalName(st.GetSignal())
	case st.GetState() == pb.State_STATE_FAILED:
		return fmt.Sprintf("EXIT %d", st.GetExitCode())
	}
	return strings.TrimPrefix(st.GetState().String(), "STATE_")
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
