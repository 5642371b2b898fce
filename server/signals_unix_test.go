//go:build unix

package server

import (
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// TestSignalJob: the allowed signals by name, number and SIG prefix reach
// the runner; others, and callers who may not see the job, are refused.
func TestSignalJob(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	alice := ts.as(t, "alice", certgen.RoleUser)
	bob := ts.as(t, "bob", certgen.RoleUser)
	root := ts.as(t, "root", certgen.RoleAdmin)
	resp, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep"})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetJob().GetName()

	for sig, want := range map[string]syscall.Signal{"TERM": syscall.SIGTERM, "sigint": syscall.SIGINT, "SIGHUP": syscall.SIGHUP,
		"10": syscall.SIGUSR1, "winch": syscall.SIGWINCH, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT} {
		if _, err := alice.SignalJob(ctx, &pb.SignalJobRequest{Name: name, Signal: sig, All: sig == "STOP"}); err != nil {
			t.Fatalf("signal %s: %v", sig, err)
		}
		ts.runner.mu.Lock()
		got := ts.runner.signals[len(ts.runner.signals)-1]
		ts.runner.mu.Unlock()
		if got.sig != want || got.all != (sig == "STOP") {
			t.Errorf("signal %q sent %+v, want %v", sig, got, want)
		}
	}
	for _, bad := range []string{"", "SEGV", "11", "0", "-9", "64", "SIGFOO", "TERM TERM"} {
		_, err := alice.SignalJob(ctx, &pb.SignalJobRequest{Name: name, Signal: bad})
		wantCode(t, "signal "+bad, err, codes.InvalidArgument)
	}
	// Another user's job is not found; an admin may signal it.
	_, err = bob.SignalJob(ctx, &pb.SignalJobRequest{Name: name, Signal: "KILL"})
	wantCode(t, "bob signals alice's job", err, codes.NotFound)
	if _, err := root.SignalJob(ctx, &pb.SignalJobRequest{Name: name, Signal: "KILL"}); err != nil {
		t.Fatalf("admin signals alice's job: %v", err)
	}
	_, err = alice.SignalJob(ctx, &pb.SignalJobRequest{Name: name, Signal: "TERM"})
	wantCode(t, "signal an ended job", err, codes.FailedPrecondition)
}
