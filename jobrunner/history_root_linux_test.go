package jobrunner

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/drrev/telehandler/sandbox"
)

// readRecord reads the job's record from the state directory.
func readRecord(t *testing.T, r *Runner, id string) record {
	t.Helper()
	data, err := os.ReadFile(r.recordPath(id))
	if err != nil {
		t.Fatalf("record of %s: %v", id, err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatalf("record of %s: %v", id, err)
	}
	return rec
}

// TestRunnerRecordsRealJobs runs real jobs: each has a record from its
// start (RUNNING) and its end (how it ended), a restarted Runner on the
// same directory serves their status and output, and Remove refuses a
// running job unless forced, which kills it and removes its cgroup.
// A hostile job tries to make its record lie: it writes output that looks
// like a record and a command line far over the kept size.
func TestRunnerRecordsRealJobs(t *testing.T) {
	e := newRootEnv(t, 0)
	ctx := testContext(t)
	r := e.r

	fake := `{"version":1,"id":"x","owner":"root","state":"COMPLETED"}`
	done, err := r.Start(ctx, StartRequest{Owner: "alice", Command: "sh",
		Args:   []string{"-c", "echo '" + fake + "'; echo err >&2; exit 3", strings.Repeat("x", 64<<10)},
		Limits: sandbox.DefaultLimits()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if !done.CommandTruncated || len(done.Args[1]) > MaxKeptCommandLine {
		t.Errorf("Start kept %d bytes of a 64 KiB argument", len(done.Args[1]))
	}
	if _, err := r.Wait(ctx, done.ID); err != nil {
		t.Fatal(err)
	}
	if rec := readRecord(t, r, done.ID); rec.State != "FAILED" || rec.ExitCode != 3 || rec.Owner != "alice" ||
		rec.OutputBytes != int64(len(fake)+5) || rec.Ended.IsZero() || !rec.CommandTruncated {
		t.Errorf("record of the ended job: %+v", rec)
	}

	sleeper, err := r.Start(ctx, StartRequest{Owner: "alice", Command: "sh", Args: []string{"-c", "sleep 1000 & sleep 1000 & wait"},
		Limits: sandbox.DefaultLimits()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if rec := readRecord(t, r, sleeper.ID); rec.State != "RUNNING" || !rec.Ended.IsZero() {
		t.Errorf("record of the running job: %+v", rec)
	}
	if err := r.Remove(ctx, sleeper.ID, false); !errors.Is(err, ErrRunning) {
		t.Errorf("Remove of a running job = %v, want ErrRunning", err)
	}
	if st := r.mustStatus(t, sleeper.ID); st.State != StateRunning {
		t.Errorf("refused Remove changed the job: %+v", st)
	}
	if err := r.Remove(ctx, sleeper.ID, true); err != nil {
		t.Fatalf("Remove with force: %v", err)
	}
	e.checkGone(t, sleeper.ID)
	if exists(r.recordPath(sleeper.ID)) || exists(r.logPath(sleeper.ID)) {
		t.Error("files of the forcibly removed job left")
	}
	if _, err := r.Status(sleeper.ID); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("Status after Remove = %v", err)
	}

	// Restart on the same directory and cgroups.
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r2, err := New(Config{StateDir: r.stateDir, Sandbox: r.sandbox})
	if err != nil {
		t.Fatalf("New after Shutdown: %v", err)
	}
	t.Cleanup(func() { r2.Shutdown(ctx) })
	st := r2.mustStatus(t, done.ID)
	if st.State != StateFailed || st.ExitCode != 3 || st.Owner != "alice" || !st.Started.Equal(done.Started) ||
		st.OutputBytes != int64(len(fake)+5) || !st.CommandTruncated || st.Stats.CPUUsage == 0 {
		t.Errorf("status after restart: %+v", st)
	}
	if got := output(t, r2, done.ID); got != fake+"\n|err\n" {
		t.Errorf("output after restart: %q", got)
	}
	if n := len(r2.List()); n != 1 {
		t.Errorf("%d jobs after restart, want 1", n)
	}
}
