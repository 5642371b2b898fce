package server

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
	"github.com/drrev/telehandler/jobrunner"
)

// TestResolveJob covers the resolution order (id, name, id prefix) and its
// scoping to the jobs the caller may see, on plain refs.
func TestResolveJob(t *testing.T) {
	refs := []jobrunner.Ref{
		{ID: "aaaa1111", Owner: "alice", Name: "web"},
		{ID: "aaaa2222", Owner: "alice", Name: "db"},
		{ID: "aaab3333", Owner: "bob", Name: "web"},
		{ID: "bbbb4444", Owner: "bob", Name: "aaaa1111"}, // a name that is alice's id
		{ID: "cccc5555", Owner: "carol", Name: "cccc"},   // a name that is a prefix of its own id
		{ID: "zzzz6666", Owner: "bob", Name: "batch"},
	}
	alice := Identity{Name: "alice", Role: certgen.RoleUser}
	bob := Identity{Name: "bob", Role: certgen.RoleUser}
	carol := Identity{Name: "carol", Role: certgen.RoleUser}
	admin := Identity{Name: "root", Role: certgen.RoleAdmin}

	for _, tc := range []struct {
		who  Identity
		ref  string
		want string // id; "" = an error
		code error  // the error's sentinel
	}{
		{alice, "aaaa1111", "aaaa1111", nil},
		{alice, "jobs/aaaa1111", "aaaa1111", nil},
		{alice, "web", "aaaa1111", nil}, // alice's own web, bob's is invisible
		{bob, "web", "aaab3333", nil},
		{alice, "db", "aaaa2222", nil},
		{alice, "aaaa2", "aaaa2222", nil},
		{alice, "jobs/aaaa2", "aaaa2222", nil},
		{alice, "aaab", "", jobrunner.ErrJobNotFound}, // bob's job: as if it did not exist
		{alice, "aaa", "", errInvalidArgument},        // aaaa1111 and aaaa2222
		{alice, "a", "", errInvalidArgument},
		{bob, "aaa", "aaab3333", nil}, // bob sees one job starting with aaa
		{alice, "batch", "", jobrunner.ErrJobNotFound},
		{alice, "jobs/web", "", jobrunner.ErrJobNotFound}, // jobs/... is never a name
		{bob, "aaaa1111", "bbbb4444", nil},                // bob cannot see the id: his name
		{admin, "aaaa1111", "aaaa1111", nil},              // the id first
		{carol, "cccc", "cccc5555", nil},                  // name and prefix agree
		{admin, "web", "", errInvalidArgument},            // alice's and bob's
		{admin, "batch", "zzzz6666", nil},                 // another user's job, by its unique name
		{admin, "nothing", "", jobrunner.ErrJobNotFound},
	} {
		ref, err := parseJobRef(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := resolveJob(refs, tc.who, tc.ref, ref)
		if tc.want != "" {
			if err != nil || got != tc.want {
				t.Errorf("%s resolving %q: %q, %v; want %q", tc.who.Name, tc.ref, got, err, tc.want)
			}
			continue
		}
		if !errors.Is(err, tc.code) {
			t.Errorf("%s resolving %q: %q, %v; want an error wrapping %v", tc.who.Name, tc.ref, got, err, tc.code)
		}
	}

	// An ambiguous prefix lists the matches the caller may see, and only
	// those.
	ref, _ := parseJobRef("aa")
	_, err := resolveJob(refs, alice, "aa", ref)
	if err == nil || !strings.Contains(err.Error(), "jobs/aaaa1111") || !strings.Contains(err.Error(), "jobs/aaaa2222") ||
		strings.Contains(err.Error(), "aaab3333") || strings.Contains(err.Error(), "bob") {
		t.Errorf("ambiguous prefix as alice: %v", err)
	}
	// An admin's ambiguous name lists the owners.
	ref, _ = parseJobRef("web")
	if _, err := resolveJob(refs, admin, "web", ref); err == nil || !strings.Contains(err.Error(), "alice/web") || !strings.Contains(err.Error(), "bob/web") {
		t.Errorf("ambiguous name as admin: %v", err)
	}
}

// TestJobNames drives names and prefixes through the API.
func TestJobNames(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	alice := ts.as(t, "alice", certgen.RoleUser)
	bob := ts.as(t, "bob", certgen.RoleUser)
	ts.runner.mu.Lock()
	ts.runner.ids = []string{"k7aaaaaaaaaaaaaaaaaaaaaaaa", "k7bbbbbbbbbbbbbbbbbbbbbbbb", "k7cccccccccccccccccccccccc"}
	ts.runner.mu.Unlock()

	resp, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", DisplayName: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetJob().GetDisplayName(); got != "web" {
		t.Fatalf("display_name %q, want web", got)
	}
	// The name is the owner's: a second web is AlreadyExists, bob's web is
	// fine.
	_, err = alice.StartJob(ctx, &pb.StartJobRequest{Command: "true", DisplayName: "web"})
	wantCode(t, "a second job named web", err, codes.AlreadyExists)
	if _, err := bob.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", DisplayName: "web"}); err != nil {
		t.Fatalf("bob's web: %v", err)
	}
	if _, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep"}); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []string{"-web", ".x", "a b", "a/b", strings.Repeat("n", 64), "é", "abcdefghijklmnopqrstuvwxyz"} {
		_, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: "true", DisplayName: bad})
		wantCode(t, "display_name "+bad, err, codes.InvalidArgument)
	}

	for ref, want := range map[string]string{
		"web":                        "jobs/k7aaaaaaaaaaaaaaaaaaaaaaaa",
		"k7a":                        "jobs/k7aaaaaaaaaaaaaaaaaaaaaaaa",
		"jobs/k7c":                   "jobs/k7cccccccccccccccccccccccc",
		"k7cccccccccccccccccccccccc": "jobs/k7cccccccccccccccccccccccc",
	} {
		st, err := alice.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: ref})
		if err != nil || st.GetJob().GetName() != want {
			t.Errorf("status %q: %v, %v; want %s", ref, st.GetJob().GetName(), err, want)
		}
	}
	// k7b is bob's: alice's k7 matches her two jobs only, and k7b is not
	// found for her (as a job that does not exist).
	_, err = alice.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: "k7"})
	st := wantCode(t, "ambiguous k7", err, codes.InvalidArgument)
	if strings.Contains(st.Message(), "k7bbb") || !strings.Contains(st.Message(), "k7aaa") || !strings.Contains(st.Message(), "k7ccc") {
		t.Errorf("ambiguous k7 says %q", st.Message())
	}
	_, err = alice.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: "k7b"})
	if st := wantCode(t, "bob's job by prefix", err, codes.NotFound); st.Message() != "job k7b not found" {
		t.Errorf("bob's job by prefix: %q", st.Message())
	}
	// Every job-addressed call resolves the same way.
	if _, err := alice.StopJob(ctx, &pb.StopJobRequest{Name: "web"}); err != nil {
		t.Errorf("stop web: %v", err)
	}
	if _, err := watchAll(ctx, alice, "web", 0); err != nil {
		t.Errorf("watch web: %v", err)
	}
	_, err = alice.SignalJob(ctx, &pb.SignalJobRequest{Name: "web", Signal: "TERM"})
	wantCode(t, "signal a stopped job", err, codes.FailedPrecondition)
}

// TestWatchTailAndNoFollow: tail_lines starts at the last lines (counted
// by the runner), no_follow ends the stream at the output there is even
// while the job runs.
func TestWatchTailAndNoFollow(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	alice := ts.as(t, "alice", certgen.RoleUser)
	// A running job with 4 lines: "a\nb\n" on stdout, "c\n" on stderr, "d\n" on stdout.
	resp, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Args: []string{"a\nb\n", "c\n", "d\n"}})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetJob().GetName()
	read := func(req *pb.WatchJobOutputRequest) (string, error) {
		stream, err := alice.WatchJobOutput(ctx, req)
		if err != nil {
			return "", err
		}
		var out strings.Builder
		var final *pb.Job
		for {
			m, err := stream.Recv()
			if err != nil {
				if !strings.Contains(err.Error(), "EOF") {
					return out.String(), err
				}
				// no_follow of a running job ends with its status, as
				// every stream does.
				if req.GetNoFollow() && final.GetStatus().GetState() != pb.State_STATE_RUNNING {
					return out.String(), fmt.Errorf("no final RUNNING status, got %v", final)
				}
				return out.String(), nil
			}
			if m.GetJob() != nil {
				final = m.GetJob()
				continue
			}
			if final != nil {
				return out.String(), fmt.Errorf("output after the final message: %v", m)
			}
			out.Write(m.GetData())
		}
	}
	tail := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		req  *pb.WatchJobOutputRequest
		want string
	}{
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true}, "a\nb\nc\nd\n"},
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true, TailLines: tail(2)}, "c\nd\n"},
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true, TailLines: tail(3)}, "b\nc\nd\n"},
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true, TailLines: tail(100)}, "a\nb\nc\nd\n"},
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true, TailLines: tail(0)}, ""},
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true, Offset: 5}, "\nd\n"},
		// Per stream: the last line of stdout (d) and of stderr (c).
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true, TailLines: tail(1), TailPerStream: true}, "c\nd\n"},
		// stdout's last 2 are b and d; stderr has c only: its tail starts
		// at 0, and a (stdout, before b) is skipped.
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true, TailLines: tail(2), TailPerStream: true}, "b\nc\nd\n"},
		{&pb.WatchJobOutputRequest{Name: name, NoFollow: true, TailLines: tail(0), TailPerStream: true}, ""},
	} {
		got, err := read(tc.req)
		if err != nil || got != tc.want {
			t.Errorf("watch %v: %q, %v; want %q", tc.req, got, err, tc.want)
		}
	}
	_, err = read(&pb.WatchJobOutputRequest{Name: name, TailLines: tail(-1)})
	wantCode(t, "negative tail", err, codes.InvalidArgument)
}
