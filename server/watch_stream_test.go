package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
	"github.com/drrev/telehandler/internal/watchcodec"
	"github.com/drrev/telehandler/jobrunner"
)

// logRunner is the fake runner whose WatchChunks follows a real output
// log, so that the server's zero-copy path (retained chunks) runs, and
// counts the bytes it handed to the server.
type logRunner struct {
	JobRunner
	log    *jobrunner.OutputLog
	handed atomic.Int64
}

func (r *logRunner) WatchChunks(ctx context.Context, id string, from int64, maxChunk int, fn func(jobrunner.Chunk) error) (jobrunner.Status, error) {
	if _, err := r.JobRunner.Status(id); err != nil {
		return jobrunner.Status{}, err
	}
	err := r.log.WatchChunks(ctx, from, maxChunk, func(c jobrunner.Chunk) error {
		r.handed.Add(int64(len(c.Data)))
		return fn(c)
	})
	return jobrunner.Status{ID: id, State: jobrunner.StateCompleted, OutputBytes: r.log.Size()}, err
}

// startLogServer serves a runner whose every job's output is a real log
// holding n random bytes of both streams, returned as written.
func startLogServer(t *testing.T, n int) (*testServer, *logRunner, []byte) {
	t.Helper()
	l, err := jobrunner.CreateOutputLog(filepath.Join(t.TempDir(), "job.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(41, 42))
	fill := rand.NewChaCha8([32]byte{41})
	var all bytes.Buffer
	for all.Len() < n {
		p := make([]byte, min(n-all.Len(), 1+r.IntN(300<<10)))
		fill.Read(p)
		s := jobrunner.Stdout
		if r.IntN(5) == 0 {
			s = jobrunner.Stderr
		}
		if err := l.Write(s, p); err != nil {
			t.Fatal(err)
		}
		all.Write(p)
	}
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	lr := &logRunner{log: l}
	ts := startServer(t, func(c *Config) {
		lr.JobRunner = c.Runner
		c.Runner = lr
	})
	return ts, lr, all.Bytes()
}

// TestWatchZeroCopyByteExact: output sent from the follower's retained
// buffers arrives byte for byte, at the right offsets, at a client on
// grpc-go's own proto codec (as grpcurl or a generated stub) and at one on
// watchcodec (the CLI's), from the first byte and resumed mid-stream.
func TestWatchZeroCopyByteExact(t *testing.T) {
	ts, _, all := startLogServer(t, 8<<20)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "emit", Args: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetJob().GetName()
	for _, from := range []int64{0, 1, 65535, int64(len(all)) / 3, int64(len(all)) - 1} {
		// grpc-go's proto codec.
		msgs, err := watchAll(ctx, c, name, from)
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, m := range msgs {
			if m.Offset != from+int64(len(got)) {
				t.Fatalf("from %d: message at %d, want %d", from, m.Offset, from+int64(len(got)))
			}
			if len(m.Data) > maxChunkBytes {
				t.Fatalf("message of %d bytes", len(m.Data))
			}
			got = append(got, m.Data...)
		}
		if !bytes.Equal(got, all[from:]) {
			t.Fatalf("from %d (proto codec): %d bytes that differ from the %d written", from, len(got), len(all[from:]))
		}

		// watchcodec, as the CLI reads.
		stream, err := c.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: name, Offset: from}, grpc.ForceCodecV2(watchcodec.Codec{}))
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		var final *pb.Job
		for {
			var f watchcodec.Frame
			err := stream.RecvMsg(&f)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Job != nil {
				final = f.Job
			} else if f.Offset != from+int64(len(got)) {
				t.Fatalf("from %d: frame at %d, want %d", from, f.Offset, from+int64(len(got)))
			}
			got = append(got, f.Data.Materialize()...)
			f.Release()
		}
		if !bytes.Equal(got, all[from:]) || final.GetStatus().GetOutputBytes() != int64(len(all)) {
			t.Fatalf("from %d (watchcodec): %d bytes that differ from the %d written, final %v", from, len(got), len(all[from:]), final)
		}
	}
}

// TestWatchClientNeverReads attacks the zero-copy path: a client that opens
// a watch of 64 MiB and never reads must not make the server pull the
// output into memory. gRPC's flow control stops the sender once the
// client's window is full and the stream's write quota is spent, and the
// follower waits in Send holding one chunk: what the runner handed out
// stops growing, far below the output, and it does not block a second
// watcher of the same job.
func TestWatchClientNeverReads(t *testing.T) {
	const size = 64 << 20
	ts, lr, all := startLogServer(t, size)
	ctx := testCtx(t)
	c := ts.as(t, "alice", certgen.RoleUser)
	resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "emit", Args: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	name := resp.GetJob().GetName()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := c.WatchJobOutput(sctx, &pb.WatchJobOutputRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	// Wait until the handed-out count stays put for a while.
	var last int64 = -1
	for stable := 0; stable < 5; {
		time.Sleep(100 * time.Millisecond)
		n := lr.handed.Load()
		if n == last {
			stable++
		} else {
			stable, last = 0, n
		}
		if ctx.Err() != nil {
			t.Fatal("the handed-out count never settled")
		}
	}
	// The client's windows plus the stream's write quota and one chunk
	// (256 KiB here): a generous bound, far below the 64 MiB a server
	// without flow control would pull.
	if last > 4<<20 {
		t.Errorf("a client that never reads got the server to hand out %d of %d bytes", last, size)
	}
	// Another watcher of the same job is not held up.
	other := ts.as(t, "bob", certgen.RoleAdmin)
	msgs, err := watchAll(ctx, other, name, size-1000)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, m := range msgs {
		got = append(got, m.Data...)
	}
	if !bytes.Equal(got, all[size-1000:]) {
		t.Errorf("second watcher got %d bytes that differ", len(got))
	}
	t.Logf("handed out %d bytes to a client that never reads", last)
}
