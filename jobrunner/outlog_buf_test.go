package jobrunner

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestRetainedChunks proves what a transport that sends later relies on: a
// chunk a watcher retains keeps its bytes while the follower goes on
// merging later chunks (into other buffers), byte for byte what was
// written, for a live watcher joining mid-stream and for watchers of the
// finished log resuming at random offsets; and that a chunk not retained
// leaves its buffer to the next one.
func TestRetainedChunks(t *testing.T) {
	l := newTestLog(t, 0)
	r := rand.New(rand.NewPCG(21, 22))
	var w written
	var mu sync.Mutex // guards w while the live watcher reads it

	type held struct {
		c       Chunk
		data    []byte
		release func()
	}
	// check verifies retained chunks against the output, then releases them.
	check := func(t *testing.T, all []byte, from int64, hs []held) {
		t.Helper()
		next := from
		for i, h := range hs {
			if h.c.Offset != next {
				t.Fatalf("chunk %d at offset %d, want %d", i, h.c.Offset, next)
			}
			if !bytes.Equal(h.data, all[next:next+int64(len(h.data))]) {
				t.Fatalf("retained chunk %d (offset %d, %d bytes) changed after its callback", i, h.c.Offset, len(h.data))
			}
			next += int64(len(h.data))
			h.release()
		}
		if next != int64(len(all)) {
			t.Fatalf("got up to offset %d, want %d", next, len(all))
		}
	}
	retainAll := func(hs *[]held) func(Chunk) error {
		return func(c Chunk) error {
			if c.Dropped > 0 {
				t.Errorf("unexpected gap")
				return nil
			}
			data, release := c.Retain()
			*hs = append(*hs, held{c, data, release})
			return nil
		}
	}

	write := func(n int) {
		for range n {
			s := Stdout
			if r.IntN(4) == 0 {
				s = Stderr
			}
			k := 1 + r.IntN(3000)
			if r.IntN(10) == 0 {
				k = 1 + r.IntN(3*maxRecordData)
			}
			mu.Lock()
			w.write(t, l, s, randomBytes(r, k))
			mu.Unlock()
		}
	}
	write(100)
	// A live watcher joins mid-stream, at the current end.
	from := l.Size()
	var live []held
	done := make(chan error, 1)
	go func() { done <- l.WatchChunks(context.Background(), from, 8<<10, retainAll(&live)) }()
	write(300)
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	all := w.all.Bytes()
	check(t, all, from, live)

	for i := range 20 {
		from := r.Int64N(int64(len(all)) + 1)
		var hs []held
		if err := l.WatchChunks(context.Background(), from, []int{1000, 8 << 10, 64 << 10}[i%3], retainAll(&hs)); err != nil {
			t.Fatal(err)
		}
		check(t, all, from, hs)
	}

	// Not retained: one buffer serves every chunk.
	bufs := map[*chunkBuf]bool{}
	err := l.WatchChunks(context.Background(), 0, 4<<10, func(c Chunk) error {
		bufs[c.buf] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(bufs) != 1 {
		t.Errorf("a watcher that retains nothing used %d buffers, want 1", len(bufs))
	}
}

// TestRetainReleasesOnce: a release function may be called more than once
// without freeing a buffer someone else still holds, and a chunk without
// a follower's buffer is retained as a copy.
func TestRetainReleasesOnce(t *testing.T) {
	cb := newChunkBuf(16)
	cb.b = append(cb.b, "hello"...)
	c := Chunk{Stream: Stdout, Data: cb.b, buf: cb}
	_, r1 := c.Retain()
	_, r2 := c.Retain()
	r1()
	r1()
	if !cb.shared() {
		t.Fatal("a second release of one Retain dropped another holder's reference")
	}
	r2()
	if cb.shared() {
		t.Fatal("buffer still shared after every holder released it")
	}
	cb.release()

	raw := []byte("abc")
	data, release := Chunk{Stream: Stdout, Data: raw}.Retain()
	raw[0] = 'X'
	if string(data) != "abc" {
		t.Errorf("retained %q of a chunk without a buffer, want a copy", data)
	}
	release()
}
