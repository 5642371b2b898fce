package server

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
	"github.com/drrev/telehandler/jobrunner"
)

// TestDeleteJob proves DeleteJob removes an ended job for its owner and for
// an admin, answers anyone else exactly as for a missing job, refuses a
// running job without force and stops and removes it with force.
func TestDeleteJob(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	alice, bob, admin := ts.as(t, "alice", certgen.RoleUser), ts.as(t, "bob", certgen.RoleUser), ts.as(t, "root", certgen.RoleAdmin)
	start := func(cmd string) string {
		t.Helper()
		resp, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: cmd, Args: []string{"out"}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetJob().GetName()
	}
	gone := func(name string) {
		t.Helper()
		_, err := alice.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
		wantCode(t, "status of removed "+name, err, codes.NotFound)
	}

	// The owner.
	job := start("emit")
	if _, err := alice.DeleteJob(ctx, &pb.DeleteJobRequest{Name: job}); err != nil {
		t.Fatalf("DeleteJob as owner: %v", err)
	}
	gone(job)
	st := wantCode(t, "second DeleteJob", func() error {
		_, err := alice.DeleteJob(ctx, &pb.DeleteJobRequest{Name: job})
		return err
	}(), codes.NotFound)
	if st.Message() != notFoundMessage(job) {
		t.Errorf("second DeleteJob: %q", st.Message())
	}

	// Someone else: the answer of a missing job, and the job stays.
	job = start("emit")
	_, err := bob.DeleteJob(ctx, &pb.DeleteJobRequest{Name: job, Force: true})
	if st := wantCode(t, "DeleteJob as bob", err, codes.NotFound); st.Message() != notFoundMessage(job) {
		t.Errorf("DeleteJob as bob: %q, want %q", st.Message(), notFoundMessage(job))
	}
	if _, err := alice.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: job}); err != nil {
		t.Errorf("bob's DeleteJob removed alice's job: %v", err)
	}
	// An admin.
	if _, err := admin.DeleteJob(ctx, &pb.DeleteJobRequest{Name: job}); err != nil {
		t.Fatalf("DeleteJob as admin: %v", err)
	}
	gone(job)

	// A running job: refused without force, stopped and removed with it.
	job = start("sleep")
	_, err = alice.DeleteJob(ctx, &pb.DeleteJobRequest{Name: job})
	if st := wantCode(t, "DeleteJob of a running job", err, codes.FailedPrecondition); !strings.Contains(st.Message(), "--force") {
		t.Errorf("DeleteJob of a running job: %q does not name the fix", st.Message())
	}
	if resp, err := alice.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: job}); err != nil || resp.GetJob().GetStatus().GetState() != pb.State_STATE_RUNNING {
		t.Errorf("refused DeleteJob changed the job: %v, %v", resp, err)
	}
	if _, err := alice.DeleteJob(ctx, &pb.DeleteJobRequest{Name: job, Force: true}); err != nil {
		t.Fatalf("DeleteJob --force: %v", err)
	}
	gone(job)

	_, err = alice.DeleteJob(ctx, &pb.DeleteJobRequest{Name: "jobs/../x"})
	wantCode(t, "DeleteJob of a malformed name", err, codes.InvalidArgument)
	if !strings.Contains(ts.logs.String(), `"msg":"job removed"`) {
		t.Errorf("no log line for a removal:\n%s", ts.logs)
	}
}

// listAll reads every page of ListJobs and checks each response's size.
func listAll(t *testing.T, c pb.ForemanClient, req *pb.ListJobsRequest) ([]*pb.Job, int) {
	t.Helper()
	var jobs []*pb.Job
	pages := 0
	for {
		resp, err := c.ListJobs(testCtx(t), req)
		if err != nil {
			t.Fatalf("ListJobs page %d: %v", pages+1, err)
		}
		pages++
		// Far from the 4 MiB limit whatever the page size asked for.
		if n := proto.Size(resp); n > maxPageBytes+8<<10 {
			t.Fatalf("page %d is %d bytes", pages, n)
		}
		jobs = append(jobs, resp.GetJobs()...)
		if resp.GetNextPageToken() == "" {
			return jobs, pages
		}
		req = proto.CloneOf(req)
		req.PageToken = resp.GetNextPageToken()
	}
}

// TestListJobsPaging lists 10,000 jobs with command lines of 4 KiB (what
// the runner keeps of longer ones) through the real gRPC server: all of
// them, newest first, no response near the message limit; filters by
// state and owner, for an admin and for users; bad tokens.
func TestListJobsPaging(t *testing.T) {
	ts := startServer(t, nil)
	const n = 10_000
	arg := strings.Repeat("x", jobrunner.MaxKeptCommandLine-10)
	t0 := time.Now().Add(-time.Hour)
	for i := range n {
		st := jobrunner.Status{
			ID: fmt.Sprintf("job%05d", i), Owner: []string{"alice", "bob"}[i%2], Command: "sh",
			Args: []string{"-c", arg}, CommandTruncated: true, State: jobrunner.StateCompleted,
			// Pairs share a start time: the id breaks the tie.
			Started: t0.Add(time.Duration(i/2) * time.Millisecond), Ended: t0.Add(time.Hour),
		}
		if i%3 == 0 {
			st.State, st.ExitCode = jobrunner.StateFailed, 1
		}
		ts.runner.add(st)
	}
	alice, admin := ts.as(t, "alice", certgen.RoleUser), ts.as(t, "root", certgen.RoleAdmin)

	// 1000 is what the CLI asks for; 0 takes the server's default of 100.
	sizes := []int32{1000, 0, 5000}
	if raceEnabled {
		sizes = sizes[:1]
	}
	for _, size := range sizes {
		begin := time.Now()
		jobs, pages := listAll(t, admin, &pb.ListJobsRequest{PageSize: size})
		took := time.Since(begin)
		t.Logf("admin: %d jobs in %d pages (page_size %d) in %v", len(jobs), pages, size, took)
		if len(jobs) != n {
			t.Fatalf("page_size %d: listed %d jobs, want %d", size, len(jobs), n)
		}
		for i := range jobs {
			if want := fmt.Sprintf("jobs/job%05d", n-1-i); jobs[i].GetName() != want {
				t.Fatalf("page_size %d: job %d is %s, want %s (newest first)", size, i, jobs[i].GetName(), want)
			}
		}
		if !jobs[0].GetStatus().GetCommandTruncated() {
			t.Error("command_truncated not reported")
		}
		// Only a guard against a listing that grows worse than linearly:
		// about 0.3 s for 40 MB of command lines on the host with 8 test
		// runs sharing 2 cores, 24-35 s in the cgroup v2 VM's software
		// emulation. The figure that matters is the log line above (and the
		// closing note's measurement on a quiet machine). Not under the race
		// detector, which makes it ~20 times slower.
		if !raceEnabled && took > 2*time.Minute {
			t.Errorf("listing %d jobs took %v", n, took)
		}
	}

	count := func(jobs []*pb.Job, owner string, state pb.State) {
		t.Helper()
		want := 0
		for i := range n {
			s := pb.State_STATE_COMPLETED
			if i%3 == 0 {
				s = pb.State_STATE_FAILED
			}
			if (owner == "" || owner == []string{"alice", "bob"}[i%2]) && (state == pb.State_STATE_UNSPECIFIED || state == s) {
				want++
			}
		}
		for _, j := range jobs {
			if (owner != "" && j.GetOwner() != owner) || (state != pb.State_STATE_UNSPECIFIED && j.GetStatus().GetState() != state) {
				t.Fatalf("filter (%q, %v) let %s (%s, %v) through", owner, state, j.GetName(), j.GetOwner(), j.GetStatus().GetState())
			}
		}
		if len(jobs) != want {
			t.Errorf("filter (%q, %v): %d jobs, want %d", owner, state, len(jobs), want)
		}
	}
	jobs, _ := listAll(t, alice, &pb.ListJobsRequest{})
	count(jobs, "alice", pb.State_STATE_UNSPECIFIED)
	jobs, _ = listAll(t, alice, &pb.ListJobsRequest{State: pb.State_STATE_FAILED, PageSize: 33})
	count(jobs, "alice", pb.State_STATE_FAILED)
	jobs, _ = listAll(t, admin, &pb.ListJobsRequest{Owner: "bob", State: pb.State_STATE_COMPLETED})
	count(jobs, "bob", pb.State_STATE_COMPLETED)
	// A user asking for someone else's jobs gets none.
	if jobs, _ := listAll(t, alice, &pb.ListJobsRequest{Owner: "bob"}); len(jobs) != 0 {
		t.Errorf("alice listed %d of bob's jobs", len(jobs))
	}
	jobs, _ = listAll(t, alice, &pb.ListJobsRequest{Owner: "alice", State: pb.State_STATE_RUNNING})
	count(jobs, "alice", pb.State_STATE_RUNNING)

	ctx := testCtx(t)
	first, err := admin.ListJobs(ctx, &pb.ListJobsRequest{PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	// A token is a position, not a permission: alice paging with the
	// admin's token, or a forged one, still sees her own jobs only.
	forged := encodeToken(pageToken{Started: time.Now().Add(time.Hour).UnixNano(), ID: "zzz"})
	for _, tok := range []string{first.GetNextPageToken(), forged} {
		resp, err := alice.ListJobs(ctx, &pb.ListJobsRequest{PageToken: tok})
		if err != nil {
			t.Fatalf("alice with another's token: %v", err)
		}
		if len(resp.GetJobs()) == 0 {
			t.Error("alice with another's token: no jobs")
		}
		for _, j := range resp.GetJobs() {
			if j.GetOwner() != "alice" {
				t.Fatalf("alice with another's token sees %s's job %s", j.GetOwner(), j.GetName())
			}
		}
	}
	for _, tc := range []struct {
		name string
		req  *pb.ListJobsRequest
	}{
		{"negative page size", &pb.ListJobsRequest{PageSize: -1}},
		{"garbage token", &pb.ListJobsRequest{PageToken: "not a token!"}},
		{"token of other filters", &pb.ListJobsRequest{PageToken: first.GetNextPageToken(), State: pb.State_STATE_FAILED}},
		{"unknown state", &pb.ListJobsRequest{State: pb.State(42)}},
	} {
		_, err := admin.ListJobs(ctx, tc.req)
		wantCode(t, tc.name, err, codes.InvalidArgument)
	}
}

// TestJobToProtoHistory proves the end reason and the cut command line
// reach the API.
func TestJobToProtoHistory(t *testing.T) {
	for r, want := range map[jobrunner.EndReason]pb.EndReason{
		jobrunner.ReasonNone:       pb.EndReason_END_REASON_UNSPECIFIED,
		jobrunner.ReasonStopped:    pb.EndReason_END_REASON_STOPPED,
		jobrunner.ReasonServerLost: pb.EndReason_END_REASON_SERVER_LOST,
	} {
		j := jobToProto(jobrunner.Status{ID: "x", State: jobrunner.StateFailed, Reason: r, CommandTruncated: true})
		if got := j.GetStatus().GetEndReason(); got != want || !j.GetStatus().GetCommandTruncated() {
			t.Errorf("reason %v: %v, truncated %v", r, got, j.GetStatus().GetCommandTruncated())
		}
	}
}
