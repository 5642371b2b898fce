package server

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// TestAuthorizationMatrix checks every RPC for alice and bob (users) and
// root (admin) against jobs of each: a user sees and controls its own jobs
// only, an admin all of them, and someone else's job is answered exactly
// like a job that does not exist.
func TestAuthorizationMatrix(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	clients := map[string]pb.ForemanClient{
		"alice": ts.as(t, "alice", certgen.RoleUser),
		"bob":   ts.as(t, "bob", certgen.RoleUser),
		"root":  ts.as(t, "root", certgen.RoleAdmin),
	}
	callers := []string{"alice", "bob", "root"}
	mayAccess := func(caller, owner string) bool { return caller == "root" || caller == owner }

	// One finished job with output per owner, for status, watch and list.
	done := map[string]string{}
	for _, owner := range callers {
		resp, err := clients[owner].StartJob(ctx, &pb.StartJobRequest{Command: "emit", Args: []string{owner + "-out", owner + "-err"}})
		if err != nil {
			t.Fatalf("StartJob as %s: %v", owner, err)
		}
		if got := resp.GetJob().GetOwner(); got != owner {
			t.Fatalf("job started by %s has owner %q", owner, got)
		}
		done[owner] = resp.GetJob().GetName()
	}

	// missing is how the server answers a name nobody has: the reference a
	// hidden job's answer must match byte for byte (names aside).
	missing := func(c pb.ForemanClient, name string) *status.Status {
		t.Helper()
		_, err := c.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
		return wantCode(t, "status of missing "+name, err, codes.NotFound)
	}
	const ghost = "jobs/0000000000000000"
	sameAsMissing := func(what string, c pb.ForemanClient, name string, err error) {
		t.Helper()
		got := wantCode(t, what, err, codes.NotFound)
		ref := missing(c, ghost).Proto()
		ref.Message = strings.ReplaceAll(ref.Message, ghost, name)
		if !proto.Equal(got.Proto(), ref) {
			t.Errorf("%s: answer %v differs from a missing job's %v", what, got.Proto(), ref)
		}
	}

	for _, caller := range callers {
		c := clients[caller]
		for _, owner := range callers {
			name := done[owner]
			what := caller + " on " + owner + "'s job"

			_, err := c.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
			if mayAccess(caller, owner) {
				if err != nil {
					t.Errorf("GetJobStatus %s: %v", what, err)
				}
			} else {
				sameAsMissing("GetJobStatus "+what, c, name, err)
			}

			msgs, err := watchAll(ctx, c, name, 0)
			if mayAccess(caller, owner) {
				if err != nil || len(msgs) != 2 || string(msgs[0].Data) != owner+"-out" {
					t.Errorf("WatchJobOutput %s: %v, %v", what, msgs, err)
				}
			} else {
				sameAsMissing("WatchJobOutput "+what, c, name, err)
				if len(msgs) != 0 {
					t.Errorf("WatchJobOutput %s leaked %d messages", what, len(msgs))
				}
			}

			// Stop of an ended job: the owner learns it ended, others
			// learn nothing.
			_, err = c.StopJob(ctx, &pb.StopJobRequest{Name: name})
			if mayAccess(caller, owner) {
				wantCode(t, "StopJob of ended job "+what, err, codes.FailedPrecondition)
			} else {
				sameAsMissing("StopJob "+what, c, name, err)
			}

			// Stop of a running job of owner's.
			resp, err := clients[owner].StartJob(ctx, &pb.StartJobRequest{Command: "sleep"})
			if err != nil {
				t.Fatal(err)
			}
			running := resp.GetJob().GetName()
			stopped, err := c.StopJob(ctx, &pb.StopJobRequest{Name: running})
			st, _ := ts.runner.Status(strings.TrimPrefix(running, "jobs/"))
			if mayAccess(caller, owner) {
				if err != nil || !stopped.GetJob().GetStatus().GetStopped() {
					t.Errorf("StopJob %s: %v, %v", what, stopped, err)
				}
			} else {
				sameAsMissing("StopJob running "+what, c, running, err)
				if !st.Ended.IsZero() {
					t.Errorf("StopJob %s stopped the job anyway", what)
				}
				if _, err := clients[owner].StopJob(ctx, &pb.StopJobRequest{Name: running}); err != nil {
					t.Fatal(err)
				}
			}
		}

		// ListJobs shows exactly the jobs the caller may access.
		resp, err := c.ListJobs(ctx, &pb.ListJobsRequest{})
		if err != nil {
			t.Fatalf("ListJobs as %s: %v", caller, err)
		}
		for _, j := range resp.GetJobs() {
			if !mayAccess(caller, j.GetOwner()) {
				t.Errorf("ListJobs as %s shows %s's job %s", caller, j.GetOwner(), j.GetName())
			}
		}
		for _, owner := range callers {
			listed := slices.ContainsFunc(resp.GetJobs(), func(j *pb.Job) bool { return j.GetName() == done[owner] })
			if listed != mayAccess(caller, owner) {
				t.Errorf("ListJobs as %s: %s's job listed=%v", caller, owner, listed)
			}
		}
	}
}

// TestRoleFromCertificate checks that a certificate signed by the CA but
// without a valid role gets PermissionDenied on every RPC, health included.
func TestRoleFromCertificate(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	for _, ou := range [][]string{nil, {"root"}, {"user", "admin"}} {
		c, conn := ts.dial(t, ts.clientTLS(ts.handmadeClient(t, "mallory", ou)))
		_, err := c.ListJobs(ctx, &pb.ListJobsRequest{})
		wantCode(t, "ListJobs with OU "+strings.Join(ou, ","), err, codes.PermissionDenied)
		_, err = c.StartJob(ctx, &pb.StartJobRequest{Command: "true"})
		wantCode(t, "StartJob with OU "+strings.Join(ou, ","), err, codes.PermissionDenied)
		_, err = watchAll(ctx, c, "jobs/abc", 0)
		wantCode(t, "WatchJobOutput with OU "+strings.Join(ou, ","), err, codes.PermissionDenied)
		_ = conn
	}
	if n := len(ts.runner.List()); n != 0 {
		t.Errorf("%d jobs started by certificates without a role", n)
	}
}

// TestAuthenticateNeedsVerifiedCertificate checks identity comes only from
// a verified TLS client certificate.
func TestAuthenticateNeedsVerifiedCertificate(t *testing.T) {
	if _, err := authenticate(context.Background(), nil); !errors.Is(err, errUnauthenticated) {
		t.Errorf("no peer: %v", err)
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{}, AuthInfo: credentials.TLSInfo{}})
	if _, err := authenticate(ctx, nil); !errors.Is(err, errUnauthenticated) {
		t.Errorf("TLS without a verified chain: %v", err)
	}
	if _, ok := identityFrom(context.Background()); ok {
		t.Error("identity in an empty context")
	}
}
