package client

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// fakeForeman serves one job's output in scripted pieces: each call of
// WatchJobOutput plays the next script entry from the requested offset.
type fakeForeman struct {
	pb.UnimplementedForemanServer
	out    []*pb.WatchJobOutputResponse // the job's whole output
	status *pb.JobStatus

	mu      sync.Mutex
	scripts []script // guarded by mu; one per call, the last repeats
	offsets []int64  // guarded by mu; the offset of each call
	gets    int      // guarded by mu; GetJobStatus calls
	tails   int      // guarded by mu; calls with tail_lines (tailFake)
}

// script says how one WatchJobOutput call goes: send at most upto bytes'
// worth of messages (-1 = all), then end with err (nil = a clean end).
type script struct {
	upto int64
	err  error
}

func (f *fakeForeman) WatchJobOutput(req *pb.WatchJobOutputRequest, s grpc.ServerStreamingServer[pb.WatchJobOutputResponse]) error {
	f.mu.Lock()
	f.offsets = append(f.offsets, req.GetOffset())
	sc := f.scripts[min(len(f.offsets), len(f.scripts))-1]
	f.mu.Unlock()
	for _, m := range f.out {
		if m.Offset < req.GetOffset() {
			continue
		}
		if sc.upto >= 0 && m.Offset+int64(len(m.Data)) > sc.upto {
			break
		}
		if err := s.Send(m); err != nil {
			return err
		}
	}
	return sc.err
}

// GetJobStatus answers f.status with output_bytes the size of f.out.
func (f *fakeForeman) GetJobStatus(context.Context, *pb.GetJobStatusRequest) (*pb.GetJobStatusResponse, error) {
	f.mu.Lock()
	f.gets++
	f.mu.Unlock()
	st := proto.Clone(f.status).(*pb.JobStatus)
	for _, m := range f.out {
		st.OutputBytes += int64(len(m.Data))
	}
	return &pb.GetJobStatusResponse{Job: &pb.Job{Name: "jobs/x", Status: st, Limits: &pb.Limits{}}}, nil
}

// serveFake starts f on a loopback port and returns a Conn to it.
func serveFake(t *testing.T, f *fakeForeman) *Conn {
	t.Helper()
	return serveForeman(t, f)
}

// output is a job that wrote "out1", "err1", "out2" and exited 3.
func output() []*pb.WatchJobOutputResponse {
	return []*pb.WatchJobOutputResponse{
		{Stream: pb.Stream_STREAM_STDOUT, Offset: 0, Data: []byte("out1")},
		{Stream: pb.Stream_STREAM_STDERR, Offset: 4, Data: []byte("err1")},
		{Stream: pb.Stream_STREAM_STDOUT, Offset: 8, Data: []byte("out2")},
	}
}

var failed3 = &pb.JobStatus{State: pb.State_STATE_FAILED, ExitCode: 3}

func TestWatchExitCode(t *testing.T) {
	for _, tc := range []struct {
		st   *pb.JobStatus
		want int
	}{
		{&pb.JobStatus{State: pb.State_STATE_COMPLETED}, 0},
		{failed3, 3},
		{&pb.JobStatus{State: pb.State_STATE_FAILED, ExitCode: -1, Signal: 9, Stopped: true}, 137},
		{&pb.JobStatus{State: pb.State_STATE_FAILED, ExitCode: -1, Signal: 15}, 143},
	} {
		f := &fakeForeman{out: output(), status: tc.st, scripts: []script{{-1, nil}}}
		var stdout, stderr bytes.Buffer
		err := watchJob(context.Background(), serveFake(t, f), "jobs/x", &stdout, &stderr, time.Millisecond, watchOptions{})
		if got := exitOf(err); got != tc.want {
			t.Errorf("%v: exit %d (%v), want %d", tc.st, got, err, tc.want)
		}
		if stdout.String() != "out1out2" || stderr.String() != "err1" {
			t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
		}
	}
}

// TestWatchResumes breaks the stream twice with Unavailable (as a dropped
// connection does): watch resumes at the right offsets and every byte
// arrives exactly once.
func TestWatchResumes(t *testing.T) {
	drop := status.Error(codes.Unavailable, "connection reset")
	f := &fakeForeman{out: output(), status: failed3, scripts: []script{{4, drop}, {8, drop}, {-1, nil}}}
	var stdout, stderr bytes.Buffer
	err := watchJob(context.Background(), serveFake(t, f), "jobs/x", &stdout, &stderr, time.Millisecond, watchOptions{})
	if exitOf(err) != 3 {
		t.Errorf("exit %d (%v), want 3", exitOf(err), err)
	}
	if stdout.String() != "out1out2" {
		t.Errorf("stdout %q", stdout.String())
	}
	if want := "err1telehandler: connection lost (connection reset); resuming jobs/x at byte 8\n"; !strings.HasSuffix(stderr.String(), want) {
		t.Errorf("stderr %q, want it to end in %q", stderr.String(), want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.offsets) != 3 || f.offsets[0] != 0 || f.offsets[1] != 4 || f.offsets[2] != 8 {
		t.Errorf("watch calls at offsets %v, want [0 4 8]", f.offsets)
	}
}

// TestWatchBroken checks that a stream that breaks for good is an error
// with a non-zero exit, never 0, even for a job that completed.
func TestWatchBroken(t *testing.T) {
	completed := &pb.JobStatus{State: pb.State_STATE_COMPLETED}
	for name, sc := range map[string][]script{
		"internal error":          {{4, status.Error(codes.Internal, "disk on fire")}},
		"connection never back":   {{4, status.Error(codes.Unavailable, "connection refused")}},
		"stream ends before data": {{-1, status.Error(codes.DataLoss, "truncated")}},
		// A clean end of stream before the job's last byte (a proxy or a
		// server that cut it short) still lost output.
		"clean end, bytes missing": {{4, nil}},
	} {
		f := &fakeForeman{out: output(), status: completed, scripts: sc}
		var stdout, stderr bytes.Buffer
		err := watchJob(context.Background(), serveFake(t, f), "jobs/x", &stdout, &stderr, time.Millisecond, watchOptions{})
		if err == nil || exitOf(err) == 0 {
			t.Errorf("%s: watch returned %v (exit %d), want an error", name, err, exitOf(err))
		}
	}
}

// TestWatchNoRetryOnHandshakeFailure checks that a refused TLS handshake
// (wrong CA, expired or foreign certificate) fails at once: retrying cannot
// fix a certificate.
func TestWatchNoRetryOnHandshakeFailure(t *testing.T) {
	for hint, msg := range map[string]string{
		"not signed by the CA":                `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`,
		"the server refused your client cert": `connection error: desc = "error reading server preface: remote error: tls: unknown certificate authority"`,
	} {
		refused := status.Error(codes.Unavailable, msg)
		f := &fakeForeman{out: output(), status: failed3, scripts: []script{{0, refused}}}
		var stdout, stderr bytes.Buffer
		err := watchJob(context.Background(), serveFake(t, f), "jobs/x", &stdout, &stderr, time.Millisecond, watchOptions{})
		if exitOf(err) == 0 || !strings.Contains(err.Error(), hint) {
			t.Errorf("watch = %v (exit %d), want %q and a non-zero exit", err, exitOf(err), hint)
		}
		f.mu.Lock()
		if len(f.offsets) != 1 {
			t.Errorf("%s: %d watch calls, want 1 (no retry after refused TLS)", hint, len(f.offsets))
		}
		f.mu.Unlock()
	}
}

// exitOf is the exit status run would give err.
func exitOf(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string][2]string{
		"127.0.0.1:7443":   {"127.0.0.1:7443", "127.0.0.1"},
		"localhost":        {"localhost:7443", "localhost"},
		"[::1]:9000":       {"[::1]:9000", "::1"},
		"::1":              {"[::1]:7443", "::1"},
		"[::1]":            {"[::1]:7443", "::1"},
		"worker.example:1": {"worker.example:1", "worker.example"},
	} {
		addr, host, err := hostPort(in)
		if err != nil || addr != want[0] || host != want[1] {
			t.Errorf("hostPort(%q) = %q, %q, %v; want %q, %q", in, addr, host, err, want[0], want[1])
		}
	}
	for _, in := range []string{"", ":7443", "a b", "[]", "[a b]", "h:1 2", "h:abc", "h:-1", "h:0", "h:99999", "h:https", "[::1]:"} {
		if _, _, err := hostPort(in); err == nil {
			t.Errorf("hostPort(%q) accepted", in)
		}
	}
}

func TestDescribeState(t *testing.T) {
	for want, st := range map[string]*pb.JobStatus{
		"RUNNING":                             {State: pb.State_STATE_RUNNING, ExitCode: -1},
		"COMPLETED":                           {State: pb.State_STATE_COMPLETED},
		"FAILED (exit code 3)":                {State: pb.State_STATE_FAILED, ExitCode: 3},
		"FAILED (killed by SIGKILL, stopped)": {State: pb.State_STATE_FAILED, ExitCode: -1, Signal: 9, Stopped: true},
		"FAILED (killed by SIGKILL, stopped by server shutdown)": {State: pb.State_STATE_FAILED, ExitCode: -1, Signal: 9, Stopped: true,
			EndReason: pb.EndReason_END_REASON_SERVER_SHUTDOWN},
		"FAILED (killed by SIGKILL, out of memory)": {State: pb.State_STATE_FAILED, ExitCode: -1, Signal: 9, OomKilled: true},
	} {
		if got := describeState(st); got != want {
			t.Errorf("describeState(%v) = %q, want %q", st, got, want)
		}
	}
	if got := shellQuote("sh", []string{"-c", "echo 'hi'; exit 3", ""}); got != `sh -c 'echo '\''hi'\''; exit 3' ''` {
		t.Errorf("shellQuote = %s", got)
	}
}

// TestWatchFinalMessage proves that watch takes the job's end from the
// stream's last message (no GetJobStatus call), tells a job stopped by the
// server's shutdown (exit as for a stopped job), reports gaps where they
// are, and never exits 0 for output it did not deliver.
func TestWatchFinalMessage(t *testing.T) {
	final := func(st *pb.JobStatus) *pb.WatchJobOutputResponse {
		st.OutputBytes = 12
		return &pb.WatchJobOutputResponse{Offset: 12, Job: &pb.Job{Name: "jobs/x", Status: st, Limits: &pb.Limits{}}}
	}
	for _, tc := range []struct {
		name   string
		out    []*pb.WatchJobOutputResponse
		exit   int
		stderr string
	}{
		{"completed", append(output(), final(&pb.JobStatus{State: pb.State_STATE_COMPLETED})), 0, "err1"},
		{"stopped by server shutdown", append(output(), final(&pb.JobStatus{State: pb.State_STATE_FAILED, ExitCode: -1, Signal: 9,
			Stopped: true, EndReason: pb.EndReason_END_REASON_SERVER_SHUTDOWN})),
			137, "err1telehandler: jobs/x was stopped by server shutdown\n"},
		{"server lost", append(output(), final(&pb.JobStatus{State: pb.State_STATE_FAILED, ExitCode: -1,
			EndReason: pb.EndReason_END_REASON_SERVER_LOST})),
			1, "err1telehandler: jobs/x ended with the server, which stopped while it ran (killed or crashed): its output until then is all there is\n"},
		{"cap", append(output(), final(&pb.JobStatus{State: pb.State_STATE_COMPLETED, OutputTruncated: true,
			OutputTruncation: pb.TruncationReason_TRUNCATION_REASON_CAP, OutputDroppedBytes: 100})),
			1, "err1telehandler: the output of jobs/x is incomplete: 100 bytes dropped: the job wrote more than the server's output cap\n"},
		{"disk full", []*pb.WatchJobOutputResponse{
			{Stream: pb.Stream_STREAM_STDOUT, Offset: 0, Data: []byte("out1")},
			{Offset: 4, DroppedBytes: 7},
			{Stream: pb.Stream_STREAM_STDERR, Offset: 4, Data: []byte("err1")},
			{Stream: pb.Stream_STREAM_STDOUT, Offset: 8, Data: []byte("out2")},
			final(&pb.JobStatus{State: pb.State_STATE_FAILED, ExitCode: 3, OutputTruncated: true,
				OutputTruncation: pb.TruncationReason_TRUNCATION_REASON_WRITE_ERROR, OutputDroppedBytes: 7, OutputError: "no space left on device"}),
		}, 3, "telehandler: 7 bytes of output missing here: the server could not write them to its disk\nerr1" +
			"telehandler: the output of jobs/x is incomplete: 7 bytes dropped: the server could not write it to its disk (no space left on device)\n"},
	} {
		f := &fakeForeman{out: tc.out, scripts: []script{{-1, nil}}}
		var stdout, stderr bytes.Buffer
		err := watchJob(context.Background(), serveFake(t, f), "jobs/x", &stdout, &stderr, time.Millisecond, watchOptions{})
		if got := exitOf(err); got != tc.exit {
			t.Errorf("%s: exit %d (%v), want %d", tc.name, got, err, tc.exit)
		}
		if stdout.String() != "out1out2" || stderr.String() != tc.stderr {
			t.Errorf("%s: stdout %q, stderr %q; want stderr %q", tc.name, stdout.String(), stderr.String(), tc.stderr)
		}
		f.mu.Lock()
		if f.gets != 0 {
			t.Errorf("%s: %d GetJobStatus calls, want none", tc.name, f.gets)
		}
		f.mu.Unlock()
	}
}
