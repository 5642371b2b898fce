package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// pagingForeman answers ListJobs with total jobs in pages of three, and
// records the requests.
type pagingForeman struct {
	pb.UnimplementedForemanServer
	total int
	reqs  []*pb.ListJobsRequest
}

func (f *pagingForeman) ListJobs(_ context.Context, req *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	f.reqs = append(f.reqs, req)
	from := 0
	if req.GetPageToken() != "" {
		from, _ = strconv.Atoi(req.GetPageToken())
	}
	resp := &pb.ListJobsResponse{}
	for i := from; i < min(from+3, f.total); i++ {
		resp.Jobs = append(resp.Jobs, &pb.Job{Name: fmt.Sprintf("jobs/%d", f.total-1-i)})
	}
	if from+3 < f.total {
		resp.NextPageToken = strconv.Itoa(from + 3)
	}
	return resp, nil
}

// serveForeman serves srv on a loopback port and returns a Conn to it.
func serveForeman(t *testing.T, srv pb.ForemanServer) *Conn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterForemanServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &Conn{ForemanClient: pb.NewForemanClient(cc), Addr: lis.Addr().String(), cc: cc}
}

// TestListJobsReadsEveryPage proves list follows next_page_token to the
// end, keeps the server's order and passes the filters on every page.
func TestListJobsReadsEveryPage(t *testing.T) {
	f := &pagingForeman{total: 10}
	conn := serveForeman(t, f)
	jobs, err := listJobs(context.Background(), conn, &pb.ListJobsRequest{PageSize: listPageSize, State: pb.State_STATE_FAILED, Owner: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 10 || jobs[0].GetName() != "jobs/9" || jobs[9].GetName() != "jobs/0" {
		t.Errorf("listed %v", jobs)
	}
	if len(f.reqs) != 4 {
		t.Errorf("%d requests, want 4 pages", len(f.reqs))
	}
	for _, r := range f.reqs {
		if r.GetState() != pb.State_STATE_FAILED || r.GetOwner() != "bob" || r.GetPageSize() != listPageSize {
			t.Errorf("request %v lost the filters", r)
		}
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]pb.State{"": 0, "running": pb.State_STATE_RUNNING, "COMPLETED": pb.State_STATE_COMPLETED, "failed": pb.State_STATE_FAILED} {
		if got, err := parseState(in); err != nil || got != want {
			t.Errorf("parseState(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := parseState("done"); err == nil {
		t.Error("parseState(done) succeeded")
	}
}

// TestDelivered proves start --rm removes a job only when watch delivered
// its whole output: success or the job's own exit status, not an
// interrupted or broken watch.
func TestDelivered(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, true},
		{&ExitError{Code: 3}, true},
		{&ExitError{Code: 130, Msg: "stopped watching"}, false},
		{errors.New("the output stream ended at byte 3 of 9: output was lost"), false},
	} {
		if got := delivered(tc.err); got != tc.want {
			t.Errorf("delivered(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestDescribeServerLost(t *testing.T) {
	st := &pb.JobStatus{State: pb.State_STATE_FAILED, ExitCode: -1, EndReason: pb.EndReason_END_REASON_SERVER_LOST}
	if got := describeState(st); got != "FAILED (the server stopped while it ran)" {
		t.Errorf("describeState = %q", got)
	}
}

// TestClipText proves clipText keeps n runes at most, the last one an
// ellipsis when cut, as converting the whole string to runes would.
func TestClipText(t *testing.T) {
	want := func(s string, n int) string {
		r := []rune(s)
		if len(r) <= n {
			return s
		}
		return string(r[:n-1]) + "…"
	}
	for _, s := range []string{"", "a", "abc", "abcd", "abcde", "héllo wörld", "ééééé", "日本語のテキスト"} {
		for n := 1; n <= 6; n++ {
			if got := clipText(s, n); got != want(s, n) {
				t.Errorf("clipText(%q, %d) = %q, want %q", s, n, got, want(s, n))
			}
		}
	}
}
