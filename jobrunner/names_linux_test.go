package jobrunner

import (
	"errors"
	"testing"
	"time"
)

// TestNamesAcrossRestarts: a job's name and init flag are in its record; a
// restarted Runner keeps the name taken until the job is removed; a record
// with a malformed name is not loaded. The tail of a loaded log is found
// as in a live one.
func TestNamesAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	rec := leaveJob(t, dir, 1, "COMPLETED", t0.Add(time.Hour), "a\nb\n", "c\n", "d\n")
	rec.Name, rec.Init = "web", true
	writeRecordFile(t, dir, rec)
	bad := leaveJob(t, dir, 2, "COMPLETED", t0.Add(time.Hour), "x")
	bad.Name = "../etc"
	writeRecordFile(t, dir, bad)

	r, _ := openRunner(t, Config{StateDir: dir, Now: func() time.Time { return t0.Add(2 * time.Hour) }})
	ctx := testContext(t)
	st, err := r.Status(rec.ID)
	if err != nil || st.Name != "web" || !st.Init {
		t.Fatalf("loaded job: %+v, %v; want name web and init", st, err)
	}
	if _, err := r.Status(bad.ID); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("a record with a malformed name was loaded: %v", err)
	}
	if refs := r.Refs(); len(refs) != 1 || refs[0] != (Ref{ID: rec.ID, Owner: "alice", Name: "web"}) {
		t.Errorf("Refs = %+v", refs)
	}
	for n, want := range map[int64]int64{1: 6, 2: 4, 4: 0} {
		if off, err := r.TailOffset(rec.ID, n, 0); err != nil || off != want {
			t.Errorf("TailOffset(%d) of a loaded log = %d, %v; want %d", n, off, err, want)
		}
	}
	if off, err := r.TailOffset(rec.ID, 2, Stdout); err != nil || off != 2 {
		t.Errorf("TailOffset(2, stdout) = %d, %v; want 2 (b, then d)", off, err)
	}

	req := StartRequest{Owner: "alice", Name: "web", Command: "true"}
	if _, err := r.Start(ctx, req); !errors.Is(err, ErrNameTaken) {
		t.Errorf("Start with the name of a loaded job: %v, want ErrNameTaken", err)
	}
	if err := r.Remove(ctx, rec.ID, false); err != nil {
		t.Fatal(err)
	}
	// The name is free again: Start now goes past the name (and fails
	// only because this sandbox runs nothing).
	if _, err := r.Start(ctx, req); err == nil || errors.Is(err, ErrNameTaken) {
		t.Errorf("Start with the name of a removed job: %v, want a sandbox error", err)
	}
}
