package server

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// TestWatchFinalJob proves that the stream's last message is the job as
// it ended (GetJobStatus's answer), so that a watcher needs no second call.
func TestWatchFinalJob(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "emit", Args: []string{"out", "err"}})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetJob().GetName()
	msgs, final, err := watchFinal(ctx, c, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Errorf("%d output messages, want 2", len(msgs))
	}
	st, err := c.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(final, st.GetJob()) {
		t.Errorf("final job %v, GetJobStatus %v", final, st.GetJob())
	}
	if final.GetStatus().GetExitCode() != 3 || final.GetStatus().GetOutputBytes() != 6 {
		t.Errorf("final job status %v", final.GetStatus())
	}
}

// TestWatchGap proves that output the runner dropped is a message of its
// own at its offset (dropped_bytes, no data), and that status says why.
func TestWatchGap(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "gappy"})
	if err != nil {
		t.Fatal(err)
	}
	msgs, final, err := watchFinal(ctx, c, resp.GetJob().GetName(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || string(msgs[0].Data) != "a" || msgs[1].GetDroppedBytes() != 5 || msgs[1].Offset != 1 ||
		len(msgs[1].Data) != 0 || string(msgs[2].Data) != "b" || msgs[2].Offset != 1 {
		t.Errorf("messages %v, want a, a gap of 5 at 1, b at 1", msgs)
	}
	st := final.GetStatus()
	if !st.GetOutputTruncated() || st.GetOutputTruncation() != pb.TruncationReason_TRUNCATION_REASON_WRITE_ERROR ||
		st.GetOutputDroppedBytes() != 5 || st.GetOutputError() != "no space left on device" {
		t.Errorf("status %v, want truncated by a write error, 5 bytes dropped", st)
	}
}

// TestStartMergeOutput proves merge_output reaches the runner.
func TestStartMergeOutput(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	for _, merge := range []bool{true, false} {
		if _, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "true", MergeOutput: merge}); err != nil {
			t.Fatal(err)
		}
		if got := ts.runner.lastStart().MergeOutput; got != merge {
			t.Errorf("merge_output %v reached the runner as %v", merge, got)
		}
	}
}
