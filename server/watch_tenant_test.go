package server

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/certgen"
	"github.com/drrev/telehandler/internal/watchcodec"
	"github.com/drrev/telehandler/jobrunner"
)

// tenantOutput is byte k of tenant i's job output in
// TestWatchCancelledStreamsAcrossTenants.
func tenantOutput(i int, k int64) byte { return byte((int64(i)*89 + k*37 + k/241) % 241) }

// startTenantLogServer is startLogServer with tenant i's output (n bytes,
// stdout only): every byte says whose it is.
func startTenantLogServer(t *testing.T, i, n int) *testServer {
	t.Helper()
	l, err := jobrunner.CreateOutputLog(filepath.Join(t.TempDir(), "job.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(i), 5))
	for off := int64(0); off < int64(n); {
		p := make([]byte, min(int64(1+r.IntN(200<<10)), int64(n)-off))
		for j := range p {
			p[j] = tenantOutput(i, off+int64(j))
		}
		if err := l.Write(jobrunner.Stdout, p); err != nil {
			t.Fatal(err)
		}
		off += int64(len(p))
	}
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	lr := &logRunner{log: l}
	return startServer(t, func(c *Config) {
		lr.JobRunner = c.Runner
		c.Runner = lr
	})
}

// TestWatchCancelledStreamsAcrossTenants attacks the zero-copy path's
// buffer lifetimes through gRPC: two servers in one process (so their
// followers share the pooled chunk buffers) serve two tenants' outputs
// while clients of each open watches and cancel them at random points,
// with messages still queued in the server's transport, over and over;
// meanwhile whole watches of each output, on the proto codec and on
// watchcodec, must arrive byte for byte. A chunk buffer freed while the
// transport still held it would put one tenant's bytes into another's
// stream.
func TestWatchCancelledStreamsAcrossTenants(t *testing.T) {
	const size = 4 << 20
	ctx := testCtx(t)
	type tenant struct {
		c    pb.ForemanClient
		name string
	}
	var tenants []tenant
	for i, user := range []string{"alice", "bob"} {
		ts := startTenantLogServer(t, i, size)
		c := ts.as(t, user, certgen.RoleUser)
		resp, err := c.StartJob(ctx, &pb.StartJobRequest{Command: "emit", Args: []string{user}})
		if err != nil {
			t.Fatal(err)
		}
		tenants = append(tenants, tenant{c, resp.GetJob().GetName()})
	}
	checkFrame := func(i int, off int64, data []byte) bool {
		for j, b := range data {
			if want := tenantOutput(i, off+int64(j)); b != want {
				t.Errorf("tenant %d: byte at offset %d is %d, want %d", i, off+int64(j), b, want)
				return false
			}
		}
		return true
	}

	var wg sync.WaitGroup
	for i, tn := range tenants {
		// Cancellers: read a few messages, then cancel with more queued.
		for g := range 3 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(i), uint64(g)))
				for range 25 {
					sctx, cancel := context.WithCancel(ctx)
					stream, err := tn.c.WatchJobOutput(sctx, &pb.WatchJobOutputRequest{Name: tn.name, Offset: r.Int64N(size)},
						grpc.ForceCodecV2(watchcodec.Codec{}))
					if err != nil {
						cancel()
						t.Error(err)
						return
					}
					for range r.IntN(8) {
						var f watchcodec.Frame
						if err := stream.RecvMsg(&f); err != nil {
							break
						}
						checkFrame(i, f.Offset, f.Data.Materialize())
						f.Release()
					}
					cancel()
				}
			})
		}
		// Whole watches, byte for byte, on both codecs.
		wg.Go(func() {
			msgs, err := watchAll(ctx, tn.c, tn.name, 0)
			if err != nil {
				t.Error(err)
				return
			}
			next := int64(0)
			for _, m := range msgs {
				if m.GetJob() != nil {
					continue
				}
				if m.GetOffset() != next || !checkFrame(i, m.GetOffset(), m.GetData()) {
					t.Errorf("tenant %d (proto codec): message at %d, want %d", i, m.GetOffset(), next)
					return
				}
				next += int64(len(m.GetData()))
			}
			if next != size {
				t.Errorf("tenant %d (proto codec): %d bytes, want %d", i, next, size)
			}
		})
		wg.Go(func() {
			stream, err := tn.c.WatchJobOutput(ctx, &pb.WatchJobOutputRequest{Name: tn.name}, grpc.ForceCodecV2(watchcodec.Codec{}))
			if err != nil {
				t.Error(err)
				return
			}
			next := int64(0)
			for {
				var f watchcodec.Frame
				err := stream.RecvMsg(&f)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Error(err)
					return
				}
				if f.Job == nil {
					if f.Offset != next || !checkFrame(i, f.Offset, f.Data.Materialize()) {
						t.Errorf("tenant %d (watchcodec): frame at %d, want %d", i, f.Offset, next)
						f.Release()
						return
					}
					next += int64(f.Data.Len())
				}
				f.Release()
			}
			if next != size {
				t.Errorf("tenant %d (watchcodec): %d bytes, want %d", i, next, size)
			}
		})
	}
	wg.Wait()
}
