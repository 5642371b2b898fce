package jobrunner

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// copyStateDir copies the regular files of dir into a new directory: what
// a server killed at this moment leaves to the next one (its writes are in
// the page cache, which outlives the process).
func copyStateDir(t *testing.T, dir string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(to, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // a record's temporary file renamed meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// stateFiles lists the names of the files in dir, sorted.
func stateFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

// errSeen ends a watch once it saw what it waited for.
var errSeen = errors.New("seen")

// TestRunnerServerDiesAfterStart plays a server killed the moment Start
// returned, and again once the job wrote its first line: a Runner started
// on what each left on disk brings the job back FAILED (the server was
// lost) with the output written until then, since the job's record is
// written before its command runs. The spares in the state directory (the
// files made ahead for the next jobs) are removed, not taken for jobs.
func TestRunnerServerDiesAfterStart(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	st, err := e.r.Start(ctx, StartRequest{Owner: "alice", Command: "sh", Args: []string{"-c", "echo hi; exec sleep 1000"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	atOnce := copyStateDir(t, e.r.stateDir)
	var seen strings.Builder
	_, err = e.r.WatchChunks(ctx, st.ID, 0, DefaultMaxChunk, func(c Chunk) error {
		seen.Write(c.Data)
		if seen.String() == "hi\n" {
			return errSeen
		}
		return nil
	})
	if !errors.Is(err, errSeen) {
		t.Fatalf("watch for the first line: %q, %v", seen.String(), err)
	}
	afterLine := copyStateDir(t, e.r.stateDir)

	for _, c := range []struct {
		what, dir string
		outputs   []string // what it may have written by then
	}{
		{"killed as Start returned", atOnce, []string{"|", "hi\n|"}},
		{"killed after the first line", afterLine, []string{"hi\n|"}},
	} {
		spares := 0
		for _, f := range stateFiles(t, c.dir) {
			if strings.HasSuffix(f, logSuffix+tmpSuffix) {
				spares++
			}
		}
		if spares == 0 {
			t.Errorf("%s: no spare in the dead server's state directory", c.what)
		}
		e2 := newRootEnvIn(t, 0, c.dir)
		list := e2.r.List()
		if len(list) != 1 || list[0].ID != st.ID {
			t.Fatalf("%s: the next server has %+v, want job %s alone", c.what, list, st.ID)
		}
		got := list[0]
		if got.State != StateFailed || got.Reason != ReasonServerLost || got.Owner != "alice" || got.Command != "sh" {
			t.Errorf("%s: status %+v, want FAILED, server lost, alice's sh", c.what, got)
		}
		if out := output(t, e2.r, st.ID); !slices.Contains(c.outputs, out) {
			t.Errorf("%s: output %q, want one of %q", c.what, out, c.outputs)
		}
		// Of the dead server's files only the job's are left (its spares
		// are gone); the files the first server never had are the next
		// one's own spares.
		for _, f := range stateFiles(t, c.dir) {
			if !strings.HasPrefix(f, st.ID) && exists(filepath.Join(e.r.stateDir, f)) {
				t.Errorf("%s: %s of the dead server left", c.what, f)
			}
		}
	}
}

// TestRunnerConcurrentStarts starts more jobs at once than there are
// spares, from 8 callers: every start gets an id of its own, its record
// says RUNNING when Start returns, and once the Runner is shut down the
// state directory holds each job's log and record and nothing else (no
// spare, no temporary file).
func TestRunnerConcurrentStarts(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	const callers, each = 8, 4
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				st, err := e.r.Start(ctx, StartRequest{Owner: "alice", Command: "true"})
				if err != nil {
					t.Errorf("Start: %v", err)
					return
				}
				if rec := readRecord(t, e.r, st.ID); rec.State != "RUNNING" && rec.State != "COMPLETED" {
					t.Errorf("record of %s when Start returned: %+v", st.ID, rec)
				}
				mu.Lock()
				ids = append(ids, st.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if slices.Sort(ids); len(slices.Compact(slices.Clone(ids))) != callers*each {
		t.Fatalf("%d distinct ids of %d starts", len(slices.Compact(slices.Clone(ids))), callers*each)
	}
	// Nothing looks like a job's files but a job's: the spares' are named
	// apart.
	for _, f := range stateFiles(t, e.r.stateDir) {
		id, ext, _ := strings.Cut(f, ".")
		if (ext == "log" || ext == "json") && !slices.Contains(ids, id) {
			t.Errorf("%s looks like a job's file, and no job has id %s", f, id)
		}
	}
	for _, id := range ids {
		if st, err := e.r.Wait(ctx, id); err != nil || st.State != StateCompleted {
			t.Errorf("job %s: %+v, %v", id, st, err)
		}
	}
	if err := e.r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, id := range ids {
		want = append(want, id+logSuffix, id+recordSuffix)
	}
	slices.Sort(want)
	if got := stateFiles(t, e.r.stateDir); !slices.Equal(got, want) {
		t.Errorf("state directory after Shutdown holds %q, want the jobs' logs and records %q", got, want)
	}
}
