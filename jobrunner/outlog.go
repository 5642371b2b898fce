package jobrunner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
)

// Stream says which of a job's output streams a chunk came from.
type Stream uint8

// The streams of a job. The zero value is not a stream.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	default:
		return fmt.Sprintf("Stream(%d)", uint8(s))
	}
}

// Chunk is a piece of a job's output handed to a watcher.
type Chunk struct {
	// Stream is where the bytes came from (0 for a gap).
	Stream Stream
	// Offset is the logical offset of Data[0]: the number of output bytes
	// kept before it (stdout and stderr together, in the order the log
	// received them).
	Offset int64
	// Data is valid only during the callback it is passed to; copy it,
	// or Retain it, to keep it.
	Data []byte
	// Dropped, when not zero, marks a gap: that many bytes of output were
	// dropped at Offset because the log could not be written (a full
	// disk). Data is empty then.
	Dropped int64

	buf *chunkBuf // Data's buffer, for Retain; nil for a gap
}

// Truncation says why a log dropped output. The zero value means nothing
// was dropped.
type Truncation uint8

// The reasons for dropped output. When both happened, TruncatedWriteError
// wins: it is the one an operator must act on.
const (
	NotTruncated Truncation = iota
	// TruncatedCap: output past the log's cap was dropped.
	TruncatedCap
	// TruncatedWriteError: writing the file failed (ENOSPC, EIO) and the
	// output of the failed writes was dropped; a later write that succeeds
	// first records a gap marker, so watchers learn where output is missing.
	TruncatedWriteError
)

// String is the name a job's record keeps.
func (t Truncation) String() string {
	switch t {
	case NotTruncated:
		return ""
	case TruncatedCap:
		return "cap"
	case TruncatedWriteError:
		return "write_error"
	default:
		return fmt.Sprintf("Truncation(%d)", uint8(t))
	}
}

// DefaultOutputCap is the output cap used when none is configured: 1 GiB.
const DefaultOutputCap int64 = 1 << 30

// Layout of the log file: a sequence of records, each a header of
// recordHeaderSize bytes (the stream, then the length of the data as a
// big-endian uint32) followed by that many bytes of output. Records are
// never empty and never longer than maxRecordData. A record is committed
// (visible to followers) only once it was written whole, so the committed
// part of the file always ends at a record boundary.
//
// A gap record (stream byte recordGap, length gapDataSize) holds, as a
// big-endian uint64, the number of output bytes dropped at that point
// because earlier writes failed; it carries no output and takes no logical
// offset. The file is indexed by logical offset (checkpoints, resumable
// watchers), so output cannot simply continue after a hole: the marker keeps
// offsets exact and tells every watcher where, and how much, is missing.
const (
	recordHeaderSize = 5
	maxRecordData    = 32 << 10
	recordGap        = 3
	gapDataSize      = 8
	gapRecordSize    = recordHeaderSize + gapDataSize
	// indexInterval is the spacing, in logical bytes, of the in-memory
	// checkpoints that let a follower start at an offset without reading
	// the file from its start. Memory is bounded by cap/indexInterval
	// checkpoints per log (16 Ki for the default cap), whatever the number
	// of followers.
	indexInterval = 64 << 10
	// followBufferSize is a follower's read buffer (recordDecoder), the
	// most it reads from the file at once. With the chunk it merges (at
	// most maxChunk bytes) it is all the memory a follower holds.
	followBufferSize = 64 << 10
)

// checkpoint maps a logical offset to the file offset of the record that
// starts there.
type checkpoint struct {
	logical, file int64
}

// OutputLog is one job's output: an append-only file of records tagged
// stdout or stderr, written by the job's pipe readers and followed by any
// number of watchers. Watchers wait on a broadcast channel that the writer
// closes (and replaces) on every commit; they never poll, never hold a lock
// during I/O, and a slow watcher never slows the writer or the others. Past
// the cap, output is dropped and Truncated reports it. A write that fails
// (a full disk) drops that output and is not fatal: the next write tries
// the file again, and once one succeeds a gap record marks what is missing.
type OutputLog struct {
	path string
	cap  int64

	// wmu serializes writers and Finish. It guards f, scratch, cpScratch
	// and gap, and is held during the write to the file. Followers never
	// take it.
	wmu       sync.Mutex
	f         *os.File     // nil once finished
	scratch   []byte       // records being written (batchLocked); nil before the first write and once finished
	cpScratch []checkpoint // their checkpoints
	gap       int64        // bytes dropped by failed writes and not marked by a gap record yet

	// mu guards the committed state below; it is never held during I/O.
	// size, fileSize and index change only with both wmu and mu held, so a
	// writer (holding wmu) may read them without mu.
	mu       sync.Mutex
	size     int64         // logical bytes committed
	fileSize int64         // file bytes committed (whole records)
	index    []checkpoint  // ascending; index[0] is {0, 0}
	capped   bool          // output past the cap was dropped
	werr     error         // the last error writing the file, if one ever failed
	dropped  int64         // output bytes dropped (cap and failed writes)
	finished bool          // no more output will come
	wake     chan struct{} // closed on every commit and on Finish; replaced on commit

	// tail is the batch of records committed last, at file offset
	// tailAt, kept in memory while watchers follow the log (followers >
	// 0), so that a watcher that keeps up reads the bytes just written
	// from memory instead of back from the file (logReader). It is never
	// written again once committed: the writer takes it back as its next
	// batch buffer only when no reader holds it. nil when nobody follows,
	// and once the log is finished. At most one batch (maxWriteBatch plus
	// record headers) per followed log.
	tail      *chunkBuf
	tailAt    int64
	followers int
	// memReads counts reads served from tail (for tests).
	memReads atomic.Int64
}

// CreateOutputLog creates the log file at path (it must not exist) with
// mode 0600. outputCap is the most output bytes kept; 0 means
// DefaultOutputCap.
func CreateOutputLog(path string, outputCap int64) (*OutputLog, error) {
	if outputCap < 0 {
		return nil, fmt.Errorf("output cap %d is negative", outputCap)
	}
	if outputCap == 0 {
		outputCap = DefaultOutputCap
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create output log: %w", err)
	}
	return &OutputLog{
		path:  path,
		cap:   outputCap,
		f:     f,
		index: []checkpoint{{0, 0}},
		wake:  make(chan struct{}),
	}, nil
}

// Path is the log's file.
func (l *OutputLog) Path() string { return l.path }

// Size is the number of output bytes committed so far.
func (l *OutputLog) Size() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// Truncation says why output was dropped, if it was.
func (l *OutputLog) Truncation() Truncation {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.werr != nil:
		return TruncatedWriteError
	case l.capped:
		return TruncatedCap
	}
	return NotTruncated
}

// Dropped is the number of output bytes dropped so far (past the cap, or
// by failed writes); they are not part of Size.
func (l *OutputLog) Dropped() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// Err is the last error writing the file, if a write ever failed (output
// kept again after it does not clear it).
func (l *OutputLog) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.werr
}

// ErrCause is, if a write of the file ever failed, the system's reason for
// the last failure alone ("no space left on device"), without the file's
// path, for clients; "" if no write failed.
func (l *OutputLog) ErrCause() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.werr == nil {
		return ""
	}
	return errorCause(l.werr)
}

// errorCause is the system's reason for err (the errno's text), without
// the paths and operations around it: status is shown to clients, who need
// not learn the server's state directory.
func errorCause(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var c causeError
	if errors.As(err, &c) {
		return string(c)
	}
	return "write failed"
}

// causeError is an error that is its own cause for clients: a write error
// restored from a job's record.
type causeError string

func (e causeError) Error() string { return string(e) }

// Write appends p as output of stream s. Bytes past the cap are dropped
// (and the log marked truncated) without error, so the caller keeps
// draining its pipe. When writing the file fails (ENOSPC, EIO), the bytes
// of that write are dropped, the log is marked truncated (Truncation,
// Err, Dropped) and the error is returned; the log stays usable: the next
// Write tries the file again, and the first that succeeds is preceded by a
// gap record saying how many bytes are missing there. Write is safe to
// call from several goroutines; each call's bytes stay together in the
// order of the calls.
func (l *OutputLog) Write(s Stream, p []byte) error {
	if s != Stdout && s != Stderr {
		return fmt.Errorf("write output log: invalid stream %d", s)
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.f == nil {
		return ErrLogFinished
	}
	var werr error
	for len(p) > 0 {
		room := l.cap - l.size
		if room <= 0 {
			l.mu.Lock()
			l.capped = true
			l.dropped += int64(len(p))
			l.mu.Unlock()
			break
		}
		// One batch of records, written with one write and committed
		// (followers woken) once.
		n := min(int64(len(p)), maxWriteBatch, room)
		rec, size, fileSize, cps := l.batchLocked(s, p[:n])
		p = p[n:]
		if err := l.writeLocked(rec); err != nil {
			l.gap += n
			l.mu.Lock()
			l.dropped += n
			l.mu.Unlock()
			werr = err
			continue
		}
		l.gap = 0
		l.mu.Lock()
		l.index = append(l.index, cps...)
		l.keepTailLocked(rec, l.fileSize)
		l.size, l.fileSize = size, fileSize
		close(l.wake)
		l.wake = make(chan struct{})
		l.mu.Unlock()
	}
	return werr
}

// keepTailLocked makes rec, the batch just written at file offset at (it
// is l.scratch), the log's tail if someone follows the log, and gives the
// writer the previous tail's buffer as its next scratch when no reader
// holds it. l.wmu and l.mu must be held.
func (l *OutputLog) keepTailLocked(rec []byte, at int64) {
	old := l.tail
	l.tail = nil
	if l.followers > 0 {
		l.tail, l.tailAt = &chunkBuf{b: rec}, at
		l.tail.refs.Store(1)
		l.scratch = nil
	}
	if old != nil {
		if !old.shared() && l.scratch == nil {
			l.scratch = old.b[:0]
		}
		old.release()
	}
}

// maxWriteBatch is the most output one write of the file carries: records
// of at most maxRecordData each, one after the other.
const maxWriteBatch = 256 << 10

// batchLocked lays out p, output of stream s, as the records that follow
// the committed ones (after a gap record, if output was dropped before), in
// l.scratch, and returns them, with the committed sizes and the new
// checkpoints once they are written. l.wmu must be held.
func (l *OutputLog) batchLocked(s Stream, p []byte) (rec []byte, size, fileSize int64, cps []checkpoint) {
	records := (len(p) + maxRecordData - 1) / maxRecordData
	// Allocated on the first write (a job that prints nothing holds no
	// buffer), grown to what the largest write needs.
	if need := gapRecordSize + records*recordHeaderSize + len(p); cap(l.scratch) < need {
		l.scratch = make([]byte, 0, max(need, 4<<10))
	}
	rec = l.scratch[:0]
	if l.gap > 0 {
		rec = appendGap(rec, l.gap)
	}
	size = l.size
	last := l.index[len(l.index)-1].logical
	cps = l.cpScratch[:0]
	for len(p) > 0 {
		// A checkpoint is a record's start; the first one's is before the
		// gap, so that a watcher from there gets it.
		if size >= last+indexInterval {
			at := l.fileSize
			if size > l.size {
				at += int64(len(rec))
			}
			cps = append(cps, checkpoint{size, at})
			last = size
		}
		n := min(len(p), maxRecordData)
		rec = append(rec, byte(s), 0, 0, 0, 0)
		binary.BigEndian.PutUint32(rec[len(rec)-4:], uint32(n))
		rec = append(rec, p[:n]...)
		p = p[n:]
		size += int64(n)
	}
	l.cpScratch = cps
	return rec, size, l.fileSize + int64(len(rec)), cps
}

// gapCount decodes the count of a gap record's data: a positive int64, or
// false for a gap no writer makes (a corrupt log).
func gapCount(data []byte) (int64, bool) {
	n := int64(binary.BigEndian.Uint64(data))
	return n, n > 0
}

// appendGap appends a gap record for n dropped bytes to rec.
func appendGap(rec []byte, n int64) []byte {
	rec = append(rec, recordGap, 0, 0, 0, gapDataSize)
	return binary.BigEndian.AppendUint64(rec, uint64(n))
}

// writeLocked writes rec at the end of the committed records. On failure
// it cuts the file back to the committed size (a partial write would
// otherwise hold disk space, and garbage past the last record), records
// the error and returns it. l.wmu must be held.
func (l *OutputLog) writeLocked(rec []byte) error {
	_, err := l.f.WriteAt(rec, l.fileSize)
	if err == nil {
		return nil
	}
	_ = l.f.Truncate(l.fileSize)
	err = fmt.Errorf("write output log: %w", err)
	l.mu.Lock()
	l.werr = err
	l.mu.Unlock()
	return err
}

// Finish ends the log: no more output will come. It closes the writer's
// file and wakes every follower, which return once they delivered the last
// byte. Finish is idempotent. The file stays on disk, and Watch keeps
// working after Finish.
func (l *OutputLog) Finish() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.f == nil {
		return nil
	}
	if l.gap > 0 {
		// Output was dropped at the very end: mark it for the watchers if
		// the disk lets us (status reports it either way).
		if rec := appendGap(l.scratch[:0], l.gap); l.writeLocked(rec) == nil {
			l.gap = 0
			l.mu.Lock()
			l.fileSize += int64(len(rec))
			l.mu.Unlock()
		}
	}
	err := l.f.Close()
	l.f = nil
	l.scratch, l.cpScratch = nil, nil // the log is kept for watchers; its write buffers are not needed
	l.mu.Lock()
	l.finished = true
	if l.tail != nil {
		l.tail.release()
		l.tail = nil
	}
	close(l.wake)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close output log: %w", err)
	}
	return nil
}

// checkpointLocked returns the last checkpoint at or before logical offset
// off. l.mu must be held.
func (l *OutputLog) checkpointLocked(off int64) checkpoint {
	lo, hi := 0, len(l.index) // invariant: index[lo].logical <= off (index[0] is 0)
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if l.index[mid].logical <= off {
			lo = mid
		} else {
			hi = mid
		}
	}
	return l.index[lo]
}

// TailOffset returns the logical offset where the last n lines of the
// output committed so far start, as tail -n counts them: a line ends with
// '\n', and output that does not end with one has a last, unfinished line.
// It is Size() for n == 0 and 0 when the output has n lines or fewer.
// With s == 0, stdout and stderr count together, in the order written;
// with s == Stdout or Stderr only that stream's lines count (the offset is
// still in the combined output: where the stream's last n lines start).
//
// It reads the file backwards, one checkpoint interval at a time, so it
// reads about as much as the last n lines take (plus one interval), not the
// whole log; its memory is one interval's buffer.
func (l *OutputLog) TailOffset(n int64, s Stream) (int64, error) {
	if n < 0 {
		return 0, fmt.Errorf("%w: %d lines is negative", ErrInvalidOffset, n)
	}
	if s != 0 && s != Stdout && s != Stderr {
		return 0, fmt.Errorf("tail: invalid stream %d", s)
	}
	l.mu.Lock()
	size, fileSize, index := l.size, l.fileSize, l.index
	l.mu.Unlock()
	if n == 0 || size == 0 {
		return size, nil
	}
	f, err := os.Open(l.path)
	if err != nil {
		return 0, fmt.Errorf("open output log: %w", err)
	}
	defer f.Close()

	var (
		buf   []byte
		found int64 // counted newlines after the interval being read
		// last is the offset of the last byte of the counted output, once
		// known (-1 before): a newline there ends the last line and starts
		// none after it, so it is not counted.
		last = int64(-1)
	)
	end := checkpoint{size, fileSize}
	for k := len(index) - 1; k >= 0; k-- {
		start := index[k]
		if start.file >= end.file {
			continue // a checkpoint at the very end: nothing after it yet
		}
		buf = slices.Grow(buf[:0], int(end.file-start.file))[:end.file-start.file]
		if _, err := f.ReadAt(buf, start.file); err != nil {
			return 0, fmt.Errorf("read output log: %w", err)
		}
		// First pass: count the interval's newlines and find its last
		// counted byte.
		var count int64
		lastHere, lastIsNewline := int64(-1), false
		err := scanCounted(buf, start, s, func(off int64, c byte) bool {
			if c == '\n' {
				count++
			}
			lastHere, lastIsNewline = off, c == '\n'
			return true
		})
		if err != nil {
			return 0, err
		}
		if last < 0 && lastHere >= 0 {
			last = lastHere
			if lastIsNewline {
				count--
			}
		}
		if found+count < n {
			found += count
			end = start
			continue
		}
		// Second pass: the line starts after the newline that has n-found
		// counted newlines from it to the interval's end.
		target, seen := count-(n-found)+1, int64(0)
		var at int64
		err = scanCounted(buf, start, s, func(off int64, c byte) bool {
			if c == '\n' && off != last {
				if seen++; seen == target {
					at = off + 1
					return false
				}
			}
			return true
		})
		return at, err
	}
	return 0, nil
}

// scanCounted calls fn with the logical offset and value of every byte of
// stream s (both for s == 0) in buf, which holds whole records from
// checkpoint start, in order, until fn returns false. Gap records hold no
// output and are passed over.
func scanCounted(buf []byte, start checkpoint, s Stream, fn func(off int64, c byte) bool) error {
	logical := start.logical
	for r := 0; r < len(buf); {
		if len(buf)-r < recordHeaderSize {
			return fmt.Errorf("%w: short record header at file offset %d", ErrCorruptLog, start.file+int64(r))
		}
		rs, m := Stream(buf[r]), int(binary.BigEndian.Uint32(buf[r+1:r+recordHeaderSize]))
		if rs == recordGap && m == gapDataSize && len(buf)-r >= gapRecordSize {
			r += gapRecordSize // dropped output: no bytes, no logical offset
			continue
		}
		if (rs != Stdout && rs != Stderr) || m == 0 || m > maxRecordData || m > len(buf)-r-recordHeaderSize {
			return fmt.Errorf("%w: bad record header at file offset %d", ErrCorruptLog, start.file+int64(r))
		}
		r += recordHeaderSize
		if s == 0 || rs == s {
			for i, c := range buf[r : r+m] {
				if !fn(logical+int64(i), c) {
					return nil
				}
			}
		}
		r += m
		logical += int64(m)
	}
	return nil
}
