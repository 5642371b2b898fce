package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// TestHealthAndReflection checks the standard services tools like grpcurl
// use: health says SERVING, reflection lists the Foreman service.
func TestHealthAndReflection(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	_, conn := ts.dial(t, ts.clientTLS(ts.client(t, "alice", certgen.RoleUser)))
	for _, svc := range []string{"", pb.Foreman_ServiceDesc.ServiceName} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v, %v", svc, resp, err)
		}
	}
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), pb.Foreman_ServiceDesc.ServiceName) {
		t.Errorf("reflection lists %v", names)
	}
}

// TestShutdown checks that ending Serve's context stops the jobs through
// the runner, ends a live watch after the job's last byte, refuses new
// calls, and makes Serve return nil.
func TestShutdown(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Args: []string{"hello"}})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := c.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: resp.GetJob().GetName()})
	if err != nil {
		t.Fatal(err)
	}
	// The first message proves the server is following the live job.
	if m, err := stream.Recv(); err != nil || string(m.Data) != "hello" {
		t.Fatalf("first message %v, %v", m, err)
	}
	watchDone := make(chan error, 1)
	go func() {
		// The job's end, then the end of the stream.
		m, err := stream.Recv()
		if err != nil {
			watchDone <- err
			return
		}
		if st := m.GetJob().GetStatus(); st.GetEndReason() != pb.EndReason_END_REASON_SERVER_SHUTDOWN || !st.GetStopped() {
			watchDone <- fmt.Errorf("final message %v, want a job stopped by server shutdown", m)
			return
		}
		_, err = stream.Recv()
		watchDone <- err
	}()
	ts.stop(t)
	if !ts.runner.isShutdown() {
		t.Error("Runner.Shutdown was not called")
	}
	select {
	case err := <-watchDone:
		if err == nil || !strings.Contains(err.Error(), "EOF") {
			// io.EOF: the stream ended normally after the job ended.
			t.Errorf("watch ended with %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch still open after shutdown")
	}
	_, err = c.ListJobs(ctx, &pb.ListJobsRequest{})
	wantCode(t, "call after shutdown", err, codes.Unavailable)
}

// TestCallLogs checks each call is logged with who, what and the outcome.
func TestCallLogs(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetJob().GetName()
	c.GetJobStatus(ctx, &pb.GetJobStatusRequest{Name: "jobs/nope"})
	watchAll(ctx, c, name, 0)

	type line struct {
		Msg, RPC, User, Role, Code, Job, Error string
	}
	var lines []line
	for _, l := range strings.Split(strings.TrimSpace(ts.logs.String()), "\n") {
		var v line
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if v.Msg == "rpc" {
			lines = append(lines, v)
		}
	}
	want := []line{
		{"rpc", "/telehandler.foreman.v1alpha1.Foreman/StartJob", "alice", "user", "OK", name, ""},
		{"rpc", "/telehandler.foreman.v1alpha1.Foreman/GetJobStatus", "alice", "user", "NotFound", "jobs/nope", "job jobs/nope not found"},
		{"rpc", "/telehandler.foreman.v1alpha1.Foreman/WatchJobOutput", "alice", "user", "OK", name, ""},
	}
	if len(lines) != len(want) {
		t.Fatalf("logged %+v, want %+v", lines, want)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("log line %d: %+v, want %+v", i, lines[i], want[i])
		}
	}
}
