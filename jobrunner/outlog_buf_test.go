package jobrunner

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
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

// TestOutputLogMemoryServed proves the memory path: a watcher that keeps up
// reads what was just written from the log's tail in memory, not back from
// the file, byte for byte; a watcher that starts behind reads the file
// (the tail holds only the last batch) and gets the same bytes; a watcher
// stuck in its callback holds no reference to the tail, so the writer
// keeps recycling its two buffers; and nothing is kept once nobody
// follows or the log is finished.
func TestOutputLogMemoryServed(t *testing.T) {
	l := newTestLog(t, 0)
	r := rand.New(rand.NewPCG(31, 32))
	var w written

	// A stuck watcher, from the first byte.
	release := make(chan struct{})
	stuckEntered := make(chan struct{})
	stuckErr := make(chan error, 1)
	go func() {
		var once sync.Once
		stuckErr <- l.WatchChunks(context.Background(), 0, 0, func(Chunk) error {
			once.Do(func() { close(stuckEntered) })
			<-release
			return nil
		})
	}()
	w.write(t, l, Stdout, randomBytes(r, 10))
	<-stuckEntered

	// A live watcher that keeps up: each write is delivered before the next.
	got := make(chan []byte)
	liveErr := make(chan error, 1)
	from := l.Size()
	go func() {
		liveErr <- l.WatchChunks(context.Background(), from, 64<<10, func(c Chunk) error {
			got <- bytes.Clone(c.Data)
			return nil
		})
	}()
	waitFollowers(t, l, 2)
	before := l.memReads.Load()
	const writes = 40
	var live bytes.Buffer
	for i := range writes {
		p := randomBytes(r, 1+r.IntN(maxWriteBatch))
		w.write(t, l, Stdout, p)
		for n := 0; n < len(p); {
			c := <-got
			live.Write(c)
			n += len(c)
		}
		if i == writes/2 {
			l.mu.Lock()
			tail := l.tail
			l.mu.Unlock()
			if tail == nil || tail.shared() {
				t.Fatalf("after a write, the tail is %v: want kept and held by nobody (a stuck watcher pins nothing)", tail)
			}
		}
	}
	if n := l.memReads.Load() - before; n < writes {
		t.Errorf("a watcher that kept up read from memory %d times for %d writes: want each write read from memory", n, writes)
	}
	if !bytes.Equal(live.Bytes(), w.all.Bytes()[from:]) {
		t.Fatal("the live watcher's bytes differ from what was written")
	}

	// A watcher from the first byte, far behind: the file, then the tail.
	before = l.memReads.Load()
	var behind bytes.Buffer
	behindErr := make(chan error, 1)
	go func() {
		behindErr <- l.WatchChunks(context.Background(), 0, 0, func(c Chunk) error {
			behind.Write(c.Data)
			if int64(behind.Len()) == int64(w.all.Len()) {
				return errStop
			}
			return nil
		})
	}()
	if err := <-behindErr; !errors.Is(err, errStop) {
		t.Fatalf("watcher from 0: %v", err)
	}
	if !bytes.Equal(behind.Bytes(), w.all.Bytes()) {
		t.Fatal("the watcher from byte 0 got bytes that differ from what was written")
	}
	if n := l.memReads.Load() - before; n > maxWriteBatch/followBufferSize+2 {
		t.Errorf("a watcher behind by %d bytes read memory %d times: the tail holds one batch", w.all.Len(), n)
	}

	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := <-liveErr; err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-stuckErr; err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tail != nil || l.followers != 0 {
		t.Errorf("finished log with no watcher: tail %v, %d followers", l.tail, l.followers)
	}
}

// TestOutputLogNoTailUnfollowed: a log nobody follows keeps no tail (one
// write buffer, as before).
func TestOutputLogNoTailUnfollowed(t *testing.T) {
	l := newTestLog(t, 0)
	for range 3 {
		if err := l.Write(Stdout, make([]byte, 100<<10)); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tail != nil {
		t.Error("a log nobody follows keeps a tail")
	}
}

// waitFollowers waits until l has n followers.
func waitFollowers(t *testing.T, l *OutputLog, n int) {
	t.Helper()
	ctx := testContext(t)
	for {
		l.mu.Lock()
		k := l.followers
		l.mu.Unlock()
		if k >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d followers, want %d", k, n)
		case <-time.After(time.Millisecond):
		}
	}
}
