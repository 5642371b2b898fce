package main

// Benchmarks of the layers under the server, to tell where the time of a
// StartJob or a watched byte goes without gRPC and TLS in the way:
//
//	go test -run XXX -bench . -benchtime 200x -cpuprofile cpu.out ./bench
//
// The root ones create cgroups under a parent of their own
// (telehandler-bench-test-PID) and remove it at the end.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drrev/telehandler/jobrunner"
	"github.com/drrev/telehandler/sandbox"
)

// TestMain makes the test binary its own shim.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__child" {
		sandbox.RunChild()
	}
	os.Exit(m.Run())
}

// requireRoot skips a benchmark that needs root (namespaces, cgroups).
func requireRoot(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates namespaces and cgroups")
	}
}

// testSandbox returns a sandbox whose cgroups live under a parent of this
// benchmark's own, removed at the end.
func testSandbox(b *testing.B) *sandbox.Sandbox {
	return testSandboxPool(b, 0)
}

// testSandboxPool is testSandbox with pool warm shims (sandbox.Config.ShimPool).
func testSandboxPool(b *testing.B, pool int) *sandbox.Sandbox {
	b.Helper()
	requireRoot(b)
	parent := fmt.Sprintf("telehandler-bench-test-%d", os.Getpid())
	cg, err := sandbox.NewCgroups(sandbox.CgroupConfig{Parent: parent})
	if err != nil {
		b.Fatal(err)
	}
	var sb *sandbox.Sandbox
	b.Cleanup(func() {
		if err := sb.Close(); err != nil {
			b.Error(err)
		}
		if err := cg.Cleanup(); err != nil {
			b.Error(err)
		}
		if n, pids, err := removeCgroupTree(parent); n > 0 || pids > 0 || err != nil {
			b.Errorf("left %d cgroups and %d processes (%v)", n, pids, err)
		}
	})
	sb, err = sandbox.New(sandbox.Config{Cgroups: cg, ShimPool: pool, ShimPoolLimits: sandbox.DefaultLimits()})
	if err != nil {
		b.Fatal(err)
	}
	sb.StartPool()
	return sb
}

// BenchmarkSandboxStart is the sandbox alone: cgroup with the default
// limits, namespaces, shim, exec of /bin/true (the time until Start
// returns), then waiting for the exit and the cgroup's removal (untimed).
// "idle" waits 50 ms before each start, as between two users' calls.
// "pool-idle" starts a dynamic user's job with the default pool of warm
// shims, 50 ms apart as "idle" (untimed): time for the refill, as between
// the StartJob calls of the bench's start step. Back to back, the pool
// would empty and most starts would be cold.
func BenchmarkSandboxStart(b *testing.B) {
	for _, mode := range []struct {
		name string
		gap  time.Duration
		pool int
	}{{gapName(0), 0, 0}, {gapName(50 * time.Millisecond), 50 * time.Millisecond, 0}, {"pool-idle", 50 * time.Millisecond, sandbox.DefaultShimPool}} {
		gap := mode.gap
		b.Run(mode.name, func(b *testing.B) {
			sb := testSandboxPool(b, mode.pool)
			devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer devNull.Close()
			i := 0
			for b.Loop() {
				i++
				b.StopTimer()
				time.Sleep(gap)
				b.StartTimer()
				p, err := sb.Start(sandbox.Spec{Path: "/bin/true", DynamicUser: mode.pool > 0}, sandbox.StartConfig{
					Name: fmt.Sprintf("start-%d", i), Limits: sandbox.DefaultLimits(), Stdout: devNull, Stderr: devNull,
				})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if st := p.Wait(); st.ExitCode != 0 {
					b.Fatalf("exit %+v", st)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkRunnerStart adds the job runner: output log, pipes, goroutines.
// "pool" runs a dynamic user's job with the default warm shim pool.
func BenchmarkRunnerStart(b *testing.B) {
	for _, pool := range []int{0, sandbox.DefaultShimPool} {
		name := "cold"
		if pool > 0 {
			name = "pool"
		}
		b.Run(name, func(b *testing.B) { benchmarkRunnerStart(b, pool) })
	}
}

func benchmarkRunnerStart(b *testing.B, pool int) {
	sb := testSandboxPool(b, pool)
	r, err := jobrunner.New(jobrunner.Config{StateDir: b.TempDir(), Sandbox: sb})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	ctx := context.Background()
	for b.Loop() {
		st, err := r.Start(ctx, jobrunner.StartRequest{Command: "/bin/true", Limits: sandbox.DefaultLimits(), DynamicUser: pool > 0})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := r.Wait(ctx, st.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkRunnerStartParallel is the scale step under the server: 8
// callers start `sleep` jobs at once (dynamic uids, as `serve` runs them),
// none ending while the benchmark runs. It reports the start rate and the
// CPU the benchmark's process spent per start (utime+stime of this process:
// the runner and the sandbox's parent half, not the shims).
func BenchmarkRunnerStartParallel(b *testing.B) {
	sb := testSandbox(b)
	r, err := jobrunner.New(jobrunner.Config{StateDir: b.TempDir(), Sandbox: sb})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Shutdown(context.Background())
	ctx := context.Background()
	const callers = 8
	var rusage0, rusage1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &rusage0)
	start := time.Now()
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				_, err := r.Start(ctx, jobrunner.StartRequest{Command: "sleep", Args: []string{"3600"},
					Limits: sandbox.DefaultLimits(), DynamicUser: true})
				if err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	took := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &rusage1)
	b.StopTimer()
	cpu := time.Duration(rusage1.Utime.Nano() + rusage1.Stime.Nano() - rusage0.Utime.Nano() - rusage0.Stime.Nano())
	b.ReportMetric(float64(b.N)/took.Seconds(), "jobs/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkOutputLog writes 64 MiB into a log in 32 KiB pieces (what a
// job's pipe reader does) while 1 or 100 watchers follow it; bytes/s is per
// watcher (the aggregate is that times the watchers).
func BenchmarkOutputLog(b *testing.B) {
	const total = 64 << 20
	piece := make([]byte, 32<<10)
	for _, watchers := range []int{1, 100} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) {
			b.SetBytes(total)
			dir := b.TempDir()
			i := 0
			for b.Loop() {
				i++
				l, err := jobrunner.CreateOutputLog(fmt.Sprintf("%s/%d.log", dir, i), 0)
				if err != nil {
					b.Fatal(err)
				}
				var wg sync.WaitGroup
				for range watchers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var n int64
						err := l.WatchChunks(context.Background(), 0, 0, func(c jobrunner.Chunk) error {
							n += int64(len(c.Data))
							return nil
						})
						if err != nil || n != total {
							b.Errorf("watch: %d bytes, %v", n, err)
						}
					}()
				}
				for w := 0; w < total; w += len(piece) {
					if err := l.Write(jobrunner.Stdout, piece); err != nil {
						b.Fatal(err)
					}
				}
				if err := l.Finish(); err != nil {
					b.Fatal(err)
				}
				wg.Wait()
				os.Remove(l.Path())
			}
		})
	}
}

// BenchmarkCgroupCreate is the cgroup part of a start: create the job's
// cgroup with the default limits (every v1 hierarchy) and remove it;
// "idle" waits 50 ms before each, as between two users' StartJob calls.
func BenchmarkCgroupCreate(b *testing.B) {
	for _, gap := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run(gapName(gap), func(b *testing.B) {
			sb := testSandbox(b)
			i := 0
			for b.Loop() {
				i++
				b.StopTimer()
				time.Sleep(gap)
				b.StartTimer()
				cg, err := sb.Cgroups().Create(fmt.Sprintf("create-%d", i), sandbox.DefaultLimits())
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := cg.Delete(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

func gapName(gap time.Duration) string {
	if gap > 0 {
		return "idle"
	}
	return "back-to-back"
}

// BenchmarkCgroupAdd is the v1 join: moving one process (a single-threaded
// `sleep`) into the job's cgroup in every hierarchy, what the parent does
// before the shim may go on (on v2 the shim is cloned into the cgroup
// instead). "idle" waits 50 ms before each move, as between two StartJob
// calls of a user: a cgroup v1 migration takes cgroup_threadgroup_rwsem for
// writing, which costs an RCU grace period unless another migration just
// happened ("back-to-back").
func BenchmarkCgroupAdd(b *testing.B) {
	for _, gap := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run(gapName(gap), func(b *testing.B) {
			sb := testSandbox(b)
			i := 0
			for b.Loop() {
				i++
				b.StopTimer()
				cg, err := sb.Cgroups().Create(fmt.Sprintf("add-%d", i), sandbox.DefaultLimits())
				if err != nil {
					b.Fatal(err)
				}
				cmd := exec.Command("sleep", "10")
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				time.Sleep(gap)
				b.StartTimer()
				err = cg.Add(cmd.Process.Pid)
				b.StopTimer()
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if err != nil {
					b.Fatal(err)
				}
				if err := cg.Delete(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
