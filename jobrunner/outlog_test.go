package jobrunner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// collected is what a watcher received.
type collected struct {
	all, stdout, stderr bytes.Buffer
	chunks              int
}

// collect returns a watch callback that appends to c and checks that
// offsets are contiguous from from.
func (c *collected) collect(t testing.TB, from int64) func(Chunk) error {
	next := from
	return func(ch Chunk) error {
		if ch.Offset != next {
			return fmt.Errorf("chunk at offset %d, want %d", ch.Offset, next)
		}
		if len(ch.Data) == 0 {
			return errors.New("empty chunk")
		}
		next += int64(len(ch.Data))
		c.all.Write(ch.Data)
		switch ch.Stream {
		case Stdout:
			c.stdout.Write(ch.Data)
		case Stderr:
			c.stderr.Write(ch.Data)
		default:
			return fmt.Errorf("chunk with stream %v", ch.Stream)
		}
		c.chunks++
		return nil
	}
}

// written records what a test wrote, to compare with what watchers got.
type written struct {
	all, stdout, stderr bytes.Buffer
}

func (w *written) write(t testing.TB, l *OutputLog, s Stream, p []byte) {
	t.Helper()
	if err := l.Write(s, p); err != nil {
		t.Fatalf("Write: %v", err)
	}
	w.all.Write(p)
	if s == Stdout {
		w.stdout.Write(p)
	} else {
		w.stderr.Write(p)
	}
}

func (w *written) check(t testing.TB, name string, c *collected) {
	t.Helper()
	if !bytes.Equal(c.all.Bytes(), w.all.Bytes()) {
		t.Errorf("%s: combined output differs: got %d bytes, want %d", name, c.all.Len(), w.all.Len())
	}
	if !bytes.Equal(c.stdout.Bytes(), w.stdout.Bytes()) {
		t.Errorf("%s: stdout differs: got %d bytes, want %d", name, c.stdout.Len(), w.stdout.Len())
	}
	if !bytes.Equal(c.stderr.Bytes(), w.stderr.Bytes()) {
		t.Errorf("%s: stderr differs: got %d bytes, want %d", name, c.stderr.Len(), w.stderr.Len())
	}
}

func newTestLog(t testing.TB, outputCap int64) *OutputLog {
	t.Helper()
	l, err := CreateOutputLog(filepath.Join(t.TempDir(), "job.log"), outputCap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Finish() })
	return l
}

// randomBytes returns n pseudo-random bytes seeded from r.
func randomBytes(r *rand.Rand, n int) []byte {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(r.Uint32())
	}
	p := make([]byte, n)
	rand.NewChaCha8(seed).Read(p)
	return p
}

// TestOutputLogFollowers proves that watchers attaching before the first
// byte, while output is written and after the log finished all receive
// exactly the bytes written, with contiguous offsets and correct stream
// tags, whatever the size of the writes (1 byte to several records).
func TestOutputLogFollowers(t *testing.T) {
	const watchers = 20
	l := newTestLog(t, 0)
	r := rand.New(rand.NewPCG(1, 2))
	var w written

	var wg sync.WaitGroup
	results := make([]*collected, watchers)
	errs := make([]error, watchers)
	startWatcher := func(i int) {
		results[i] = &collected{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.watch(context.Background(), 0, results[i].collect(t, 0))
		}()
	}

	// A third attach before the first byte, a third while output is
	// written, a third after the log finished.
	next := 0
	for ; next < watchers/3; next++ {
		startWatcher(next)
	}
	const writes = 300
	for i := range writes {
		s := Stdout
		if r.IntN(3) == 0 {
			s = Stderr
		}
		var n int
		switch r.IntN(4) {
		case 0:
			n = 1 + r.IntN(16)
		case 1:
			n = 1 + r.IntN(4096)
		case 2:
			n = maxRecordData
		default:
			n = 1 + r.IntN(3*maxRecordData)
		}
		w.write(t, l, s, randomBytes(r, n))
		if i%(writes/(watchers/3+1)) == 0 && next < 2*watchers/3 {
			startWatcher(next)
			next++
		}
	}
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	for ; next < watchers; next++ {
		startWatcher(next)
	}
	wg.Wait()

	if got, want := l.Size(), int64(w.all.Len()); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	if l.Truncation() != NotTruncated {
		t.Error("Truncated = true below the cap")
	}
	for i := range watchers {
		if errs[i] != nil {
			t.Errorf("watcher %d: %v", i, errs[i])
			continue
		}
		w.check(t, fmt.Sprintf("watcher %d", i), results[i])
	}
}

// TestOutputLogConcurrentWriters proves that two goroutines writing (as the
// stdout and stderr pipe readers do) keep each write whole and each
// stream's bytes in order.
func TestOutputLogConcurrentWriters(t *testing.T) {
	l := newTestLog(t, 0)
	var want [3]bytes.Buffer
	var wg sync.WaitGroup
	for _, s := range []Stream{Stdout, Stderr} {
		r := rand.New(rand.NewPCG(uint64(s), 7))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				p := randomBytes(r, 1+r.IntN(2*maxRecordData))
				want[s].Write(p)
				if err := l.Write(s, p); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var got collected
	watchErr := make(chan error, 1)
	go func() { watchErr <- l.watch(context.Background(), 0, got.collect(t, 0)) }()
	wg.Wait()
	l.Finish()
	if err := <-watchErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.stdout.Bytes(), want[Stdout].Bytes()) {
		t.Error("stdout differs")
	}
	if !bytes.Equal(got.stderr.Bytes(), want[Stderr].Bytes()) {
		t.Error("stderr differs")
	}
}

// errStop ends a watch early in tests.
var errStop = errors.New("stop watching")

// TestOutputLogResume proves that a watch from any offset, including the
// middle of a record and across index checkpoints, starts exactly at that
// byte, and that stopping after N bytes and resuming from N yields the
// whole output once.
func TestOutputLogResume(t *testing.T) {
	l := newTestLog(t, 0)
	r := rand.New(rand.NewPCG(3, 4))
	var w written
	w.write(t, l, Stdout, []byte("hello, "))
	w.write(t, l, Stderr, []byte("world"))
	for range 200 {
		s := Stream(1 + r.IntN(2))
		w.write(t, l, s, randomBytes(r, 1+r.IntN(5000)))
	}
	all := w.all.Bytes()

	// Small offsets with known streams: mid-record in stdout, the seam
	// between stdout and stderr, mid-record in stderr.
	for _, tc := range []struct {
		from   int64
		stream Stream
		first  string
	}{
		{0, Stdout, "hello, "},
		{3, Stdout, "lo, "},
		{7, Stderr, "world"},
		{9, Stderr, "rld"},
	} {
		var first *Chunk
		err := l.watch(context.Background(), tc.from, func(c Chunk) error {
			first = &Chunk{Stream: c.Stream, Offset: c.Offset, Data: bytes.Clone(c.Data)}
			return errStop
		})
		if !errors.Is(err, errStop) {
			t.Fatalf("Watch(%d) = %v, want errStop", tc.from, err)
		}
		if first.Stream != tc.stream || first.Offset != tc.from || string(first.Data) != tc.first {
			t.Errorf("Watch(%d) first chunk = %v %d %q, want %v %d %q", tc.from,
				first.Stream, first.Offset, first.Data, tc.stream, tc.from, tc.first)
		}
	}

	// Random offsets over the whole log, across checkpoints.
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		from := r.Int64N(int64(len(all)) + 1)
		var got collected
		if err := l.watch(context.Background(), from, got.collect(t, from)); err != nil {
			t.Fatalf("Watch(%d): %v", from, err)
		}
		if !bytes.Equal(got.all.Bytes(), all[from:]) {
			t.Fatalf("Watch(%d) got %d bytes, want the %d bytes from there", from, got.all.Len(), len(all)-int(from))
		}
	}

	// Stop after N bytes, resume from N, several times.
	var resumed bytes.Buffer
	var from int64
	for from < int64(len(all)) {
		limit := 1 + r.Int64N(100000)
		var n int64
		err := l.watch(context.Background(), from, func(c Chunk) error {
			if c.Offset != from+n {
				return fmt.Errorf("offset %d, want %d", c.Offset, from+n)
			}
			take := min(int64(len(c.Data)), limit-n)
			resumed.Write(c.Data[:take])
			n += take
			if n == limit {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			t.Fatal(err)
		}
		from += n
	}
	if !bytes.Equal(resumed.Bytes(), all) {
		t.Errorf("resumed watches got %d bytes, not the %d written", resumed.Len(), len(all))
	}
}

// gotChunk is a copy of a chunk a watcher received.
type gotChunk struct {
	stream Stream
	offset int64
	data   string
}

// watchChunks returns the chunks a watch of l from from with maxChunk
// hands over, copied.
func watchChunks(t *testing.T, l *OutputLog, from int64, maxChunk int) []gotChunk {
	t.Helper()
	var got []gotChunk
	err := l.WatchChunks(context.Background(), from, maxChunk, func(c Chunk) error {
		got = append(got, gotChunk{c.Stream, c.Offset, string(c.Data)})
		return nil
	})
	if err != nil {
		t.Fatalf("WatchChunks(%d, %d): %v", from, maxChunk, err)
	}
	return got
}

// TestOutputLogMergedChunks proves that a watcher gets consecutive records
// of one stream merged into one chunk, with boundaries exactly where the
// stream changes and at the maximum chunk size, with exact offsets; and
// that a watch resumed in the middle of a merged region starts exactly at
// its offset.
func TestOutputLogMergedChunks(t *testing.T) {
	l := newTestLog(t, 0)
	var w written
	w.write(t, l, Stdout, []byte("aaaa"))
	w.write(t, l, Stdout, []byte("bbbbbb"))
	w.write(t, l, Stdout, []byte("cc"))
	w.write(t, l, Stderr, []byte("EEE"))
	w.write(t, l, Stderr, []byte("FF"))
	w.write(t, l, Stdout, []byte("d"))
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from     int64
		maxChunk int
		want     []gotChunk
	}{
		{0, 1000, []gotChunk{{Stdout, 0, "aaaabbbbbbcc"}, {Stderr, 12, "EEEFF"}, {Stdout, 17, "d"}}},
		{0, 5, []gotChunk{{Stdout, 0, "aaaab"}, {Stdout, 5, "bbbbb"}, {Stdout, 10, "cc"},
			{Stderr, 12, "EEEFF"}, {Stdout, 17, "d"}}},
		{0, 1, []gotChunk{{Stdout, 0, "a"}, {Stdout, 1, "a"}, {Stdout, 2, "a"}, {Stdout, 3, "a"},
			{Stdout, 4, "b"}, {Stdout, 5, "b"}, {Stdout, 6, "b"}, {Stdout, 7, "b"}, {Stdout, 8, "b"},
			{Stdout, 9, "b"}, {Stdout, 10, "c"}, {Stdout, 11, "c"}, {Stderr, 12, "E"}, {Stderr, 13, "E"},
			{Stderr, 14, "E"}, {Stderr, 15, "F"}, {Stderr, 16, "F"}, {Stdout, 17, "d"}}},
		// Resumed inside the merged stdout region: in the first record,
		// at the seam of two records, inside the second.
		{2, 1000, []gotChunk{{Stdout, 2, "aabbbbbbcc"}, {Stderr, 12, "EEEFF"}, {Stdout, 17, "d"}}},
		{4, 1000, []gotChunk{{Stdout, 4, "bbbbbbcc"}, {Stderr, 12, "EEEFF"}, {Stdout, 17, "d"}}},
		{7, 4, []gotChunk{{Stdout, 7, "bbbc"}, {Stdout, 11, "c"}, {Stderr, 12, "EEEF"}, {Stderr, 16, "F"}, {Stdout, 17, "d"}}},
		{13, 1000, []gotChunk{{Stderr, 13, "EEFF"}, {Stdout, 17, "d"}}},
		{17, 1000, []gotChunk{{Stdout, 17, "d"}}},
		{18, 1000, nil},
	} {
		got := watchChunks(t, l, tc.from, tc.maxChunk)
		if !slices.Equal(got, tc.want) {
			t.Errorf("WatchChunks(from %d, max %d) = %v, want %v", tc.from, tc.maxChunk, got, tc.want)
		}
	}
}

// TestOutputLogMergedChunksRandom writes random records of both streams
// (1 byte to several records each) and checks, for random offsets and
// maximum chunk sizes, that a watcher of the finished log gets exactly the
// bytes from its offset, in chunks no larger than the maximum, and that a
// chunk is shorter than the maximum only where the stream changes next or
// the output ends: merging spans records and buffer reads.
func TestOutputLogMergedChunksRandom(t *testing.T) {
	l := newTestLog(t, 0)
	r := rand.New(rand.NewPCG(11, 12))
	var w written
	for range 400 {
		s := Stdout
		if r.IntN(4) == 0 {
			s = Stderr
		}
		n := 1 + r.IntN(100)
		if r.IntN(8) == 0 {
			n = 1 + r.IntN(2*maxRecordData)
		}
		w.write(t, l, s, randomBytes(r, n))
	}
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	all := w.all.Bytes()
	for i := range 60 {
		from := r.Int64N(int64(len(all)) + 1)
		maxChunk := []int{1, 7, 4096, DefaultMaxChunk, 32<<10 - 64, 100 << 10}[i%6]
		if maxChunk < 10 {
			from = max(from, int64(len(all))-20000) // a byte per callback is slow
		}
		chunks := watchChunks(t, l, from, maxChunk)
		next := from
		for j, c := range chunks {
			if c.offset != next {
				t.Fatalf("from %d, max %d: chunk %d at offset %d, want %d", from, maxChunk, j, c.offset, next)
			}
			if len(c.data) == 0 || len(c.data) > maxChunk {
				t.Fatalf("from %d, max %d: chunk %d has %d bytes", from, maxChunk, j, len(c.data))
			}
			if c.data != string(all[next:next+int64(len(c.data))]) {
				t.Fatalf("from %d, max %d: chunk %d at offset %d differs from what was written", from, maxChunk, j, c.offset)
			}
			if j+1 < len(chunks) && chunks[j+1].stream == c.stream && len(c.data) != maxChunk {
				t.Fatalf("from %d, max %d: chunk %d (%v) of %d bytes is followed by more %v: not merged",
					from, maxChunk, j, c.stream, len(c.data), c.stream)
			}
			next += int64(len(c.data))
		}
		if next != int64(len(all)) {
			t.Fatalf("from %d, max %d: got up to offset %d, want %d", from, maxChunk, next, len(all))
		}
	}
}

// TestOutputLogLiveChunkNotHeldBack proves that merging never delays live
// output: a watcher gets each write as soon as it is committed, although
// the chunk could take more.
func TestOutputLogLiveChunkNotHeldBack(t *testing.T) {
	l := newTestLog(t, 0)
	got := make(chan string)
	errc := make(chan error, 1)
	go func() {
		errc <- l.WatchChunks(context.Background(), 0, 1<<20, func(c Chunk) error {
			got <- string(c.Data)
			return nil
		})
	}()
	ctx := testContext(t)
	for _, s := range []string{"one", "two", "three"} {
		if err := l.Write(Stdout, []byte(s)); err != nil {
			t.Fatal(err)
		}
		select {
		case c := <-got:
			if c != s {
				t.Errorf("chunk %q, want %q", c, s)
			}
		case <-ctx.Done():
			t.Fatalf("%q written but not delivered", s)
		}
	}
	l.Finish()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestOutputLogInvalidOffset proves the offset checks: negative offsets
// and offsets past the end of a finished log are ErrInvalidOffset, also
// for a watcher that waited on a log that then finished short.
func TestOutputLogInvalidOffset(t *testing.T) {
	l := newTestLog(t, 0)
	if err := l.Write(Stdout, []byte("12345")); err != nil {
		t.Fatal(err)
	}
	noop := func(Chunk) error { return nil }
	if err := l.watch(context.Background(), -1, noop); !errors.Is(err, ErrInvalidOffset) {
		t.Errorf("Watch(-1) = %v, want ErrInvalidOffset", err)
	}
	waiting := make(chan error, 1)
	go func() { waiting <- l.watch(context.Background(), 10, noop) }()
	if err := l.Write(Stdout, []byte("678")); err != nil {
		t.Fatal(err)
	}
	l.Finish()
	if err := <-waiting; !errors.Is(err, ErrInvalidOffset) {
		t.Errorf("Watch(10) on a log finished at 8 bytes = %v, want ErrInvalidOffset", err)
	}
	if err := l.watch(context.Background(), 9, noop); !errors.Is(err, ErrInvalidOffset) {
		t.Errorf("Watch(9) = %v, want ErrInvalidOffset", err)
	}
	var got collected
	if err := l.watch(context.Background(), 8, got.collect(t, 8)); err != nil || got.all.Len() != 0 {
		t.Errorf("Watch(8) at the end = %v with %d bytes, want nil and none", err, got.all.Len())
	}
	if err := l.Write(Stdout, []byte("x")); !errors.Is(err, ErrLogFinished) {
		t.Errorf("Write after Finish = %v, want ErrLogFinished", err)
	}
}

// TestOutputLogFinishFreesWriteBuffer proves a log holds no write buffer
// before its first write (a job that prints nothing), nor once finished:
// the runner keeps every finished job's log, so that buffer would
// otherwise be kept once per job ever run.
func TestOutputLogFinishFreesWriteBuffer(t *testing.T) {
	l, err := CreateOutputLog(filepath.Join(t.TempDir(), "job.log"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.scratch != nil {
		t.Errorf("new log holds a %d-byte write buffer", cap(l.scratch))
	}
	if err := l.Write(Stdout, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}
	if l.scratch != nil {
		t.Errorf("finished log still holds a %d-byte write buffer", cap(l.scratch))
	}
	if err := l.Write(Stdout, []byte("late")); !errors.Is(err, ErrLogFinished) {
		t.Errorf("Write after Finish = %v, want ErrLogFinished", err)
	}
}

// TestOutputLogCap proves that output past the cap is dropped without
// error or blocking, exactly cap bytes are kept, and Truncated says so.
func TestOutputLogCap(t *testing.T) {
	const outputCap = 100 << 10
	l := newTestLog(t, outputCap)
	r := rand.New(rand.NewPCG(5, 6))
	var all bytes.Buffer
	for all.Len() < 3*outputCap {
		p := randomBytes(r, 1+r.IntN(10000))
		all.Write(p)
		if err := l.Write(Stream(1+r.IntN(2)), p); err != nil {
			t.Fatalf("Write past the cap: %v", err)
		}
	}
	l.Finish()
	if got := l.Size(); got != outputCap {
		t.Errorf("Size = %d, want the cap %d", got, outputCap)
	}
	if !(l.Truncation() != NotTruncated) {
		t.Error("Truncated = false past the cap")
	}
	var got collected
	if err := l.watch(context.Background(), 0, got.collect(t, 0)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.all.Bytes(), all.Bytes()[:outputCap]) {
		t.Errorf("watch got %d bytes, want the first %d written", got.all.Len(), outputCap)
	}

	// Exactly the cap is not truncated.
	l2 := newTestLog(t, 10)
	l2.Write(Stdout, []byte("0123456789"))
	if l2.Truncation() != NotTruncated {
		t.Error("Truncated = true at exactly the cap")
	}
	l2.Write(Stderr, []byte("x"))
	if !(l2.Truncation() != NotTruncated) || l2.Size() != 10 {
		t.Errorf("after one byte past the cap: Truncated = %v, Size = %d; want true, 10", (l2.Truncation() != NotTruncated), l2.Size())
	}
}

// TestOutputLogStuckFollower proves that a watcher whose callback blocks
// neither blocks the writer nor the other watchers.
func TestOutputLogStuckFollower(t *testing.T) {
	l := newTestLog(t, 0)
	release := make(chan struct{})
	stuckErr := make(chan error, 1)
	stuckEntered := make(chan struct{})
	go func() {
		stuckErr <- l.watch(context.Background(), 0, func(Chunk) error {
			select {
			case <-stuckEntered:
			default:
				close(stuckEntered)
			}
			<-release
			return nil
		})
	}()

	var w written
	r := rand.New(rand.NewPCG(8, 9))
	w.write(t, l, Stdout, randomBytes(r, 100))
	<-stuckEntered // the stuck watcher holds its first chunk from now on

	var wg sync.WaitGroup
	var others [5]collected
	var othersErr [5]error
	for i := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			othersErr[i] = l.watch(context.Background(), 0, others[i].collect(t, 0))
		}()
	}
	for range 200 { // 10 MiB while one watcher is stuck
		w.write(t, l, Stream(1+r.IntN(2)), randomBytes(r, 50<<10))
	}
	l.Finish()
	wg.Wait() // the others finish while the stuck one still blocks
	for i := range others {
		if othersErr[i] != nil {
			t.Fatalf("watcher %d: %v", i, othersErr[i])
		}
		w.check(t, fmt.Sprintf("watcher %d", i), &others[i])
	}
	select {
	case err := <-stuckErr:
		t.Fatalf("stuck watcher returned early: %v", err)
	default:
	}
	close(release)
	if err := <-stuckErr; err != nil {
		t.Fatal(err)
	}
}

// TestOutputLogCancel proves that cancelling the context ends a watcher
// that waits for output, and one that is delivering history.
func TestOutputLogCancel(t *testing.T) {
	l := newTestLog(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	got := make(chan struct{}, 1)
	go func() {
		errc <- l.watch(ctx, 0, func(Chunk) error {
			got <- struct{}{}
			return nil
		})
	}()
	l.Write(Stdout, []byte("a"))
	<-got // the watcher delivered the byte and now waits for more
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch after cancel = %v, want context.Canceled", err)
	}

	// Cancelled while delivering history: returns before the end.
	for range 100 {
		l.Write(Stderr, make([]byte, 10000))
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	calls := 0
	err := l.watch(ctx2, 0, func(Chunk) error {
		calls++
		cancel2()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Watch cancelled in its callback = %v, want context.Canceled", err)
	}
	if calls > 2 {
		t.Errorf("callback ran %d times after cancel", calls)
	}
}

// TestOutputLogNoGoroutineLeak proves that Watch starts no goroutine that
// outlives it: after many watches ended (finished, cancelled, failed), the
// goroutine count is back where it was.
func TestOutputLogNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	l := newTestLog(t, 0)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := context.Background()
			if i%3 == 0 {
				c = ctx
			}
			l.watch(c, 0, func(Chunk) error {
				if i%3 == 1 {
					return errStop
				}
				return nil
			})
		}()
	}
	for range 50 {
		l.Write(Stdout, make([]byte, 1000))
	}
	cancel()
	l.Finish()
	wg.Wait()
	// Goroutines that returned may take a moment to be reaped.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("%d goroutines before, %d after", before, after)
	}
}

// BenchmarkOutputLogWriteFollow measures writing 32 KiB records with one
// live follower reading them.
func BenchmarkOutputLogWriteFollow(b *testing.B) {
	l, err := CreateOutputLog(filepath.Join(b.TempDir(), "job.log"), 1<<40)
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 32<<10)
	var followed int64
	done := make(chan error, 1)
	go func() {
		done <- l.watch(context.Background(), 0, func(c Chunk) error {
			followed += int64(len(c.Data))
			return nil
		})
	}()
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	for range b.N {
		if err := l.Write(Stdout, p); err != nil {
			b.Fatal(err)
		}
	}
	l.Finish()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if followed != int64(b.N)*int64(len(p)) {
		b.Fatalf("follower got %d bytes, want %d", followed, int64(b.N)*int64(len(p)))
	}
}

// failingDisk swaps the log's file for /dev/full (every write fails with
// ENOSPC, as on a full disk) until the returned function puts it back.
func failingDisk(t *testing.T, l *OutputLog) (restore func()) {
	t.Helper()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	l.wmu.Lock()
	real := l.f
	l.f = full
	l.wmu.Unlock()
	return func() {
		l.wmu.Lock()
		l.f = real
		l.wmu.Unlock()
		full.Close()
	}
}

// watchGaps watches l from from and returns what it got, a gap written
// as "<gap N>".
func watchGaps(t *testing.T, l *OutputLog, from int64) []gotChunk {
	t.Helper()
	var got []gotChunk
	err := l.watch(context.Background(), from, func(c Chunk) error {
		if c.Dropped > 0 {
			if len(c.Data) != 0 || c.Stream != 0 {
				t.Errorf("gap chunk with data or a stream: %+v", c)
			}
			got = append(got, gotChunk{0, c.Offset, fmt.Sprintf("<gap %d>", c.Dropped)})
			return nil
		}
		got = append(got, gotChunk{c.Stream, c.Offset, string(c.Data)})
		return nil
	})
	if err != nil {
		t.Fatalf("Watch(%d): %v", from, err)
	}
	return got
}

// TestOutputLogWriteError proves that a failed write (a full disk) is an
// event, not the end: that output is dropped and counted, the error says
// why, the log is truncated for a write error (not the cap), and once a
// write succeeds again output is kept, after a gap record that every
// watcher gets at the right offset (also one that starts at it, none that
// starts past it). Offsets stay contiguous: dropped bytes take none.
func TestOutputLogWriteError(t *testing.T) {
	l := newTestLog(t, 0)
	if err := l.Write(Stdout, []byte("before\n")); err != nil {
		t.Fatal(err)
	}
	restore := failingDisk(t, l)
	err := l.Write(Stderr, []byte("lost\n"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Write on a full disk = %v, want ENOSPC", err)
	}
	if err := l.Write(Stdout, bytes.Repeat([]byte("x"), 3*maxRecordData)); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("second Write on a full disk = %v, want ENOSPC", err)
	}
	if l.Truncation() != TruncatedWriteError || !(l.Truncation() != NotTruncated) || l.Dropped() != 5+3*maxRecordData || l.Size() != 7 {
		t.Errorf("on a full disk: Truncation %v, Dropped %d, Size %d; want write error, %d, 7", l.Truncation(), l.Dropped(), l.Size(), 5+3*maxRecordData)
	}
	restore()
	if err := l.Write(Stdout, []byte("after\n")); err != nil {
		t.Fatalf("Write once space is back: %v", err)
	}
	l.Finish()
	if !errors.Is(l.Err(), syscall.ENOSPC) || l.Truncation() != TruncatedWriteError || l.Size() != 13 {
		t.Errorf("after: Err %v, Truncation %v, Size %d", l.Err(), l.Truncation(), l.Size())
	}
	gap := fmt.Sprintf("<gap %d>", 5+3*maxRecordData)
	want := []gotChunk{{Stdout, 0, "before\n"}, {0, 7, gap}, {Stdout, 7, "after\n"}}
	if got := watchGaps(t, l, 0); !slices.Equal(got, want) {
		t.Errorf("watch from 0: %v, want %v", got, want)
	}
	if got := watchGaps(t, l, 7); !slices.Equal(got, want[1:]) {
		t.Errorf("watch from the gap: %v, want %v", got, want[1:])
	}
	if got := watchGaps(t, l, 8); !slices.Equal(got, []gotChunk{{Stdout, 8, "fter\n"}}) {
		t.Errorf("watch from past the gap: %v", got)
	}
	// A tail counts lines across the gap, which holds none.
	for n, want := range map[int64]int64{1: 7, 2: 0} {
		if off, err := l.TailOffset(n, 0); err != nil || off != want {
			t.Errorf("TailOffset(%d) over a gap = %d, %v; want %d", n, off, err, want)
		}
	}
}

// TestOutputLogWriteErrorAtEnd proves that output dropped at the very end
// is marked by a gap when Finish can write it, and that the cap and write
// errors are told apart (a write error wins, being the one to act on).
func TestOutputLogWriteErrorAtEnd(t *testing.T) {
	l := newTestLog(t, 10)
	l.Write(Stdout, []byte("12345"))
	restore := failingDisk(t, l)
	l.Write(Stdout, []byte("abc"))
	restore()
	l.Finish()
	if got, want := watchGaps(t, l, 0), []gotChunk{{Stdout, 0, "12345"}, {0, 5, "<gap 3>"}}; !slices.Equal(got, want) {
		t.Errorf("watch: %v, want %v", got, want)
	}

	capped := newTestLog(t, 4)
	capped.Write(Stdout, []byte("123456"))
	if capped.Truncation() != TruncatedCap || capped.Dropped() != 2 || capped.Err() != nil {
		t.Errorf("past the cap: Truncation %v, Dropped %d, Err %v", capped.Truncation(), capped.Dropped(), capped.Err())
	}
	restore = failingDisk(t, capped)
	capped.Write(Stdout, []byte("x")) // past the cap: dropped without a write
	if capped.Truncation() != TruncatedCap {
		t.Errorf("past the cap, disk full: Truncation %v, want the cap (nothing was written)", capped.Truncation())
	}
	restore()
}

// watch is WatchChunks with the default chunk size.
func (l *OutputLog) watch(ctx context.Context, from int64, fn func(Chunk) error) error {
	return l.WatchChunks(ctx, from, 0, fn)
}

// watch is WatchChunks with the default chunk size, without the status.
func (r *Runner) watch(ctx context.Context, id string, from int64, fn func(Chunk) error) error {
	_, err := r.WatchChunks(ctx, id, from, 0, fn)
	return err
}

// TestOutputLogBatchedWrites proves that writes of many records (one file
// write each, see maxWriteBatch), mixed with small ones and a gap, lay out
// the same records and checkpoints that reading the file back finds, and
// that a watcher from any checkpoint, or between two, gets exactly the
// bytes written from there.
func TestOutputLogBatchedWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(14, 1))
	l := newTestLog(t, 0)
	var w written
	for i, n := range []int{1, maxWriteBatch + 3*maxRecordData + 7, 100, 3 * maxWriteBatch, maxRecordData, 5} {
		w.write(t, l, Stream(1+i%2), randomBytes(r, n))
	}
	// A gap record before the next batch: as a failed write leaves it.
	l.wmu.Lock()
	l.gap = 42
	l.wmu.Unlock()
	gapAt := int64(w.all.Len())
	w.write(t, l, Stdout, randomBytes(r, 2*maxWriteBatch))
	if err := l.Finish(); err != nil {
		t.Fatal(err)
	}

	reopened, _, err := openFinishedLog(l.Path(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if reopened.Size() != l.Size() || reopened.diskBytes() != l.diskBytes() || reopened.Dropped() != 42 {
		t.Fatalf("reopened: size %d, %d bytes of records, %d dropped; written: %d, %d, 42",
			reopened.Size(), reopened.diskBytes(), reopened.Dropped(), l.Size(), l.diskBytes())
	}
	if !slices.Equal(reopened.index, l.index) {
		t.Fatalf("checkpoints: written %v, read back %v", l.index, reopened.index)
	}
	for _, cp := range l.index {
		for _, from := range []int64{cp.logical, cp.logical + 1 + r.Int64N(indexInterval)} {
			from = min(from, l.Size())
			var got bytes.Buffer
			var gaps int64
			err := l.watch(context.Background(), from, func(c Chunk) error {
				gaps += c.Dropped
				got.Write(c.Data)
				return nil
			})
			if err != nil {
				t.Fatalf("watch from %d: %v", from, err)
			}
			if !bytes.Equal(got.Bytes(), w.all.Bytes()[from:]) {
				t.Fatalf("watch from %d: %d bytes, not the %d written from there", from, got.Len(), int64(w.all.Len())-from)
			}
			if want := map[bool]int64{true: 42}[from <= gapAt]; gaps != want {
				t.Fatalf("watch from %d: gaps of %d bytes, want %d (42 dropped at %d)", from, gaps, want, gapAt)
			}
		}
	}
}
