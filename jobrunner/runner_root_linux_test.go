package jobrunner

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drrev/telehandler/sandbox"
)

// Root tests: real jobs in real namespaces and cgroups, under a parent
// cgroup of their own (telehandler-test-<random>) removed at the end. The
// jobs use only commands busybox has (sh, cat, head, sleep), so the static
// test binary also runs them in the cgroup v2 VM.

// rootEnv is a Runner on the host's cgroups under a fresh test parent.
type rootEnv struct {
	r       *Runner
	parent  string   // the test's parent cgroup name
	parents []string // its directories (one per v1 hierarchy, one on v2)
	dir     string   // a scratch directory for the jobs' input files
	logs    *syncBuffer
}

func newRootEnv(t *testing.T, outputCap int64) *rootEnv {
	t.Helper()
	return newRootEnvIn(t, outputCap, filepath.Join(t.TempDir(), "state"))
}

// newRootEnvIn is newRootEnv with its state in stateDir.
func newRootEnvIn(t *testing.T, outputCap int64, stateDir string) *rootEnv {
	t.Helper()
	return newRootEnvPool(t, outputCap, stateDir, 0)
}

// newRootEnvPool is newRootEnvIn with a sandbox keeping pool warm shims
// (sandbox.Config.ShimPool).
func newRootEnvPool(t *testing.T, outputCap int64, stateDir string, pool int) *rootEnv {
	t.Helper()
	requireRoot(t)
	b := make([]byte, 6)
	rand.Read(b)
	parent := "telehandler-test-" + hex.EncodeToString(b)
	cgs, err := sandbox.NewCgroups(sandbox.CgroupConfig{Parent: parent})
	if err != nil {
		t.Fatalf("NewCgroups: %v", err)
	}
	// A probe cgroup tells where the parent's directories are.
	probe, err := cgs.Create("probe", sandbox.Limits{})
	if err != nil {
		t.Fatalf("create probe cgroup: %v", err)
	}
	var parents []string
	for _, p := range probe.Paths() {
		parents = append(parents, filepath.Dir(p))
	}
	if err := probe.Delete(); err != nil {
		t.Fatalf("delete probe cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := cgs.Cleanup(); err != nil {
			t.Errorf("cgroup Cleanup: %v", err)
		}
		for _, dir := range parents {
			if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("remove test parent cgroup: %v", err)
			}
		}
	})

	// The scratch directory is under /tmp, which jobs do not see (theirs
	// is a tmpfs of their own): it is bound in.
	dir := t.TempDir()
	sb, err := sandbox.New(sandbox.Config{Cgroups: cgs, Binds: []sandbox.Bind{{Host: dir, Job: dir, Writable: true}},
		ShimPool: pool, ShimPoolLimits: sandbox.DefaultLimits()})
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	logs := &syncBuffer{}
	r, err := New(Config{StateDir: stateDir, OutputCap: outputCap, Sandbox: sb,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &rootEnv{r: r, parent: parent, parents: parents, dir: dir, logs: logs}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers (a log).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fastLimits are the defaults with a whole CPU, so that output-heavy jobs
// are quick.
func fastLimits() sandbox.Limits {
	l := sandbox.DefaultLimits()
	l.CPUMilli = 1000
	return l
}

// writeFile writes data to name in the env's scratch directory and returns
// its path.
func (e *rootEnv) writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fifo makes a named pipe a job can wait on (`read x < fifo`) and returns
// its path and a function that releases the job.
func (e *rootEnv) fifo(t *testing.T, name string) (string, func()) {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, func() {
		t.Helper()
		// Blocks until the job opened the fifo for reading.
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString("go\n"); err != nil {
			t.Fatal(err)
		}
	}
}

// checkGone asserts that the job's cgroup directories are gone and that no
// process on the host is in the job's cgroup.
func (e *rootEnv) checkGone(t *testing.T, id string) {
	t.Helper()
	for _, p := range e.parents {
		if _, err := os.Stat(filepath.Join(p, id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s still exists (stat: %v)", filepath.Join(p, id), err)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	needle := "/" + e.parent + "/" + id
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the process ended meanwhile
		}
		if bytes.Contains(b, []byte(needle)) {
			t.Errorf("process %s is still in the job's cgroup", filepath.Base(filepath.Dir(p)))
		}
	}
}

func randomData(t *testing.T, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// digest follows a watch without keeping the output: hashes of the whole
// output and of each stream, the byte counts, and the offset of the first
// stderr byte. It checks that offsets are contiguous.
type digest struct {
	next        int64
	all         hash.Hash
	stream      [3]hash.Hash
	n           [3]int64
	firstStderr int64
}

func newDigest() *digest {
	return &digest{all: sha256.New(), stream: [3]hash.Hash{nil, sha256.New(), sha256.New()}, firstStderr: -1}
}

func (d *digest) add(c Chunk) error {
	if c.Offset != d.next {
		return fmt.Errorf("chunk at offset %d, want %d", c.Offset, d.next)
	}
	if c.Stream != Stdout && c.Stream != Stderr {
		return fmt.Errorf("chunk with stream %v", c.Stream)
	}
	if c.Stream == Stderr && d.firstStderr < 0 {
		d.firstStderr = c.Offset
	}
	d.next += int64(len(c.Data))
	d.all.Write(c.Data)
	d.stream[c.Stream].Write(c.Data)
	d.n[c.Stream] += int64(len(c.Data))
	return nil
}

func (d *digest) sum() string { return hex.EncodeToString(d.all.Sum(nil)) }
func (d *digest) streamSum(s Stream) string {
	return hex.EncodeToString(d.stream[s].Sum(nil))
}

func sum(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// watchers runs watches in goroutines and collects their digests.
type watchers struct {
	wg      sync.WaitGroup
	mu      sync.Mutex
	digests []*digest
	errs    []error
	names   []string
}

// start starts a watch from 0 of job id and returns once its goroutine is
// about to call Watch.
func (w *watchers) start(ctx context.Context, r *Runner, id, name string) {
	d := newDigest()
	w.mu.Lock()
	i := len(w.digests)
	w.digests = append(w.digests, d)
	w.errs = append(w.errs, nil)
	w.names = append(w.names, name)
	w.mu.Unlock()
	ready := make(chan struct{})
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		close(ready)
		err := r.watch(ctx, id, 0, d.add)
		w.mu.Lock()
		w.errs[i] = err
		w.mu.Unlock()
	}()
	<-ready
}

// TestRunnerOutputWatchers proves that a job writing 10 MiB of random bytes
// to stdout and some to stderr is read back byte-exact, each stream
// separately and in one combined order, by 20 watchers attaching before the
// first byte, while the job is half-way and after it ended, and by a
// watcher that stops mid-stream and resumes from its offset. The job waits
// on fifos so that "before the first byte" and "half-way" are real: the
// half-way watchers attach once exactly the first half is in the log and
// before the job writes any more.
func TestRunnerOutputWatchers(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	out1 := randomData(t, 5<<20)
	out2 := randomData(t, 5<<20)
	errData := randomData(t, 100<<10+7)
	p1 := e.writeFile(t, "out1", out1)
	p2 := e.writeFile(t, "out2", out2)
	pe := e.writeFile(t, "err", errData)
	gate1, release1 := e.fifo(t, "gate1")
	gate2, release2 := e.fifo(t, "gate2")

	script := fmt.Sprintf("read x < %s; cat %s; read y < %s; cat %s; cat %s >&2", gate1, p1, gate2, p2, pe)
	st, err := e.r.Start(ctx, StartRequest{Owner: "alice", Command: "sh", Args: []string{"-c", script}, Limits: fastLimits()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st.State != StateRunning || st.Owner != "alice" || st.ExitCode != -1 || st.OutputBytes != 0 {
		t.Errorf("status after Start = %+v", st)
	}

	var w watchers
	for i := range 7 {
		w.start(ctx, e.r, st.ID, fmt.Sprintf("before the first byte #%d", i))
	}

	// A watcher that signals once the first half is in the log.
	half := int64(len(out1))
	halfSeen := make(chan struct{})
	halfErr := make(chan error, 1)
	go func() {
		halfErr <- e.r.watch(ctx, st.ID, 0, func(c Chunk) error {
			if c.Offset+int64(len(c.Data)) >= half {
				close(halfSeen)
				return errStop
			}
			return nil
		})
	}()
	release1()
	select {
	case <-halfSeen:
	case <-ctx.Done():
		t.Fatal("timed out waiting for the first half of the output")
	}
	if err := <-halfErr; !errors.Is(err, errStop) {
		t.Fatalf("half-way watcher: %v", err)
	}
	if got := e.r.mustStatus(t, st.ID).OutputBytes; got != half {
		t.Fatalf("OutputBytes at the gate = %d, want %d", got, half)
	}
	for i := range 7 {
		w.start(ctx, e.r, st.ID, fmt.Sprintf("half-way #%d", i))
	}

	release2()

	// The resuming watcher stops at an odd offset in the second half.
	resumeAt := half + 123457
	resumed := newDigest()
	err = e.r.watch(ctx, st.ID, 0, func(c Chunk) error {
		if c.Offset+int64(len(c.Data)) >= resumeAt {
			c.Data = c.Data[:resumeAt-c.Offset]
			if len(c.Data) > 0 {
				resumed.add(c)
			}
			return errStop
		}
		return resumed.add(c)
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("first part of the resumed watch: %v", err)
	}

	final, err := e.r.Wait(ctx, st.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if final.State != StateCompleted || final.ExitCode != 0 || final.Signal != 0 || final.Stopped || final.Ended.IsZero() {
		t.Errorf("terminal status = %+v, want COMPLETED with exit 0", final)
	}
	total := int64(len(out1) + len(out2) + len(errData))
	if final.OutputBytes != total || final.OutputTruncated {
		t.Errorf("OutputBytes, OutputTruncated = %d, %v; want %d, false", final.OutputBytes, final.OutputTruncated, total)
	}
	if err := e.r.watch(ctx, st.ID, resumeAt, resumed.add); err != nil {
		t.Fatalf("resumed watch: %v", err)
	}
	for i := range 6 {
		w.start(ctx, e.r, st.ID, fmt.Sprintf("after the end #%d", i))
	}
	w.wg.Wait()
	e.checkGone(t, st.ID)

	wantOut, wantErr := sum(out1, out2), sum(errData)
	// The combined order: all of out1 first (the gate proves it), then out2
	// and errData as the two pipe readers interleaved them. Every watcher
	// must see that one order.
	var combined string
	check := func(name string, d *digest) {
		t.Helper()
		if d.n[Stdout] != int64(len(out1)+len(out2)) || d.streamSum(Stdout) != wantOut {
			t.Errorf("%s: stdout differs (%d bytes)", name, d.n[Stdout])
		}
		if d.n[Stderr] != int64(len(errData)) || d.streamSum(Stderr) != wantErr {
			t.Errorf("%s: stderr differs (%d bytes)", name, d.n[Stderr])
		}
		if d.firstStderr < int64(len(out1)+len(out2))-(jobPipeSize+drainBufferSize) {
			// When the job starts writing stderr, at most jobPipeSize
			// bytes of stdout are still in the pipe and drainBufferSize
			// in the reader's buffer.
			t.Errorf("%s: first stderr byte at %d, before stdout was (nearly) all written", name, d.firstStderr)
		}
		if combined == "" {
			combined = d.sum()
		} else if d.sum() != combined {
			t.Errorf("%s: combined order differs from the other watchers'", name)
		}
	}
	for i, d := range w.digests {
		if w.errs[i] != nil {
			t.Errorf("%s: %v", w.names[i], w.errs[i])
			continue
		}
		check(w.names[i], d)
	}
	check("resumed", resumed)
	if len(w.digests) != 20 {
		t.Errorf("%d watchers, want 20", len(w.digests))
	}
}

func (r *Runner) mustStatus(t *testing.T, id string) Status {
	t.Helper()
	st, err := r.Status(id)
	if err != nil {
		t.Fatalf("Status(%s): %v", id, err)
	}
	return st
}

// TestRunnerInterleaved proves that a job alternating stdout and stderr
// writes gets each stream back byte-exact and every watcher the same
// combined order, with the stream tags right.
func TestRunnerInterleaved(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	var script strings.Builder
	var outs, errs [][]byte
	for i := range 40 {
		o := randomData(t, 1+i*3001)
		er := randomData(t, 1+i*1009)
		outs, errs = append(outs, o), append(errs, er)
		fmt.Fprintf(&script, "cat %s; cat %s >&2; ", e.writeFile(t, fmt.Sprintf("o%d", i), o), e.writeFile(t, fmt.Sprintf("e%d", i), er))
	}
	st, err := e.r.Start(ctx, StartRequest{Command: "/bin/sh", Args: []string{"-c", script.String()}, Limits: fastLimits()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	var w watchers
	for i := range 5 {
		w.start(ctx, e.r, st.ID, fmt.Sprintf("watcher %d", i))
	}
	if _, err := e.r.Wait(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	w.start(ctx, e.r, st.ID, "after the end")
	w.wg.Wait()
	wantOut, wantErr := sum(outs...), sum(errs...)
	var combined string
	for i, d := range w.digests {
		if w.errs[i] != nil {
			t.Fatalf("%s: %v", w.names[i], w.errs[i])
		}
		if d.streamSum(Stdout) != wantOut || d.streamSum(Stderr) != wantErr {
			t.Errorf("%s: a stream differs (%d stdout, %d stderr bytes)", w.names[i], d.n[Stdout], d.n[Stderr])
		}
		if i == 0 {
			combined = d.sum()
		} else if d.sum() != combined {
			t.Errorf("%s: combined order differs", w.names[i])
		}
	}
	if final := e.r.mustStatus(t, st.ID); final.State != StateCompleted {
		t.Errorf("terminal status %+v", final)
	}
}

// TestRunnerStop proves that Stop ends every process of a job (a shell
// with two background children), returns the terminal FAILED status with
// Stopped and signal 9, leaves no process and no cgroup behind, and that
// stopping it again is ErrNotRunning with the same status. The job holds a
// slot of the running-jobs count while it runs and no longer once Stop
// returned.
func TestRunnerStop(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	st, err := e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", "sleep 1000 & sleep 1000 & wait"}, Limits: sandbox.DefaultLimits()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	running := e.r.mustStatus(t, st.ID)
	if running.State != StateRunning || running.ExitCode != -1 || !running.Ended.IsZero() || running.Stopped {
		t.Errorf("status of the running job = %+v", running)
	}
	if running.Stats == (sandbox.Stats{}) {
		t.Error("a running job's stats are all zero: not read live from its cgroup")
	}
	if n := e.r.slots(); n != 1 {
		t.Errorf("%d slots held with one job running, want 1", n)
	}
	final, err := e.r.Stop(ctx, st.ID, 0)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if n := e.r.slots(); n != 0 {
		t.Errorf("%d slots held after Stop, want 0", n)
	}
	if final.State != StateFailed || !final.Stopped || final.Signal != 9 || final.ExitCode != -1 || final.Ended.IsZero() {
		t.Errorf("status after Stop = %+v, want FAILED, stopped, signal 9", final)
	}
	e.checkGone(t, st.ID)

	again, err := e.r.Stop(ctx, st.ID, 0)
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("second Stop = %v, want ErrNotRunning", err)
	}
	if again.ID != st.ID || again.State != StateFailed {
		t.Errorf("second Stop status = %+v", again)
	}
	if _, err := e.r.Stop(ctx, "nosuchjob", 0); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Stop of an unknown job = %v, want ErrJobNotFound", err)
	}
	if _, err := e.r.Status("nosuchjob"); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Status of an unknown job = %v, want ErrJobNotFound", err)
	}
	if err := e.r.watch(ctx, "nosuchjob", 0, func(Chunk) error { return nil }); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Watch of an unknown job = %v, want ErrJobNotFound", err)
	}
	if _, err := e.r.Wait(ctx, "nosuchjob"); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Wait of an unknown job = %v, want ErrJobNotFound", err)
	}
}

// TestRunnerStopGrace proves that Stop with a grace period sends SIGTERM
// first: a job that traps TERM exits by itself, well within the grace.
func TestRunnerStopGrace(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	script := `trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done`
	st, err := e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", script}, Limits: sandbox.DefaultLimits()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	// Only once the trap is set does TERM mean anything to PID 1.
	err = e.r.watch(ctx, st.ID, 0, func(c Chunk) error {
		if bytes.Contains(c.Data, []byte("ready")) {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("waiting for the trap: %v", err)
	}
	const grace = 60 * time.Second
	begin := time.Now()
	final, err := e.r.Stop(ctx, st.ID, grace)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(begin); took >= grace/2 {
		t.Errorf("Stop took %v: the job did not end on SIGTERM", took)
	}
	if final.ExitCode != 0 || final.Signal != 0 || !final.Stopped || final.State != StateFailed {
		t.Errorf("status = %+v, want exit 0 by itself, stopped (so FAILED)", final)
	}
	e.checkGone(t, st.ID)
}

// TestRunnerExecError proves that a missing binary is an error from Start
// wrapping sandbox.ErrExec, and leaves no job, no log and no cgroup.
func TestRunnerExecError(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	_, err := e.r.Start(ctx, StartRequest{Command: "/nonexistent/binary", Limits: sandbox.DefaultLimits()})
	if !errors.Is(err, sandbox.ErrExec) {
		t.Fatalf("Start of a missing binary = %v, want sandbox.ErrExec", err)
	}
	_, err = e.r.Start(ctx, StartRequest{Command: "no-such-command-anywhere"})
	if !errors.Is(err, sandbox.ErrExec) {
		t.Fatalf("Start of a command not in PATH = %v, want sandbox.ErrExec", err)
	}
	if l := e.r.List(); len(l) != 0 {
		t.Errorf("List = %+v, want no job", l)
	}
	// The spares (files made ahead for the next jobs) go: what is left
	// is what the failed starts left.
	e.r.stopSpares()
	if logs, _ := filepath.Glob(filepath.Join(e.r.stateDir, "*")); len(logs) != 0 {
		t.Errorf("state dir holds %v, want nothing", logs)
	}
	e.checkNoCgroups(t)
	if _, err := e.r.Start(ctx, StartRequest{Command: "sh", Env: []string{"NOEQUALS"}}); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("Start with a bad env = %v, want ErrInvalidRequest", err)
	}
}

// checkNoCgroups asserts that no job cgroup is left under the test parent.
func (e *rootEnv) checkNoCgroups(t *testing.T) {
	t.Helper()
	for _, p := range e.parents {
		entries, err := os.ReadDir(p)
		if err != nil {
			t.Errorf("read test parent cgroup: %v", err)
		}
		for _, ent := range entries {
			if ent.IsDir() {
				t.Errorf("cgroup %s left behind", filepath.Join(p, ent.Name()))
			}
		}
	}
}

// TestRunnerOutputCap proves that a job writing past the output cap is not
// blocked: it completes, exactly cap bytes (the first ones) are kept, and
// the status says the output was truncated.
func TestRunnerOutputCap(t *testing.T) {
	const outputCap = 1 << 20
	e := newRootEnv(t, outputCap)
	ctx := testContext(t)
	data := randomData(t, 5<<20)
	p := e.writeFile(t, "data", data)
	st, err := e.r.Start(ctx, StartRequest{Command: "cat", Args: []string{p}, Limits: fastLimits()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	final, err := e.r.Wait(ctx, st.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if final.State != StateCompleted || final.OutputBytes != outputCap || !final.OutputTruncated {
		t.Errorf("status = %+v, want COMPLETED, %d bytes, truncated", final, outputCap)
	}
	d := newDigest()
	if err := e.r.watch(ctx, st.ID, 0, d.add); err != nil {
		t.Fatal(err)
	}
	if d.sum() != sum(data[:outputCap]) {
		t.Errorf("watch got %d bytes that are not the first %d written", d.next, outputCap)
	}
	if err := e.r.watch(ctx, st.ID, outputCap+1, d.add); !errors.Is(err, ErrInvalidOffset) {
		t.Errorf("Watch past the end = %v, want ErrInvalidOffset", err)
	}
}

// TestRunnerShutdown proves that Shutdown stops every running job (their
// status says stopped), leaves no cgroup and no process, keeps ended jobs
// visible, and that Start afterwards fails with ErrShuttingDown.
func TestRunnerShutdown(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	var ids []string
	for range 3 {
		st, err := e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", "sleep 1000 & sleep 1000"}, Limits: sandbox.DefaultLimits()})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		ids = append(ids, st.ID)
	}
	done, err := e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", "exit 0"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := e.r.Wait(ctx, done.ID); err != nil {
		t.Fatal(err)
	}
	list := e.r.List()
	if len(list) != 4 {
		t.Fatalf("List has %d jobs, want 4", len(list))
	}
	for i := 1; i < len(list); i++ {
		if list[i].Started.Before(list[i-1].Started) {
			t.Errorf("List is not sorted by start time")
		}
	}

	if err := e.r.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, id := range ids {
		st := e.r.mustStatus(t, id)
		if st.State != StateFailed || !st.Stopped || st.Reason != ReasonServerShutdown || st.Signal != 9 {
			t.Errorf("job after Shutdown: %+v, want FAILED, stopped by shutdown, signal 9", st)
		}
		e.checkGone(t, id)
		if n := strings.Count(e.logs.String(), "msg=\"job stopped by server shutdown\" job_id="+id); n != 1 {
			t.Errorf("the log has %d lines for the shutdown of %s, want 1:\n%s", n, id, e.logs)
		}
	}
	if st := e.r.mustStatus(t, done.ID); st.State != StateCompleted || st.Stopped {
		t.Errorf("ended job after Shutdown: %+v", st)
	}
	if _, err := e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", "exit 0"}}); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("Start after Shutdown = %v, want ErrShuttingDown", err)
	}
	// A clean shutdown leaves not even the (empty) parent cgroups.
	for _, p := range e.parents {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("parent cgroup %s after Shutdown: %v, want it removed", p, err)
		}
	}
}

// TestRunnerExitStatus proves that a non-zero exit is FAILED with its exit
// code, not stopped, and that the request's environment and working
// directory reach the command.
func TestRunnerExitStatus(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	st, err := e.r.Start(ctx, StartRequest{
		Command: "sh",
		Args:    []string{"-c", `echo "$FOO"; pwd; exit 3`},
		Env:     []string{"FOO=bar baz", "PATH=/usr/bin:/bin"},
		Dir:     e.dir,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	final, err := e.r.Wait(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != StateFailed || final.ExitCode != 3 || final.Signal != 0 || final.Stopped || final.OOMKilled {
		t.Errorf("status = %+v, want FAILED with exit code 3", final)
	}
	var out bytes.Buffer
	if err := e.r.watch(ctx, st.ID, 0, func(c Chunk) error { out.Write(c.Data); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := "bar baz\n" + e.dir + "\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if _, err := e.r.Stop(ctx, st.ID, time.Second); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Stop of an ended job = %v, want ErrNotRunning", err)
	}
	if st := e.r.mustStatus(t, st.ID); st.Stopped {
		t.Error("Stop of an ended job marked it stopped")
	}
}

// TestRunnerQuota attacks the running-jobs cap with real jobs: alice at her
// own bound is refused with a QuotaError naming it while bob and a caller
// with a larger total (the server gives admins one) still start; a start
// that fails to exec gives its slot back; and twenty concurrent starts
// against a total of three start exactly as many as there is room for.
func TestRunnerQuota(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	user := Quota{Total: 3, PerOwner: 2}
	sleep := func(owner string, q Quota) (Status, error) {
		return e.r.Start(ctx, StartRequest{Owner: owner, Command: "sleep", Args: []string{"1000"}, Limits: sandbox.DefaultLimits(), Quota: q})
	}
	var alice []string
	for range 2 {
		st, err := sleep("alice", user)
		if err != nil {
			t.Fatalf("alice: %v", err)
		}
		alice = append(alice, st.ID)
	}
	_, err := sleep("alice", user)
	var qe *QuotaError
	if !errors.As(err, &qe) || !qe.PerOwner || qe.Limit != 2 || qe.Owned != 2 {
		t.Fatalf("alice's third job: %v, want her own limit of 2", err)
	}
	if _, err := e.r.Start(ctx, StartRequest{Owner: "bob", Command: "/no/such/binary", Quota: user}); !errors.Is(err, sandbox.ErrExec) {
		t.Fatalf("bob's missing binary: %v", err)
	}
	if _, err := sleep("bob", user); err != nil {
		t.Fatalf("bob while alice is at her limit (his failed start must not hold a slot): %v", err)
	}
	if _, err := sleep("bob", user); !errors.As(err, &qe) || qe.PerOwner || qe.Limit != 3 {
		t.Fatalf("bob past the total: %v", err)
	}
	if _, err := sleep("admin", Quota{Total: 4}); err != nil {
		t.Fatalf("admin with a larger total: %v", err)
	}
	if _, err := e.r.Stop(ctx, alice[0], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := sleep("alice", Quota{Total: 4, PerOwner: 2}); err != nil {
		t.Fatalf("alice after one of her jobs stopped: %v", err)
	}
	if n := e.r.slots(); n != 4 {
		t.Errorf("%d slots held, want 4", n)
	}
	if err := e.r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRunnerQuotaRace starts twenty jobs at once against a total of three:
// exactly three start, the others are refused with ErrTooManyJobs.
func TestRunnerQuotaRace(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	const tries, total = 20, 3
	errs := make(chan error, tries)
	var wg sync.WaitGroup
	for i := range tries {
		wg.Go(func() {
			_, err := e.r.Start(ctx, StartRequest{Owner: fmt.Sprint("u", i%4), Command: "sleep", Args: []string{"1000"},
				Limits: sandbox.DefaultLimits(), Quota: Quota{Total: total}})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	started := 0
	for err := range errs {
		switch {
		case err == nil:
			started++
		case !errors.Is(err, ErrTooManyJobs):
			t.Errorf("Start: %v", err)
		}
	}
	if started != total {
		t.Errorf("%d of %d concurrent starts ran with a total of %d", started, tries, total)
	}
	if err := e.r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRunnerMergeOutput proves that with MergeOutput the job's stderr is
// its stdout pipe (2>&1): the output keeps the exact order the job wrote,
// all of it as Stdout, and the job's fd 1 and 2 are one pipe.
func TestRunnerMergeOutput(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	st, err := e.r.Start(ctx, StartRequest{
		Command:     "sh",
		Args:        []string{"-c", `for i in $(seq 1000); do echo o$i; echo e$i >&2; done`},
		Limits:      fastLimits(),
		MergeOutput: true,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := e.r.Wait(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&want, "o%d\ne%d\n", i, i)
	}
	var got strings.Builder
	err = e.r.watch(ctx, st.ID, 0, func(c Chunk) error {
		if c.Stream != Stdout {
			return fmt.Errorf("chunk of stream %v in a merged job", c.Stream)
		}
		got.Write(c.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Errorf("merged output is not in the order written: %d bytes, want %d\n%.200q", got.Len(), want.Len(), got.String())
	}

	// fd 1 and fd 2 of the command are the same pipe.
	st, err = e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", `readlink /proc/$$/fd/1; readlink /proc/$$/fd/2`}, MergeOutput: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Wait(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	got.Reset()
	e.r.watch(ctx, st.ID, 0, func(c Chunk) error { got.Write(c.Data); return nil })
	if l := strings.Fields(got.String()); len(l) != 2 || l[0] != l[1] || !strings.HasPrefix(l[0], "pipe:") {
		t.Errorf("fd 1 and 2 of a merged job: %q, want the same pipe", got.String())
	}
}

// TestRunnerFullStateDir runs jobs on a state directory that fills up (a
// 1 MiB tmpfs with 64 inodes): a job writing 4 MiB completes, what did not
// fit is dropped and counted, its status says a write error (not the cap)
// with the cause, and the runner logs it once; a job started on the full
// disk runs, its output dropped; once no log file can be created, Start
// fails with ErrStateDirFull, and nothing else.
func TestRunnerFullStateDir(t *testing.T) {
	requireRoot(t)
	disk := t.TempDir()
	if err := syscall.Mount("tmpfs", disk, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=1m,nr_inodes=64,mode=0700"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { // registered first: runs after the runner's Shutdown
		if err := syscall.Unmount(disk, 0); err != nil {
			t.Errorf("unmount the test's tmpfs %s: %v", disk, err)
		}
	})
	e := newRootEnvIn(t, 0, filepath.Join(disk, "state"))
	ctx := testContext(t)
	const total = 4 << 20
	flood, err := e.r.Start(ctx, StartRequest{Command: "head", Args: []string{"-c", fmt.Sprint(total), "/dev/zero"}, Limits: fastLimits()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err := e.r.Wait(ctx, flood.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateCompleted || !st.OutputTruncated || st.OutputTruncation != TruncatedWriteError ||
		st.OutputError != "no space left on device" || st.OutputBytes >= 1<<20 || st.OutputBytes+st.OutputDropped != total {
		t.Errorf("status of the flood: %+v; want COMPLETED, truncated by a write error, %d bytes kept and dropped", st, total)
	}
	var got int64
	e.r.watch(ctx, flood.ID, 0, func(c Chunk) error { got += int64(len(c.Data)); return nil })
	if got != st.OutputBytes {
		t.Errorf("watch of the flood got %d bytes, status says %d", got, st.OutputBytes)
	}

	// The flood's failed writes leave the pages of a write smaller than
	// its own free: fill them, so that a new log finds none.
	filler, err := os.Create(filepath.Join(disk, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for page := make([]byte, 4096); ; {
		if _, err := filler.Write(page); err != nil {
			break
		}
	}
	filler.Close()
	small, err := e.r.Start(ctx, StartRequest{Command: "echo", Args: []string{"hello"}})
	if err != nil {
		t.Fatalf("Start on a full disk (an inode left): %v", err)
	}
	if st, _ := e.r.Wait(ctx, small.ID); st.State != StateCompleted || st.OutputDropped != 6 || st.OutputTruncation != TruncatedWriteError {
		t.Errorf("status of a job started on a full disk: %+v", st)
	}
	// Use up the inodes: now no log file can be created.
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(disk, fmt.Sprint("inode-", i)))
		if err != nil {
			break
		}
		f.Close()
	}
	if _, err := e.r.Start(ctx, StartRequest{Command: "echo", Args: []string{"hello"}}); !errors.Is(err, ErrStateDirFull) || strings.Contains(err.Error(), disk) {
		t.Errorf("Start without an inode = %v, want ErrStateDirFull without the path", err)
	}
	logs := e.logs.String()
	for _, id := range []string{flood.ID, small.ID} {
		if n := strings.Count(logs, "msg=\"job output dropped: its log cannot be written; the job keeps running, and output is kept again once a write succeeds\" job_id="+id); n != 1 {
			t.Errorf("%d log lines for the dropped output of %s, want 1:\n%s", n, id, logs)
		}
	}
}

// TestRunnerWatchOfRemovedJob proves that a watcher of a job removed while
// it watched (rm --force) still gets every byte and the job's status as it
// ended.
func TestRunnerWatchOfRemovedJob(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	st, err := e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", "echo hi; exec sleep 1000"}})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	type result struct {
		st  Status
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		var out strings.Builder
		final, err := e.r.WatchChunks(ctx, st.ID, 0, DefaultMaxChunk, func(c Chunk) error {
			out.Write(c.Data)
			if out.String() == "hi\n" {
				close(got)
			}
			return nil
		})
		done <- result{final, out.String(), err}
	}()
	<-got
	if err := e.r.Remove(ctx, st.ID, true); err != nil {
		t.Fatalf("Remove --force: %v", err)
	}
	res := <-done
	if res.err != nil || res.out != "hi\n" || res.st.ID != st.ID || res.st.Reason != ReasonStopped || res.st.State != StateFailed {
		t.Errorf("watch of a removed job: %q, %+v, %v; want hi, its status stopped", res.out, res.st, res.err)
	}
}
