package server

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
	"github.com/drrev/telehandler/jobrunner"
	"github.com/drrev/telehandler/sandbox"
)

// TestNetworkErrors: asking for the network on a server without it is
// FailedPrecondition naming the serve flag; past the per-user cap of
// networked jobs, ResourceExhausted.
func TestNetworkErrors(t *testing.T) {
	st := status.Convert(toStatus(fmt.Errorf("start: %w", jobrunner.ErrNetworkOff)))
	if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "serve --network") {
		t.Errorf("network off: %v %q, want FailedPrecondition naming serve --network", st.Code(), st.Message())
	}
	st = status.Convert(toStatus(fmt.Errorf("%w: alice runs 3", jobrunner.ErrTooManyNetworkJobs)))
	if st.Code() != codes.ResourceExhausted {
		t.Errorf("too many networked jobs: %v, want ResourceExhausted", st.Code())
	}
}

// TestStartJobNetwork: StartJob hands the network request and the
// network-bps limit (default filled in, maximum enforced) to the runner.
func TestStartJobNetwork(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.MaxLimits.NetworkBPS = 50 << 20
		c.MaxNetworkJobsPerUser = 2
	})
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "true", Network: true})
	if err != nil {
		t.Fatal(err)
	}
	req := ts.runner.lastStart()
	if !req.Network || req.Limits.NetworkBPS != sandbox.DefaultLimits().NetworkBPS {
		t.Errorf("runner got network %v, network bps %d; want true, the default %d", req.Network, req.Limits.NetworkBPS, sandbox.DefaultLimits().NetworkBPS)
	}
	if req.Quota.NetworkPerOwner != 2 {
		t.Errorf("runner got Quota.NetworkPerOwner %d, want serve's 2", req.Quota.NetworkPerOwner)
	}
	if resp.GetJob().GetLimits().GetNetworkBps() != sandbox.DefaultLimits().NetworkBPS {
		t.Errorf("job's limits say %d B/s", resp.GetJob().GetLimits().GetNetworkBps())
	}
	_, err = c.StartJob(ctx, &pb.StartJobRequest{Command: "true", Network: true, Limits: &pb.Limits{NetworkBps: 100 << 20}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "network_bps") {
		t.Errorf("over the maximum: %v, want InvalidArgument naming network_bps", err)
	}
	if _, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "true"}); err != nil || ts.runner.lastStart().Network {
		t.Errorf("a plain job: %v, network %v", err, ts.runner.lastStart().Network)
	}
}
