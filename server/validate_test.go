package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
	"github.com/drrev/telehandler/internal/watchcodec"
	"github.com/drrev/telehandler/jobrunner"
	"github.com/drrev/telehandler/sandbox"
)

func TestParseJobRef(t *testing.T) {
	good := map[string]jobRef{
		"jobs/abc":              {s: "abc", idOnly: true},
		"jobs/0123456789abcdef": {s: "0123456789abcdef", idOnly: true},
		"jobs/A-b_9":            {s: "A-b_9", idOnly: true},
		"abc":                   {s: "abc"},
		"web.1":                 {s: "web.1"},
		"jobs/..":               {s: "..", idOnly: true}, // matches nothing: ids hold no dots
	}
	for name, want := range good {
		if ref, err := parseJobRef(name); err != nil || ref != want {
			t.Errorf("parseJobRef(%q) = %+v, %v; want %+v", name, ref, err, want)
		}
	}
	bad := []string{"", "jobs/", "job/abc", "/jobs/abc", "jobs/a/b", "jobs/a b",
		"jobs/a\x00", "jobs/é", "JOBS/abc", "jobs/" + strings.Repeat("a", maxIDLen+1), "a b", "../x"}
	for _, name := range bad {
		if _, err := parseJobRef(name); !errors.Is(err, errInvalidArgument) {
			t.Errorf("parseJobRef(%q) = %v, want errInvalidArgument", name, err)
		}
	}
	if got := jobName("abc"); got != "jobs/abc" {
		t.Errorf("jobName = %q", got)
	}
}

// TestMalformedNames sends every job-addressed RPC malformed names: each is
// InvalidArgument, and the server keeps serving.
func TestMalformedNames(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	for _, name := range []string{"", "a b", "jobs/", "jobs/a/b", "jobs/../../etc", "jobs/" + strings.Repeat("x", 10000)} {
		_, err := c.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: name})
		wantCode(t, fmt.Sprintf("GetJobStatus(%.20q)", name), err, codes.InvalidArgument)
		_, err = c.StopJob(ctx, &pb.StopJobRequest{Name: name})
		wantCode(t, fmt.Sprintf("StopJob(%.20q)", name), err, codes.InvalidArgument)
		_, err = watchAll(ctx, c, name, 0)
		wantCode(t, fmt.Sprintf("WatchJobOutput(%.20q)", name), err, codes.InvalidArgument)
	}
	if _, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "true"}); err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
}

// TestBadStartRequests sends StartJob requests that must be refused before
// anything runs, with the code and a message that says why.
func TestBadStartRequests(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.MaxLimits = sandbox.Limits{CPUMilli: 2000, MemoryBytes: 1 << 30}
	})
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)

	many := make([]string, maxArgs+1)
	big := make([]string, 20)
	for i := range big {
		big[i] = strings.Repeat("a", 100<<10)
	}
	cases := []struct {
		name string
		req  *pb.StartJobRequest
		code codes.Code
		msg  string // part of the status message
	}{
		{"empty command", &pb.StartJobRequest{}, codes.InvalidArgument, "command is empty"},
		{"too many arguments", &pb.StartJobRequest{Command: "true", Args: many}, codes.InvalidArgument, "10001 arguments"},
		{"2 MB of arguments", &pb.StartJobRequest{Command: "true", Args: big}, codes.InvalidArgument, "more than the 1048576 allowed"},
		{"one huge argument", &pb.StartJobRequest{Command: "true", Args: []string{strings.Repeat("a", 200<<10)}}, codes.InvalidArgument, "an argument is 204800 bytes"},
		{"5 MB request", &pb.StartJobRequest{Command: "true", Args: []string{strings.Repeat("a", 5<<20)}}, codes.ResourceExhausted, "larger than max"},
		{"NUL in argument", &pb.StartJobRequest{Command: "true", Args: []string{"a\x00b"}}, codes.InvalidArgument, "NUL"},
		{"env without =", &pb.StartJobRequest{Command: "true", Env: []string{"FOO"}}, codes.InvalidArgument, "KEY=VALUE"},
		{"env with empty key", &pb.StartJobRequest{Command: "true", Env: []string{"=x"}}, codes.InvalidArgument, "KEY=VALUE"},
		{"relative working dir", &pb.StartJobRequest{Command: "true", WorkingDir: "tmp"}, codes.InvalidArgument, "not an absolute path"},
		{"CPU above maximum", &pb.StartJobRequest{Command: "true", Limits: &pb.Limits{CpuMilli: 4000}}, codes.InvalidArgument, "limits.cpu_milli 4000 (4 CPUs) is above the server's maximum 2000 (2 CPUs)"},
		{"absurd memory", &pb.StartJobRequest{Command: "true", Limits: &pb.Limits{MemoryBytes: 1 << 62}}, codes.InvalidArgument, "limits.memory_bytes 4611686018427387904 (4EiB) is above the server's maximum 1073741824 (1GiB)"},
		{"absurd pids", &pb.StartJobRequest{Command: "true", Limits: &pb.Limits{Pids: ^uint64(0)}}, codes.InvalidArgument, "limits.pids"},
		{"limits the kernel refuses", &pb.StartJobRequest{Command: "true", Limits: &pb.Limits{CpuMilli: 1}}, codes.InvalidArgument, "CPU"},
		{"missing binary", &pb.StartJobRequest{Command: "missing"}, codes.FailedPrecondition, "no such file"},
		{"sandbox failure", &pb.StartJobRequest{Command: "broken"}, codes.Internal, "sandbox setup failed"},
	}
	for _, tc := range cases {
		_, err := c.StartJob(ctx, tc.req)
		st := wantCode(t, tc.name, err, tc.code)
		if !strings.Contains(st.Message(), tc.msg) {
			t.Errorf("%s: message %q does not contain %q", tc.name, st.Message(), tc.msg)
		}
	}
	if n := len(ts.runner.List()); n != 0 {
		t.Errorf("%d jobs exist after refused starts", n)
	}

	_, err := c.StopJob(ctx, &pb.StopJobRequest{Name: "jobs/abc", GracePeriod: durationpb.New(-1)})
	wantCode(t, "negative grace period", err, codes.InvalidArgument)
	_, err = c.StopJob(ctx, &pb.StopJobRequest{Name: "jobs/abc", GracePeriod: &durationpb.Duration{Seconds: 1 << 40}})
	wantCode(t, "absurd grace period", err, codes.InvalidArgument)
	_, err = watchAll(ctx, c, "jobs/abc", -1)
	wantCode(t, "negative offset", err, codes.InvalidArgument)

	// Still serving.
	if _, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "true"}); err != nil {
		t.Fatalf("server stopped serving: %v", err)
	}
}

// TestLimits checks that zero fields of a request take the server's
// defaults and given fields are kept, and that jobs run as the configured
// user.
func TestLimits(t *testing.T) {
	uid, gid := uint32(65534), uint32(65534)
	def := sandbox.Limits{CPUMilli: 200, Pids: 50}
	ts := startServer(t, func(c *Config) {
		c.DefaultLimits = def
		c.RunAsUID, c.RunAsGID = &uid, &gid
	})
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "true", Limits: &pb.Limits{MemoryBytes: 64 << 20, Pids: 10}})
	if err != nil {
		t.Fatal(err)
	}
	want := sandbox.DefaultLimits()
	want.CPUMilli, want.MemoryBytes, want.Pids = 200, 64<<20, 10
	req := ts.runner.lastStart()
	if req.Limits != want {
		t.Errorf("runner got limits %+v, want %+v", req.Limits, want)
	}
	if got := limitsFromProto(resp.GetJob().GetLimits()); got != want {
		t.Errorf("response limits %+v, want %+v", got, want)
	}
	if req.UID == nil || *req.UID != uid || req.GID == nil || *req.GID != gid {
		t.Errorf("runner got uid %v gid %v, want 65534", req.UID, req.GID)
	}
	if req.Owner != "alice" {
		t.Errorf("owner %q", req.Owner)
	}
}

func TestConfigValidation(t *testing.T) {
	r := newFakeRunner()
	base := Config{CAFile: "ca", CertFile: "c", KeyFile: "k", Runner: r}
	cfg := base
	clamps, err := cfg.validate(host{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != DefaultListen || cfg.MaxJobs != DefaultMaxJobs || cfg.Logger == nil ||
		cfg.DefaultLimits != sandbox.DefaultLimits() || cfg.MaxLimits != DefaultMaxLimits() || len(clamps) != 0 {
		t.Errorf("defaults not filled: %+v (clamps %v)", cfg, clamps)
	}
	if cfg.MaxJobsPerUser != 250 || cfg.AdminReservedJobs != 50 || cfg.MaxConns != DefaultMaxConns ||
		cfg.MaxConnsPerIP != DefaultMaxConnsPerIP || cfg.MaxStreamsPerConn != DefaultMaxStreamsPerConn ||
		cfg.MaxWatchersPerUser != DefaultMaxWatchersPerUser || cfg.MaxHeaderBytes != DefaultMaxHeaderBytes ||
		cfg.HandshakeTimeout != DefaultHandshakeTimeout || cfg.IdleTimeout != DefaultIdleTimeout {
		t.Errorf("fair-share defaults not filled: %+v", cfg)
	}
	uid := uint32(1)
	for name, edit := range map[string]func(*Config){
		"no runner":              func(c *Config) { c.Runner = nil },
		"no CA":                  func(c *Config) { c.CAFile = "" },
		"uid without gid":        func(c *Config) { c.RunAsUID = &uid },
		"negative max jobs":      func(c *Config) { c.MaxJobs = -1 },
		"default above max":      func(c *Config) { c.MaxLimits.MemoryBytes = 1 << 20 },
		"default CPU too low":    func(c *Config) { c.DefaultLimits.CPUMilli = 1 },
		"per user above max":     func(c *Config) { c.MaxJobs, c.MaxJobsPerUser = 4, 5 },
		"negative per user":      func(c *Config) { c.MaxJobsPerUser = -2 },
		"reserve leaves none":    func(c *Config) { c.MaxJobs, c.AdminReservedJobs = 4, 4 },
		"negative reserve":       func(c *Config) { c.AdminReservedJobs = -2 },
		"negative conns":         func(c *Config) { c.MaxConns = -1 },
		"negative watchers":      func(c *Config) { c.MaxWatchersPerUser = -1 },
		"negative handshake":     func(c *Config) { c.HandshakeTimeout = -time.Second },
		"header size absurd":     func(c *Config) { c.MaxHeaderBytes = 1 << 31 },
		"default pids over host": func(c *Config) { c.MaxLimits.Pids = 0 }, // with a host of 100 pids below
	} {
		cfg := base
		edit(&cfg)
		h := host{}
		if name == "default pids over host" {
			h.pidMax = 100 // below the default 1024 processes of a job
		}
		if _, err := cfg.validate(h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestShareDefaults checks the documented shares of --max-jobs.
func TestShareDefaults(t *testing.T) {
	for _, c := range []struct{ maxJobs, perUser, reserved int }{
		{1, 1, 0}, {2, 1, 1}, {5, 2, 1}, {8, 2, 1}, {40, 10, 2}, {1000, 250, 50},
	} {
		if got := DefaultMaxJobsPerUser(c.maxJobs); got != c.perUser {
			t.Errorf("DefaultMaxJobsPerUser(%d) = %d, want %d", c.maxJobs, got, c.perUser)
		}
		if got := DefaultAdminReservedJobs(c.maxJobs); got != c.reserved {
			t.Errorf("DefaultAdminReservedJobs(%d) = %d, want %d", c.maxJobs, got, c.reserved)
		}
	}
	cfg := Config{CAFile: "ca", CertFile: "c", KeyFile: "k", Runner: newFakeRunner(), MaxJobs: 5, AdminReservedJobs: NoAdminReserve}
	if _, err := cfg.validate(host{}); err != nil || cfg.AdminReservedJobs != NoAdminReserve {
		t.Errorf("NoAdminReserve: %v, reserve %d", err, cfg.AdminReservedJobs)
	}
}

// TestClampToHost checks the maxima are lowered to what the host has, say
// so, and are left alone when the host has more or is unknown.
func TestClampToHost(t *testing.T) {
	base := Config{CAFile: "ca", CertFile: "c", KeyFile: "k", Runner: newFakeRunner()}
	cfg := base
	cfg.MaxLimits.Pids = 65536
	clamps, err := cfg.validate(host{pidMax: 32768, memTotal: 8 << 30, noFile: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxLimits.Pids != 32767 || cfg.MaxLimits.MemoryBytes != 8<<30 || cfg.MaxConns != 512 {
		t.Errorf("maxima after the clamp: pids %d, memory %d, conns %d", cfg.MaxLimits.Pids, cfg.MaxLimits.MemoryBytes, cfg.MaxConns)
	}
	var names []string
	for _, c := range clamps {
		names = append(names, c.limit)
	}
	if strings.Join(names, " ") != "max-pids max-memory max-conns" {
		t.Errorf("clamps %v", clamps)
	}
	cfg = base
	if clamps, _ := cfg.validate(host{pidMax: 4 << 20, memTotal: 64 << 30, noFile: 1 << 20}); len(clamps) != 0 || cfg.MaxLimits != DefaultMaxLimits() {
		t.Errorf("a large host clamped %v", clamps)
	}

	// Through New, the start log says what was lowered, and a request
	// above the lowered maximum is InvalidArgument, as before.
	logs := &syncBuffer{}
	real := readHost()
	if real.pidMax < 2 {
		t.Skip("cannot read kernel.pid_max")
	}
	ts := startServer(t, func(c *Config) {
		c.MaxLimits.Pids = real.pidMax + 1000
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	if !strings.Contains(logs.String(), `"limit":"max-pids"`) || !strings.Contains(logs.String(), "kernel.pid_max") {
		t.Errorf("start log does not say max-pids was lowered:\n%s", logs)
	}
	c := ts.as(t, "alice", certgen.RoleUser)
	_, err = c.StartJob(testCtx(t), &pb.StartJobRequest{Command: "sleep", Limits: &pb.Limits{Pids: real.pidMax}})
	st := wantCode(t, "pids at pid_max", err, codes.InvalidArgument)
	if !strings.Contains(st.Message(), "maximum") {
		t.Errorf("message %q", st.Message())
	}
}

// TestToStatus is the error mapping table: every known error has its code,
// unknown errors are Internal, never Unknown.
func TestToStatus(t *testing.T) {
	cases := []struct {
		err  error
		code codes.Code
	}{
		{fmt.Errorf("start: %w", jobrunner.ErrInvalidRequest), codes.InvalidArgument},
		{fmt.Errorf("%w: %w", jobrunner.ErrInvalidRequest, sandbox.ErrInvalidLimits), codes.InvalidArgument},
		{fmt.Errorf("x: %w", sandbox.ErrInvalidLimits), codes.InvalidArgument},
		{errorf(errInvalidArgument, "bad"), codes.InvalidArgument},
		{errorf(errUnauthenticated, "who"), codes.Unauthenticated},
		{errorf(errPermissionDenied, "no"), codes.PermissionDenied},
		{errorf(jobrunner.ErrTooManyJobs, "full"), codes.ResourceExhausted},
		{&jobrunner.QuotaError{Limit: 1}, codes.ResourceExhausted},
		{errorf(errTooManyWatchers, "many"), codes.ResourceExhausted},
		{fmt.Errorf("%w (no space left on device)", jobrunner.ErrStateDirFull), codes.ResourceExhausted},
		{jobErr("jobs/a", fmt.Errorf("a: %w", jobrunner.ErrJobNotFound)), codes.NotFound},
		{jobErr("jobs/a", jobrunner.ErrNotRunning), codes.FailedPrecondition},
		{fmt.Errorf("%w: exec: no such file", sandbox.ErrExec), codes.FailedPrecondition},
		{jobErr("jobs/a", jobrunner.ErrInvalidOffset), codes.OutOfRange},
		{jobrunner.ErrShuttingDown, codes.Unavailable},
		{fmt.Errorf("%w: mount", sandbox.ErrShim), codes.Internal},
		{sandbox.ErrNoController, codes.Internal},
		{fmt.Errorf("%w \"alpine\": this server has images busybox", sandbox.ErrUnknownImage), codes.InvalidArgument},
		{fmt.Errorf("%w: all 2 uids in use", sandbox.ErrNoUID), codes.ResourceExhausted},
		{errors.New("disk on fire"), codes.Internal},
		{context.Canceled, codes.Canceled},
		{fmt.Errorf("w: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{jobErr("jobs/a", status.Error(codes.Unavailable, "transport closing")), codes.Unavailable},
	}
	for _, tc := range cases {
		st := status.Convert(toStatus(tc.err))
		if st.Code() != tc.code {
			t.Errorf("toStatus(%v) = %v, want %v", tc.err, st.Code(), tc.code)
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
	// A job that is missing and one that is hidden read the same, whatever
	// the runner's own wording.
	a := status.Convert(toStatus(jobErr("jobs/x", fmt.Errorf("runner: %w: x", jobrunner.ErrJobNotFound))))
	b := status.Convert(toStatus(jobErr("jobs/x", jobrunner.ErrJobNotFound)))
	if a.Message() != b.Message() || a.Message() != "job jobs/x not found" {
		t.Errorf("not-found messages differ: %q vs %q", a.Message(), b.Message())
	}
}

// TestWatchOutput checks that chunks arrive in order with their stream and
// offset, that chunks above maxChunkBytes are split, that a resumed watch
// starts at its offset, and that the data is the runner's even though the
// runner scribbles over its buffer after each chunk (and the server reuses
// one message per stream).
func TestWatchOutput(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	bigOut := bytes.Repeat([]byte("0123456789abcdef"), 7500) // 120000 bytes
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "emit", Args: []string{string(bigOut), "err\n", "tail\n"}})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetJob().GetName()
	msgs, err := watchAll(ctx, c, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr []byte
	var off int64
	for _, m := range msgs {
		if len(m.Data) > maxChunkBytes {
			t.Errorf("message of %d bytes", len(m.Data))
		}
		if m.Offset != off {
			t.Errorf("offset %d, want %d", m.Offset, off)
		}
		off += int64(len(m.Data))
		switch m.Stream {
		case pb.Stream_STREAM_STDOUT:
			stdout = append(stdout, m.Data...)
		case pb.Stream_STREAM_STDERR:
			stderr = append(stderr, m.Data...)
		default:
			t.Errorf("stream %v", m.Stream)
		}
	}
	if !bytes.Equal(stdout, append(bigOut, "tail\n"...)) || string(stderr) != "err\n" {
		t.Errorf("output differs: %d stdout bytes, stderr %q", len(stdout), stderr)
	}
	if want := (len(bigOut)+maxChunkBytes-1)/maxChunkBytes + 2; len(msgs) != want {
		t.Errorf("%d messages, want %d: %d bytes in chunks of %d, then 2 small ones", len(msgs), want, len(bigOut), maxChunkBytes)
	}

	resumed, err := watchAll(ctx, c, name, int64(len(bigOut))+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(resumed) != 2 || string(resumed[0].Data) != "rr\n" || string(resumed[1].Data) != "tail\n" {
		t.Errorf("resumed watch: %v", resumed)
	}
	_, err = watchAll(ctx, c, name, 1<<40)
	wantCode(t, "offset past the end", err, codes.OutOfRange)
}

// TestWatchFrameIsProto checks that a WatchJobOutput message with a full
// chunk, the largest offset and a stream, as the server encodes it
// (watchcodec, the data not copied), is byte for byte what proto-go writes
// for the same WatchJobOutputResponse (any gRPC client reads it), and that
// it fits in two HTTP/2 frames.
func TestWatchFrameIsProto(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), maxChunkBytes/16)
	msg := &pb.WatchJobOutputResponse{Stream: pb.Stream_STREAM_STDERR, Offset: math.MaxInt64, Data: data}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	frame := &watchcodec.Frame{Stream: msg.Stream, Offset: msg.Offset, Data: mem.BufferSlice{mem.SliceBuffer(data)}}
	got, err := watchcodec.Codec{}.Marshal(frame)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Free()
	if !bytes.Equal(got.Materialize(), want) {
		t.Errorf("a full frame encodes to %d bytes that differ from proto's %d", got.Len(), len(want))
	}
	// With gRPC's 5-byte prefix, a full message fits in two HTTP/2 DATA
	// frames of 16 KiB (see maxChunkBytes).
	if n := got.Len() + 5; n > 2*16<<10 {
		t.Errorf("a full message takes %d bytes on the wire: more than two 16 KiB frames", n)
	}
}

// TestJobsPidsCap: all jobs together get three quarters of the smaller of
// kernel.pid_max and kernel.threads-max; an unknown host caps nothing.
func TestJobsPidsCap(t *testing.T) {
	for _, c := range []struct {
		h    host
		want uint64
	}{
		{host{pidMax: 32768, threadsMax: 192729}, 24576},
		{host{pidMax: 4194304, threadsMax: 100000}, 75000},
		{host{threadsMax: 1000}, 750},
		{host{pidMax: 32768}, 24576},
		{host{}, 0},
	} {
		if got := c.h.jobsPidsCap(); got != c.want {
			t.Errorf("%+v: %d, want %d", c.h, got, c.want)
		}
	}
	if runtime.GOOS == "linux" && JobsPidsCap() == 0 {
		t.Error("JobsPidsCap on Linux is 0: kernel.pid_max not read")
	}
}
