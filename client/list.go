package client

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// ListCommand is `telehandler list`.
func ListCommand() *cli.Command {
	return &cli.Command{
		Name:    "list",
		Aliases: []string{"ls"},
		Usage:   "list the jobs you can see (yours; an admin sees every job)",
		Description: `Lists jobs oldest first with their owner, state, age and command.

Examples:
  telehandler list
  telehandler list -o json | jq -r '.jobs[] | select(.status.state == "STATE_RUNNING") | .name'`,
		Flags:  append(connFlags(), outputFlag()),
		Action: runList,
	}
}

func runList(c *cli.Context) error {
	if c.NArg() > 0 {
		return errors.New("list takes no arguments")
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
	resp, err := conn.ListJobs(ctx, &pb.ListJobsRequest{})
	if err != nil {
		return conn.explain(err)
	}
	if format == "json" {
		return printJSON(c.App.Writer, resp)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tOWNER\tSTATE\tAGE\tCOMMAND")
	now := time.Now()
	for _, j := range resp.GetJobs() {
		age := "-"
		if t := j.GetStatus().GetStartTime(); t != nil {
			age = formatAge(now.Sub(t.AsTime()))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.GetName(), j.GetOwner(), describeState(j.GetStatus()), age,
			clipText(shellQuote(j.GetCommand(), j.GetArgs()), 60))
	}
	return tw.Flush()
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

// clipText shortens s to n runes with an ellipsis.
func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
