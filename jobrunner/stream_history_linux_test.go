package jobrunner

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestLoadRecordsOutputDropped proves that what a job's record says of its
// dropped output comes back with it after a restart: a write error with
// its cause and count, and the gap in its log that watchers get; the cap;
// a log whose end was torn by a crash; and a job the server stopped on
// shutdown keeps that reason.
func TestLoadRecordsOutputDropped(t *testing.T) {
	dir := t.TempDir()

	// Job 1: "a", 3 bytes lost on a full disk, then "c".
	gappy := leaveJob(t, dir, 1, "COMPLETED", t0.Add(time.Hour))
	l, err := CreateOutputLog(filepath.Join(dir, gappy.ID+logSuffix+".new"), 0)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(Stdout, []byte("a"))
	restore := failingDisk(t, l)
	l.Write(Stdout, []byte("bbb"))
	restore()
	l.Write(Stdout, []byte("c"))
	l.Finish()
	if err := os.Rename(l.Path(), filepath.Join(dir, gappy.ID+logSuffix)); err != nil {
		t.Fatal(err)
	}
	gappy.OutputBytes, gappy.OutputTruncated, gappy.OutputTruncation = 2, true, TruncatedWriteError.String()
	gappy.OutputDropped, gappy.OutputError = 3, "no space left on device"
	writeRecordFile(t, dir, gappy)

	// Job 2: past the cap.
	capped := leaveJob(t, dir, 2, "COMPLETED", t0.Add(time.Hour), "x")
	capped.OutputTruncated, capped.OutputTruncation, capped.OutputDropped = true, TruncatedCap.String(), 10
	writeRecordFile(t, dir, capped)

	// Job 3: running when the server died in the middle of a record.
	torn := leaveJob(t, dir, 3, "RUNNING", time.Time{}, "whole")
	f, err := os.OpenFile(filepath.Join(dir, torn.ID+logSuffix), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{byte(Stdout), 0, 0, 0, 9, 'p', 'a'}) // a header for 9 bytes, 2 of them
	f.Close()

	// Job 4: stopped by the server's shutdown.
	shut := leaveJob(t, dir, 4, "FAILED", t0.Add(time.Hour), "bye")
	shut.Stopped, shut.Reason, shut.Signal, shut.ExitCode = true, ReasonServerShutdown.String(), 9, -1
	writeRecordFile(t, dir, shut)

	r, _ := openRunner(t, Config{StateDir: dir, Now: func() time.Time { return t0.Add(2 * time.Hour) }})
	st := r.mustStatus(t, gappy.ID)
	if !st.OutputTruncated || st.OutputTruncation != TruncatedWriteError || st.OutputDropped != 3 ||
		st.OutputError != "no space left on device" || st.OutputBytes != 2 {
		t.Errorf("job with a gap after a restart: %+v", st)
	}
	var got []string
	r.watch(testContext(t), gappy.ID, 0, func(c Chunk) error {
		if c.Dropped > 0 {
			got = append(got, "<gap>")
		}
		got = append(got, string(c.Data))
		return nil
	})
	if want := []string{"a", "<gap>", "", "c"}; !slices.Equal(got, want) {
		t.Errorf("watch after a restart: %q, want %q", got, want)
	}
	if st := r.mustStatus(t, capped.ID); st.OutputTruncation != TruncatedCap || st.OutputDropped != 10 {
		t.Errorf("capped job after a restart: %+v", st)
	}
	if st := r.mustStatus(t, torn.ID); st.Reason != ReasonServerLost || st.OutputBytes != 5 ||
		st.OutputTruncation != TruncatedWriteError || st.OutputError != errTornLog.Error() {
		t.Errorf("job torn by a crash after a restart: %+v", st)
	}
	if st := r.mustStatus(t, shut.ID); !st.Stopped || st.Reason != ReasonServerShutdown || st.State != StateFailed {
		t.Errorf("job stopped by a shutdown, after a restart: %+v", st)
	}
	// The rewritten record of the torn job keeps what its status says.
	closeRunner(t, r)
	r2, _ := openRunner(t, Config{StateDir: dir, Now: func() time.Time { return t0.Add(2 * time.Hour) }})
	if st := r2.mustStatus(t, torn.ID); st.OutputTruncation != TruncatedWriteError || st.OutputError != errTornLog.Error() {
		t.Errorf("torn job after a second restart: %+v", st)
	}
}
