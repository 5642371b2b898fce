package jobrunner

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	for _, good := range []string{"a", "web", "Web-1", "x.y_z", "0", strings.Repeat("n", MaxNameLen),
		"abcdefghijklmnopqrstuvwxy", "abcdefghijklmnopqrstuvwxyz1", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxy8"} {
		if err := ValidateName(good); err != nil {
			t.Errorf("ValidateName(%q) = %v", good, err)
		}
	}
	id, err := newID()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "-web", ".", "..", "_x", "a b", "a/b", "a:b", "é", "a\x00", "a\n",
		strings.Repeat("n", MaxNameLen+1), id, "abcdefghijklmnopqrstuvwxyz", "jobs/x"} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) accepted it", bad)
		}
	}
	// Through Start: ErrInvalidRequest before anything runs.
	if err := (StartRequest{Command: "true", Name: "-x"}).validate(); !errors.Is(err, ErrInvalidRequest) {
		t.Errorf("StartRequest with a bad name: %v, want ErrInvalidRequest", err)
	}
}

// tailRef is tail -n on the output (streams[i] is the stream of out[i]):
// the offset where the last n lines start, of both streams (s == 0) or of
// stream s.
func tailRef(out []byte, streams []Stream, n int64, s Stream) int64 {
	if n == 0 {
		return int64(len(out))
	}
	last := true // the next byte of s seen from the end is its last
	for i := len(out) - 1; i >= 0; i-- {
		if s != 0 && streams[i] != s {
			continue
		}
		if out[i] == '\n' && !last {
			if n--; n == 0 {
				return int64(i + 1)
			}
		}
		last = false
	}
	return 0
}

func TestOutputLogTailOffset(t *testing.T) {
	l := newTestLog(t, 0)
	if off, err := l.TailOffset(5, 0); err != nil || off != 0 {
		t.Errorf("empty log: %d, %v", off, err)
	}
	if _, err := l.TailOffset(-1, 0); !errors.Is(err, ErrInvalidOffset) {
		t.Errorf("negative n: %v", err)
	}
	var streams []Stream
	// Random lines, long and short, over both streams and many checkpoint
	// intervals; the last line sometimes unfinished.
	r := rand.New(rand.NewPCG(1, 2))
	var all bytes.Buffer
	for i := 0; all.Len() < 5*indexInterval; i++ {
		var line []byte
		switch r.IntN(4) {
		case 0:
			line = bytes.Repeat([]byte{'x'}, r.IntN(3*indexInterval)) // longer than an interval
		default:
			line = bytes.Repeat([]byte{'y'}, r.IntN(100))
		}
		line = append(line, '\n')
		s := Stdout
		if r.IntN(2) == 0 {
			s = Stderr
		}
		// Lines split across writes, and writes with several lines.
		for len(line) > 0 {
			k := min(len(line), 1+r.IntN(maxRecordData))
			if err := l.Write(s, line[:k]); err != nil {
				t.Fatal(err)
			}
			all.Write(line[:k])
			for range k {
				streams = append(streams, s)
			}
			line = line[k:]
		}
	}
	check := func(what string) {
		t.Helper()
		lines := int64(bytes.Count(all.Bytes(), []byte{'\n'}))
		for _, n := range []int64{0, 1, 2, 3, 10, lines - 1, lines, lines + 1, 1 << 40} {
			for _, s := range []Stream{0, Stdout, Stderr} {
				off, err := l.TailOffset(n, s)
				if want := tailRef(all.Bytes(), streams, n, s); err != nil || off != want {
					t.Errorf("%s: TailOffset(%d, %v) = %d, %v; want %d", what, n, s, off, err, want)
				}
			}
		}
	}
	check("ends with a newline")
	if err := l.Write(Stdout, []byte("unfinished")); err != nil {
		t.Fatal(err)
	}
	all.WriteString("unfinished")
	for range len("unfinished") {
		streams = append(streams, Stdout)
	}
	check("ends without a newline")
	l.Finish()
	check("finished")

	// Tail then watch: the chunks from the offset are exactly the last lines.
	off, _ := l.TailOffset(3, 0)
	var got bytes.Buffer
	if err := l.watch(context.Background(), off, func(c Chunk) error { got.Write(c.Data); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := all.Bytes()[tailRef(all.Bytes(), streams, 3, 0):]; !bytes.Equal(got.Bytes(), want) {
		t.Errorf("watch from the tail offset: %d bytes, want %d", got.Len(), len(want))
	}
}

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
