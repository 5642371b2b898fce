package client

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// TestWatchTailAndNoFollow: with --tail the first message's offset is
// where the output starts (no "jump" error), a resume continues there
// without asking for the tail again, and --no-follow exits 0 while the job
// runs and with its code once it ended.
func TestWatchTailAndNoFollow(t *testing.T) {
	drop := status.Error(codes.Unavailable, "connection reset")
	// The server chose offset 4 for the tail: the fake plays from the
	// offset it is asked, so a first call at 4 stands for "tail".
	f := &tailFake{&fakeForeman{out: output(), status: failed3, scripts: []script{{8, drop}, {-1, nil}}}}
	var stdout, stderr bytes.Buffer
	two := int64(2)
	err := watchJob(context.Background(), serveForeman(t, f), "jobs/x", &stdout, &stderr, time.Millisecond, watchOptions{tail: &two})
	if exitOf(err) != 3 || stdout.String() != "out2" || !strings.HasPrefix(stderr.String(), "err1") {
		t.Errorf("tail: exit %d (%v), stdout %q, stderr %q", exitOf(err), err, stdout.String(), stderr.String())
	}
	f.mu.Lock()
	if len(f.offsets) != 2 || f.offsets[0] != 4 || f.offsets[1] != 8 || f.tails != 1 {
		t.Errorf("watch calls at offsets %v (%d with tail_lines), want the tail at 4, a resume at 8 without", f.offsets, f.tails)
	}
	f.mu.Unlock()

	running := &pb.JobStatus{State: pb.State_STATE_RUNNING, ExitCode: -1}
	for st, want := range map[*pb.JobStatus]int{running: 0, failed3: 3} {
		f := &fakeForeman{out: output(), status: st, scripts: []script{{-1, nil}}}
		stdout.Reset()
		stderr.Reset()
		err := watchJob(context.Background(), serveFake(t, f), "jobs/x", &stdout, &stderr, time.Millisecond, watchOptions{noFollow: true})
		if exitOf(err) != want || stdout.String() != "out1out2" {
			t.Errorf("no-follow, %v: exit %d (%v), stdout %q; want exit %d", st.GetState(), exitOf(err), err, stdout.String(), want)
		}
	}
}

// tailFake answers tail_lines with the output from offset 4.
type tailFake struct{ *fakeForeman }

func (f tailFake) WatchJobOutput(req *pb.WatchJobOutputRequest, s grpc.ServerStreamingServer[pb.WatchJobOutputResponse]) error {
	if req.TailLines != nil {
		f.mu.Lock()
		f.tails++
		f.mu.Unlock()
		req = &pb.WatchJobOutputRequest{Name: req.GetName(), Offset: 4}
	}
	return f.fakeForeman.WatchJobOutput(req, s)
}

// signalFake records SignalJob calls.
type signalFake struct {
	fakeForeman
	mu   sync.Mutex
	sigs []string
}

func (f *signalFake) SignalJob(_ context.Context, req *pb.SignalJobRequest) (*pb.SignalJobResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sigs = append(f.sigs, req.GetName()+" "+req.GetSignal())
	return &pb.SignalJobResponse{}, nil
}

func (f *signalFake) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sigs...)
}

// TestForwardSignals: each signal is sent to the job; a second Ctrl-C
// within a second detaches instead.
func TestForwardSignals(t *testing.T) {
	f := &signalFake{}
	conn := serveForeman(t, f)
	sigs := make(chan os.Signal, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuf
	done := forwardSignals(ctx, conn, "jobs/x", sigs, &stderr, cancel)

	// TERM, then Ctrl-C twice in a row: TERM and the first Ctrl-C are
	// sent, the second detaches, however slow the server answers.
	sigs <- syscall.SIGTERM
	sigs <- os.Interrupt
	sigs <- os.Interrupt
	select {
	case detached := <-done:
		if !detached {
			t.Error("a second Ctrl-C did not detach")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second Ctrl-C did not detach within 10s")
	}
	got := f.sent()
	slices.Sort(got) // sent concurrently
	if len(got) != 2 || got[0] != "jobs/x SIGINT" || got[1] != "jobs/x SIGTERM" {
		t.Errorf("sent %q, want SIGTERM and one SIGINT (the second Ctrl-C is not sent)", got)
	}
	if !strings.Contains(stderr.String(), "Ctrl-C again within 1s detaches") {
		t.Errorf("stderr %q does not say how to detach", stderr.String())
	}
	if ctx.Err() == nil {
		t.Error("detaching did not end the watch's context")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuf is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestListFits100Columns: the default layout never passes 100 columns,
// whatever the names, owners and commands; -o wide shows them whole.
func TestListFits100Columns(t *testing.T) {
	now := time.Now()
	start := timestamppb.New(now.Add(-90 * time.Minute))
	jobs := []*pb.Job{
		{Name: "jobs/abcdefghijklmnopqrstuvwxyz", Owner: "alice", Command: "sleep", Args: []string{"1000"},
			Status: &pb.JobStatus{State: pb.State_STATE_RUNNING, StartTime: start}},
		{Name: "jobs/zyxwvutsrqponmlkjihgfedcba", Owner: strings.Repeat("o", 60), DisplayName: strings.Repeat("n", 63),
			Command: "sh", Args: []string{"-c", strings.Repeat("echo hello; ", 40)},
			Status: &pb.JobStatus{State: pb.State_STATE_FAILED, Signal: 9, Stopped: true, StartTime: start}},
		{Name: "jobs/2222222222222222222222222a", Owner: "bob", DisplayName: "web",
			Command: "python3", Args: []string{"-m", "http.server"},
			Status: &pb.JobStatus{State: pb.State_STATE_FAILED, ExitCode: 3, StartTime: start}},
	}
	var out bytes.Buffer
	if err := printList(&out, jobs, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("list:\n%s", out.String())
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > listWidth {
			t.Errorf("line of %d columns:\n%s", n, l)
		}
	}
	for _, want := range []string{"ID", "abcdefghijkl ", "RUNNING", "STOPPED", "EXIT 3", "web", "1h", "sleep 1000", "python3 -m http.server"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("list does not show %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := printWideList(&out, jobs, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"jobs/abcdefghijklmnopqrstuvwxyz", strings.Repeat("n", 63), "FAILED (killed by SIGKILL, stopped)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("wide list does not show %q:\n%s", want, out.String())
		}
	}
}
