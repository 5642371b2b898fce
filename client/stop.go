package client

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// StopCommand is `telehandler stop JOB [--grace DURATION]`.
func StopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop a job: kill every process it has and print how it ended",
		ArgsUsage: "JOB",
		Description: `Kills every process of the job (daemons it forked included), waits until they
are gone and prints the job's final state. With --grace, the processes get
SIGTERM first and SIGKILL only if the job still runs after that long.
Stopping a job that already ended prints how it ended and exits 0, as docker
stop does. JOB is a job's name, its id, a unique prefix of its id, or
jobs/ID. (telehandler kill sends other signals, without waiting.)

Examples:
  JOB=$(telehandler start -- sleep 1000)
  telehandler stop $JOB                 # jobs/...: FAILED (killed by SIGKILL, stopped)
  telehandler stop --grace 10s $JOB`,
		Flags: append(connFlags(),
			&cli.DurationFlag{
				Name:    "grace",
				Usage:   "send SIGTERM and wait this long before SIGKILL (at most 5m; default: SIGKILL at once)",
				EnvVars: []string{"TELEHANDLER_GRACE"},
			},
			outputFlag(),
		),
		Action: runStop,
	}
}

func runStop(c *cli.Context) error {
	name, err := jobArg(c)
	if err != nil {
		return err
	}
	format, err := outputFormat(c)
	if err != nil {
		return err
	}
	req := &pb.StopJobRequest{Name: name}
	grace := c.Duration("grace")
	if grace < 0 {
		return fmt.Errorf("--grace %v is negative", grace)
	}
	if grace > 0 {
		req.GracePeriod = durationpb.New(grace)
	}
	conn, err := Dial(c)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(c.Context, grace+time.Minute)
	defer cancel()
	job, already, err := stopJob(ctx, conn, req)
	if err != nil {
		return conn.explain(err)
	}
	if format == "json" {
		return printJSON(c.App.Writer, job)
	}
	note := ""
	if already {
		note = " (had already ended)"
	}
	_, err = fmt.Fprintf(c.App.Writer, "%s: %s%s\n", safeText(job.GetName()), describeState(job.GetStatus()), note)
	return err
}

// stopJob stops the job and returns its final state. A job that had
// already ended (FailedPrecondition) is not an error: its status is
// returned, and already is set.
func stopJob(ctx context.Context, conn *Conn, req *pb.StopJobRequest) (job *pb.Job, already bool, err error) {
	resp, err := conn.StopJob(ctx, req)
	if err == nil {
		return resp.GetJob(), false, nil
	}
	if status.Code(err) != codes.FailedPrecondition {
		return nil, false, err
	}
	st, serr := conn.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: req.GetName()})
	if serr != nil || st.GetJob().GetStatus().GetState() == pb.State_STATE_RUNNING {
		return nil, false, err // not the "already ended" case: the first error says why
	}
	return st.GetJob(), true, nil
}
