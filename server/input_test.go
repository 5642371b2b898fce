package server

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
)

// TestWriteJobInput: the owner and an admin may write to a job's input,
// one at a time (the second is told who holds it); anyone else gets the
// very answer of a missing job; data, sizes and close arrive in order; a
// stream that ends without close detaches.
func TestWriteJobInput(t *testing.T) {
	ts := startServer(t, nil)
	ctx := testCtx(t)
	alice := ts.as(t, "alice", certgen.RoleUser)
	bob := ts.as(t, "bob", certgen.RoleUser)
	root := ts.as(t, "root", certgen.RoleAdmin)

	resp, err := alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Tty: true, TtySize: &pb.WindowSize{Rows: 24, Cols: 80}})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetJob().GetName()
	if !resp.GetJob().GetStdin() || !resp.GetJob().GetTty() {
		t.Errorf("job %v: want stdin and tty set", resp.GetJob())
	}
	if req := ts.runner.lastStart(); !req.Stdin || !req.TTY || req.TTYRows != 24 || req.TTYCols != 80 {
		t.Errorf("runner got stdin %v tty %v %dx%d, want true true 24x80", req.Stdin, req.TTY, req.TTYRows, req.TTYCols)
	}
	in := ts.runner.input(name)

	// bob: exactly the answer for a job that does not exist.
	bs, err := bob.WriteJobInput(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bs.Send(&pb.WriteJobInputRequest{Name: name, Data: []byte("rm -rf /\n")})
	_, err = bs.CloseAndRecv()
	got := wantCode(t, "bob writes to alice's job", err, codes.NotFound)
	ms, _ := bob.WriteJobInput(ctx)
	ms.Send(&pb.WriteJobInputRequest{Name: "jobs/0000000000000000"})
	_, err = ms.CloseAndRecv()
	ref := wantCode(t, "input of a missing job", err, codes.NotFound)
	if strings.ReplaceAll(got.Message(), name, "N") != strings.ReplaceAll(ref.Message(), "jobs/0000000000000000", "N") {
		t.Errorf("bob got %q, a missing job %q: they must read the same", got.Message(), ref.Message())
	}

	// alice holds it; root is refused and told who.
	as, err := alice.WriteJobInput(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := as.Send(&pb.WriteJobInputRequest{Name: name, Data: []byte("one "), Resize: &pb.WindowSize{Rows: 40, Cols: 100}}); err != nil {
		t.Fatal(err)
	}
	// The server has attached once it received the first message; a
	// second message proves it (flow control: it reads after writing).
	if err := as.Send(&pb.WriteJobInputRequest{Data: []byte("two ")}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		in.mu.Lock()
		n := len(in.data)
		in.mu.Unlock()
		if n == len("one two ") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // waiting for a condition, bounded
	}
	rs, err := root.WriteJobInput(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs.Send(&pb.WriteJobInputRequest{Name: name, Data: []byte("x")})
	_, err = rs.CloseAndRecv()
	if st := wantCode(t, "a second writer", err, codes.FailedPrecondition); !strings.Contains(st.Message(), "alice") {
		t.Errorf("second writer told %q, want the holder named", st.Message())
	}

	// alice detaches (no close): the input stays open; root attaches.
	r, err := as.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	if r.GetBytesWritten() != int64(len("one two ")) {
		t.Errorf("bytes_written %d, want %d", r.GetBytesWritten(), len("one two "))
	}
	<-in.release
	rs, _ = root.WriteJobInput(ctx)
	rs.Send(&pb.WriteJobInputRequest{Name: name, Data: []byte("three"), Close: true})
	if _, err := rs.CloseAndRecv(); err != nil {
		t.Fatalf("admin writes after alice detached: %v", err)
	}
	in.mu.Lock()
	data, sizes, closed := string(in.data), in.sizes, in.closed
	in.mu.Unlock()
	if data != "one two three" || len(sizes) != 1 || sizes[0] != [2]uint16{40, 100} || !closed {
		t.Errorf("job got %q, sizes %v, closed %v; want \"one two three\", [[40 100]], true", data, sizes, closed)
	}

	// A job without stdin has no input; bad sizes are refused.
	resp, err = alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep"})
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := alice.WriteJobInput(ctx)
	ns.Send(&pb.WriteJobInputRequest{Name: resp.GetJob().GetName(), Data: []byte("x")})
	_, err = ns.CloseAndRecv()
	wantCode(t, "input of a job without stdin", err, codes.FailedPrecondition)
	_, err = alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Tty: true, TtySize: &pb.WindowSize{Rows: 1 << 16}})
	wantCode(t, "tty_size rows 65536", err, codes.InvalidArgument)
	es, _ := alice.WriteJobInput(ctx)
	_, err = es.CloseAndRecv()
	wantCode(t, "an empty input stream", err, codes.InvalidArgument)

	// An attached writer that sends nothing: the call ends with the job.
	resp, err = alice.StartJob(ctx, &pb.StartJobRequest{Command: "sleep", Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	idle, _ := alice.WriteJobInput(ctx)
	idle.Send(&pb.WriteJobInputRequest{Name: resp.GetJob().GetName()})
	<-ts.runner.input(resp.GetJob().GetName()).attached
	if _, err := alice.StopJob(ctx, &pb.StopJobRequest{Name: resp.GetJob().GetName()}); err != nil {
		t.Fatal(err)
	}
	var out pb.WriteJobInputResponse
	if err := idle.RecvMsg(&out); err != nil {
		t.Errorf("idle writer after the job ended: %v, want the call ended OK", err)
	}
}
