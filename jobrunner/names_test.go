package jobrunner

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
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
