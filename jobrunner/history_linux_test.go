package jobrunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drrev/telehandler/sandbox"
)

// History tests without root: a Runner on a fake cgroup v2 tree (it starts
// no job), fed with the records and logs an earlier run would have left.

// fakeSandbox is a sandbox on a fake cgroup v2 root: enough for New (its
// cleanup finds no cgroup), never for Start.
func fakeSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cgs, err := sandbox.NewCgroups(sandbox.CgroupConfig{Root: root, Version: 2, Parent: "telehandler-test"})
	if err != nil {
		t.Fatalf("fake cgroups: %v", err)
	}
	sb, err := sandbox.New(sandbox.Config{Cgroups: cgs})
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// logBuffer collects a Runner's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// openRunner is New on dir with a fake sandbox; the Runner is shut down
// when the test ends.
func openRunner(t *testing.T, cfg Config) (*Runner, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Sandbox = fakeSandbox(t)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return r, logs
}

// closeRunner shuts r down so that another Runner may take the directory.
func closeRunner(t *testing.T, r *Runner) {
	t.Helper()
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// fakeID makes a valid job id from n.
func fakeID(n int) string {
	const digits = "abcdefghijklmnopqrstuvwxyz234567"
	id := []byte(strings.Repeat("a", 26))
	for i := 25; n > 0; i-- {
		id[i] = digits[n%32]
		n /= 32
	}
	return string(id)
}

// leaveJob writes the record and log of job n as an earlier run would
// have: ended ("COMPLETED"/"FAILED") at ended, or "RUNNING". out is its
// output, alternating stdout and stderr.
func leaveJob(t *testing.T, dir string, n int, state string, ended time.Time, out ...string) record {
	t.Helper()
	id := fakeID(n)
	log, err := CreateOutputLog(filepath.Join(dir, id+logSuffix), 0)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for i, o := range out {
		s := Stdout
		if i%2 == 1 {
			s = Stderr
		}
		if err := log.Write(s, []byte(o)); err != nil {
			t.Fatal(err)
		}
		size += int64(len(o))
	}
	log.Finish()
	rec := record{
		Version: recordVersion, ID: id, Owner: "alice", Command: "sh", Args: []string{"-c", fmt.Sprint("job ", n)},
		Dir: "/tmp", Limits: sandbox.DefaultLimits(), State: state, Started: t0.Add(time.Duration(n) * time.Second),
		ExitCode: -1, OutputBytes: size, Stats: sandbox.Stats{CPUUsage: time.Second, MemoryPeak: 1 << 20},
	}
	if state != "RUNNING" {
		rec.Ended = ended
		rec.ExitCode = 0
		if state == "FAILED" {
			rec.ExitCode = 3
		}
	}
	writeRecordFile(t, dir, rec)
	return rec
}

func writeRecordFile(t *testing.T, dir string, rec record) {
	t.Helper()
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rec.ID+recordSuffix), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// output reads a job's whole output as "stdout|stderr".
func output(t *testing.T, r *Runner, id string) string {
	t.Helper()
	var out, errOut strings.Builder
	err := r.watch(testContext(t), id, 0, func(c Chunk) error {
		if c.Stream == Stdout {
			out.Write(c.Data)
		} else {
			errOut.Write(c.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Watch %s: %v", id, err)
	}
	return out.String() + "|" + errOut.String()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestLoadRecords proves a restarted Runner brings back the jobs of the
// earlier run: ended jobs as they ended with their output, a job that was
// running as FAILED (the server stopped while it ran) with the output it
// wrote, its record rewritten; and that it skips what it cannot read and
// removes the files of ours that belong to no job, and only those.
func TestLoadRecords(t *testing.T) {
	dir := t.TempDir()
	done := leaveJob(t, dir, 1, "COMPLETED", t0.Add(time.Hour), "out\n", "err\n")
	failed := leaveJob(t, dir, 2, "FAILED", t0.Add(time.Hour))
	running := leaveJob(t, dir, 3, "RUNNING", time.Time{}, "partial ", "output\n", "more")
	// The server died in the middle of writing a record of the running
	// job's output: 3 bytes of a header. That is not output.
	f, err := os.OpenFile(filepath.Join(dir, running.ID+logSuffix), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{1, 0, 0})
	f.Close()
	lastWrite := t0.Add(10 * time.Minute)
	os.Chtimes(filepath.Join(dir, running.ID+logSuffix), lastWrite, lastWrite)

	// A corrupt record, a half-written one (cut in the middle), one of
	// another job, and a record whose log is gone: skipped, files removed.
	corrupt := leaveJob(t, dir, 4, "COMPLETED", t0.Add(time.Hour), "x")
	os.WriteFile(filepath.Join(dir, corrupt.ID+recordSuffix), []byte("\x00\x01garbage"), 0o600)
	half := leaveJob(t, dir, 5, "COMPLETED", t0.Add(time.Hour), "y")
	data, _ := os.ReadFile(filepath.Join(dir, half.ID+recordSuffix))
	os.WriteFile(filepath.Join(dir, half.ID+recordSuffix), data[:len(data)/2], 0o600)
	wrongID := leaveJob(t, dir, 6, "COMPLETED", t0.Add(time.Hour))
	wrongID.ID = fakeID(99)
	data, _ = json.Marshal(wrongID)
	os.WriteFile(filepath.Join(dir, fakeID(6)+recordSuffix), data, 0o600)
	noLog := leaveJob(t, dir, 7, "COMPLETED", t0.Add(time.Hour))
	os.Remove(filepath.Join(dir, noLog.ID+logSuffix))
	// A record of a later version: neither loaded nor removed.
	newer := leaveJob(t, dir, 8, "COMPLETED", t0.Add(time.Hour))
	newer.Version = recordVersion + 1
	writeRecordFile(t, dir, newer)
	// Orphans of ours: a log without a record, a temporary record.
	os.WriteFile(filepath.Join(dir, fakeID(9)+logSuffix), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, fakeID(10)+recordSuffix+tmpSuffix), []byte("{"), 0o600)
	// Not ours: left alone.
	foreign := []string{"README", fakeID(11) + ".txt", "ABCDEFGHIJKLMNOPQRSTUVWXYZ.log", "x.json"}
	for _, name := range foreign {
		os.WriteFile(filepath.Join(dir, name), []byte("keep"), 0o600)
	}
	os.Mkdir(filepath.Join(dir, fakeID(12)+logSuffix), 0o700) // a directory named like a log

	now := t0.Add(2 * time.Hour)
	r, logs := openRunner(t, Config{StateDir: dir, Now: func() time.Time { return now }})

	st, err := r.Status(done.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateCompleted || st.ExitCode != 0 || st.Owner != "alice" || st.Command != "sh" ||
		!slices.Equal(st.Args, done.Args) || st.Dir != "/tmp" || st.Limits != sandbox.DefaultLimits() ||
		!st.Started.Equal(done.Started) || !st.Ended.Equal(done.Ended) || st.OutputBytes != 8 ||
		st.OutputTruncated || st.Reason != ReasonNone || st.Stats.CPUUsage != time.Second {
		t.Errorf("completed job after restart: %+v", st)
	}
	if got := output(t, r, done.ID); got != "out\n|err\n" {
		t.Errorf("output of the completed job: %q", got)
	}
	if st, _ := r.Status(failed.ID); st.State != StateFailed || st.ExitCode != 3 {
		t.Errorf("failed job after restart: %+v", st)
	}

	st, err = r.Status(running.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != StateFailed || st.Reason != ReasonServerLost || st.ExitCode != -1 || st.Signal != 0 ||
		!st.Ended.Equal(lastWrite) || st.OutputBytes != int64(len("partial output\nmore")) || !st.OutputTruncated {
		t.Errorf("job that was running: %+v", st)
	}
	if got := output(t, r, running.ID); got != "partial more|output\n" {
		t.Errorf("output of the job that was running: %q", got)
	}
	var rewritten record
	data, _ = os.ReadFile(filepath.Join(dir, running.ID+recordSuffix))
	if err := json.Unmarshal(data, &rewritten); err != nil || rewritten.State != "FAILED" || rewritten.Reason != "server_lost" {
		t.Errorf("record of the lost job not rewritten: %s (%v)", data, err)
	}

	for _, n := range []int{4, 5, 6, 7, 8, 9, 10} {
		if _, err := r.Status(fakeID(n)); !errors.Is(err, ErrJobNotFound) {
			t.Errorf("job %d loaded: %v", n, err)
		}
	}
	for _, n := range []int{4, 5, 6, 7, 9} {
		for _, suffix := range []string{logSuffix, recordSuffix} {
			if p := filepath.Join(dir, fakeID(n)+suffix); exists(p) {
				t.Errorf("%s left", filepath.Base(p))
			}
		}
	}
	if exists(filepath.Join(dir, fakeID(10)+recordSuffix+tmpSuffix)) {
		t.Error("temporary record left")
	}
	if !exists(filepath.Join(dir, newer.ID+recordSuffix)) || !exists(filepath.Join(dir, newer.ID+logSuffix)) {
		t.Error("files of a newer record removed")
	}
	for _, name := range append(foreign, fakeID(12)+logSuffix) {
		if !exists(filepath.Join(dir, name)) {
			t.Errorf("%s, not ours, removed", name)
		}
	}
	for _, want := range []string{"skipping unreadable job record", "newer telehandler", "was running when the server stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if n := len(r.List()); n != 3 {
		t.Errorf("List has %d jobs, want 3", n)
	}

	// Another Runner on the same directory is refused while this one runs.
	if _, err := New(Config{StateDir: dir, Sandbox: fakeSandbox(t)}); !errors.Is(err, ErrStateDirInUse) {
		t.Errorf("second Runner on the directory: %v, want ErrStateDirInUse", err)
	}

	// And a restart of the restart loads the same, the lost job now as a
	// plain FAILED record.
	closeRunner(t, r)
	r2, _ := openRunner(t, Config{StateDir: dir, Now: func() time.Time { return now }})
	if st2, err := r2.Status(running.ID); err != nil || st2.Reason != ReasonServerLost || !st2.Ended.Equal(lastWrite) {
		t.Errorf("lost job after a second restart: %+v, %v", st2, err)
	}
	if n := len(r2.List()); n != 3 {
		t.Errorf("List after a second restart has %d jobs, want 3", n)
	}
}

// TestRetention proves ended jobs go once older than Retain, and oldest
// first while the logs take more than RetainBytes, with the clock under
// the test's control; running jobs are never removed.
func TestRetention(t *testing.T) {
	dir := t.TempDir()
	kib := strings.Repeat("x", 1024)
	// Ended 8 days, 3 days, 2 days and 1 hour before now; 1 KiB each.
	now := t0.Add(30 * 24 * time.Hour)
	old := leaveJob(t, dir, 1, "COMPLETED", now.Add(-8*24*time.Hour), kib)
	d3 := leaveJob(t, dir, 2, "FAILED", now.Add(-3*24*time.Hour), kib)
	d2 := leaveJob(t, dir, 3, "COMPLETED", now.Add(-2*24*time.Hour), kib)
	h1 := leaveJob(t, dir, 4, "COMPLETED", now.Add(-time.Hour), kib)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	// Room for three logs (each 1 KiB and one record header).
	r, logs := openRunner(t, Config{StateDir: dir, Now: clock, RetainBytes: 3 * (1024 + recordHeaderSize)})
	gone := func(recs ...record) {
		t.Helper()
		for _, rec := range recs {
			if _, err := r.Status(rec.ID); !errors.Is(err, ErrJobNotFound) {
				t.Errorf("job %s kept: %v", rec.ID, err)
			}
			if exists(filepath.Join(dir, rec.ID+logSuffix)) || exists(filepath.Join(dir, rec.ID+recordSuffix)) {
				t.Errorf("files of job %s kept", rec.ID)
			}
		}
	}
	kept := func(recs ...record) {
		t.Helper()
		for _, rec := range recs {
			if _, err := r.Status(rec.ID); err != nil {
				t.Errorf("job %s removed: %v", rec.ID, err)
			}
		}
	}
	// At start: the 8-day-old job is past the default 7 days.
	gone(old)
	kept(d3, d2, h1)
	if !strings.Contains(logs.String(), "retention removed ended jobs") {
		t.Errorf("retention not logged:\n%s", logs)
	}

	advance(4*24*time.Hour + time.Minute) // d3 is 7 days old now
	r.sweep()
	gone(d3)
	kept(d2, h1)

	// Bytes: a new job's log passes the budget; the oldest ended goes.
	big := leaveJob(t, dir, 5, "COMPLETED", clock(), kib, kib)
	j, err := r.loadJob(big.ID)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.addLocked(j)
	r.mu.Unlock()
	r.sweep()
	gone(d2)
	kept(h1, big)

	// A running job is never removed, however large and old; its bytes
	// count, so the ended ones go.
	run := leaveJob(t, dir, 6, "RUNNING", time.Time{}, kib, kib, kib, kib)
	log, _, err := openFinishedLog(filepath.Join(dir, run.ID+logSuffix), 0)
	if err != nil {
		t.Fatal(err)
	}
	live := &job{id: run.ID, owner: "alice", command: "sh", started: run.Started, log: log, done: make(chan struct{})}
	r.mu.Lock()
	r.addLocked(live)
	r.mu.Unlock()
	advance(30 * 24 * time.Hour)
	r.sweep()
	gone(h1, big)
	r.mu.Lock()
	if r.jobs[run.ID] != live {
		t.Error("running job removed")
	}
	r.deleteLocked(live) // it has no process for Status or Shutdown
	r.mu.Unlock()
	if !exists(filepath.Join(dir, run.ID+logSuffix)) {
		t.Error("running job's log removed")
	}

	// By count: of three ended jobs, with room for two, the first to end
	// goes.
	a := leaveJob(t, dir, 7, "COMPLETED", clock().Add(-3*time.Minute))
	b := leaveJob(t, dir, 8, "COMPLETED", clock().Add(-2*time.Minute))
	c := leaveJob(t, dir, 9, "COMPLETED", clock().Add(-time.Minute))
	r.retainJobs = 2
	r.mu.Lock()
	for _, rec := range []record{b, a, c} {
		j, err := r.loadJob(rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		r.addLocked(j)
	}
	r.mu.Unlock()
	r.sweep()
	gone(a)
	kept(b, c)
}

// TestRemove proves Remove of an ended job forgets it and deletes its
// files, and that a second Remove or one of an unknown job is not found.
func TestRemove(t *testing.T) {
	dir := t.TempDir()
	rec := leaveJob(t, dir, 1, "COMPLETED", t0.Add(time.Hour), "out")
	other := leaveJob(t, dir, 2, "COMPLETED", t0.Add(time.Hour), "out")
	r, _ := openRunner(t, Config{StateDir: dir, Now: func() time.Time { return t0.Add(2 * time.Hour) }})
	ctx := testContext(t)
	if err := r.Remove(ctx, rec.ID, false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := r.Status(rec.ID); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Status after Remove: %v", err)
	}
	if err := r.watch(ctx, rec.ID, 0, func(Chunk) error { return nil }); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Watch after Remove: %v", err)
	}
	if exists(filepath.Join(dir, rec.ID+logSuffix)) || exists(filepath.Join(dir, rec.ID+recordSuffix)) {
		t.Error("files left after Remove")
	}
	if err := r.Remove(ctx, rec.ID, false); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("second Remove: %v", err)
	}
	if err := r.Remove(ctx, fakeID(77), true); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Remove of an unknown job: %v", err)
	}
	if _, err := r.Status(other.ID); err != nil {
		t.Errorf("other job: %v", err)
	}
	// A restart does not bring it back.
	closeRunner(t, r)
	r2, _ := openRunner(t, Config{StateDir: dir, Now: func() time.Time { return t0.Add(2 * time.Hour) }})
	if _, err := r2.Status(rec.ID); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("removed job back after restart: %v", err)
	}
}

// TestCutCommandLine proves the kept command line is at most
// MaxKeptCommandLine bytes, ends in the marker when cut, keeps UTF-8
// whole, and is untouched when it fits.
func TestCutCommandLine(t *testing.T) {
	short := []string{"-c", "echo hi"}
	if cmd, args, cut := cutCommandLine("sh", short); cmd != "sh" || !slices.Equal(args, short) || cut {
		t.Errorf("short command line changed: %q %q %v", cmd, args, cut)
	}
	size := func(cmd string, args []string) int {
		n := len(cmd)
		for _, a := range args {
			n += 1 + len(a)
		}
		return n
	}
	for _, tc := range []struct {
		name string
		cmd  string
		args []string
	}{
		{"one long arg", "sh", []string{"-c", strings.Repeat("x", 100<<10)}},
		{"many args", "echo", slices.Repeat([]string{"word"}, 5000)},
		{"long command", strings.Repeat("c", 10<<10), []string{"a"}},
		{"multibyte", "echo", []string{strings.Repeat("é", 5000)}},
		{"just over", "sh", []string{strings.Repeat("y", MaxKeptCommandLine-2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, args, cut := cutCommandLine(tc.cmd, tc.args)
			if !cut {
				t.Fatal("not cut")
			}
			if n := size(cmd, args); n > MaxKeptCommandLine || n < MaxKeptCommandLine-8 {
				t.Errorf("kept %d bytes, want at most %d and close to it", n, MaxKeptCommandLine)
			}
			last := cmd
			if len(args) > 0 {
				last = args[len(args)-1]
			}
			if !strings.HasSuffix(last, cutMarker) {
				t.Errorf("last word %q does not end in %q", last[max(0, len(last)-10):], cutMarker)
			}
			for _, w := range append([]string{cmd}, args...) {
				if !utf8Valid(w) {
					t.Errorf("word cut inside a UTF-8 character")
				}
			}
		})
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// TestListPage10000 pages through 10,000 jobs with 100 KiB command lines
// (cut to MaxKeptCommandLine, as Start and loading cut them), newest first,
// with filters, and times it.
func TestListPage10000(t *testing.T) {
	r, _ := openRunner(t, Config{StateDir: t.TempDir()})
	const n = 10_000
	long := strings.Repeat("x", 100<<10)
	empty := filepath.Join(t.TempDir(), "empty.log")
	os.WriteFile(empty, nil, 0o600)
	log, _, err := openFinishedLog(empty, 0)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	for i := range n {
		cmd, args, cut := cutCommandLine("sh", []string{"-c", long})
		j := &job{id: fakeID(i), owner: []string{"alice", "bob"}[i%2], command: cmd, args: args, cmdCut: cut,
			// Some share a start time: the id breaks the tie.
			started: t0.Add(time.Duration(i/2) * time.Second), log: log, done: make(chan struct{}),
			exited: true, ended: true, endedAt: t0.Add(time.Hour)}
		if i%3 == 0 {
			j.exit.ExitCode = 1
		}
		close(j.done)
		r.addLocked(j)
	}
	r.mu.Unlock()

	begin := time.Now()
	var all []Status
	q := ListQuery{Limit: 100}
	for {
		page, more := r.ListPage(q)
		all = append(all, page...)
		if !more {
			break
		}
		if len(page) != q.Limit {
			t.Fatalf("page of %d jobs with more to come, want %d", len(page), q.Limit)
		}
		q.After = CursorOf(page[len(page)-1])
	}
	took := time.Since(begin)
	t.Logf("ListPage: %d jobs in pages of %d took %v", len(all), q.Limit, took)
	if len(all) != n {
		t.Fatalf("listed %d jobs, want %d", len(all), n)
	}
	seen := make(map[string]bool)
	for i, st := range all {
		if seen[st.ID] {
			t.Fatalf("job %s listed twice", st.ID)
		}
		seen[st.ID] = true
		if i > 0 && compareOldestFirst(CursorOf(all[i-1]), CursorOf(st)) <= 0 {
			t.Fatalf("jobs %d and %d are not newest first", i-1, i)
		}
		if !st.CommandTruncated || len(st.Args[1]) > MaxKeptCommandLine {
			t.Fatalf("command line of %s not cut: %d bytes", st.ID, len(st.Args[1]))
		}
	}
	// Generous: the point is "well under a second" on a quiet machine,
	// and this one is shared by several test runs.
	if took > 5*time.Second {
		t.Errorf("listing 10,000 jobs took %v", took)
	}

	// Filters: bob's failed jobs, in pages of 7.
	want := 0
	for i := range n {
		if i%2 == 1 && i%3 == 0 {
			want++
		}
	}
	got := 0
	q = ListQuery{Owner: "bob", State: StateFailed, Limit: 7}
	for {
		page, more := r.ListPage(q)
		for _, st := range page {
			if st.Owner != "bob" || st.State != StateFailed {
				t.Fatalf("filter let %s (%s, %v) through", st.ID, st.Owner, st.State)
			}
		}
		got += len(page)
		if !more {
			break
		}
		q.After = CursorOf(page[len(page)-1])
	}
	if got != want {
		t.Errorf("bob's failed jobs: %d, want %d", got, want)
	}
	if page, more := r.ListPage(ListQuery{State: StateRunning}); len(page) != 0 || more {
		t.Errorf("running jobs: %d, more %v", len(page), more)
	}

	// A removed cursor job does not break paging: the next page starts
	// after its position.
	first, _ := r.ListPage(ListQuery{Limit: 3})
	if err := r.Remove(testContext(t), first[2].ID, false); err != nil {
		t.Fatal(err)
	}
	next, _ := r.ListPage(ListQuery{Limit: 1, After: CursorOf(first[2])})
	if len(next) != 1 || next[0].ID != all[3].ID {
		t.Errorf("page after a removed job starts at %v, want %s", next, all[3].ID)
	}
	r.mu.Lock()
	clear(r.jobs) // they share one log; nothing to remove on disk
	r.order = nil
	r.mu.Unlock()
}

// TestWriteRecordAtomic proves a record replaced while being read is never
// seen half-written, and that no temporary file is left.
func TestWriteRecordAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, fakeID(1)+recordSuffix)
	a := bytes.Repeat([]byte("a"), 64<<10)
	b := bytes.Repeat([]byte("b"), 64<<10)
	if err := writeFileAtomic(path, a, true); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := writeFileAtomic(path, [][]byte{a, b}[i%2], true); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("read a record of %d bytes that is neither version", len(got))
		}
	}
	close(stop)
	wg.Wait()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d files, want the record alone", len(entries))
	}
}

// TestWriteRecordPlantedSymlink: a symbolic link planted where the record's
// temporary file goes (someone who can write the state directory, and
// learnt a job's id from list) is replaced, never written through: the
// file it points to keeps its content.
func TestWriteRecordPlantedSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("root's file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fakeID(1)+recordSuffix)
	if err := os.Symlink(victim, path+tmpSuffix); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte(`{"version":1}`), true); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "root's file\n" {
		t.Errorf("the file a planted link points to now holds %q", got)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("record: %v, %v; want a regular file", fi, err)
	}
	if got, _ := os.ReadFile(path); string(got) != `{"version":1}` {
		t.Errorf("record holds %q", got)
	}
}
