package jobrunner

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
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
	// Data is valid only during the callback it is passed to; copy it to
	// keep it.
	Data []byte
	// Dropped, when not zero, marks a gap: that many bytes of output were
	// dropped at Offset because the log could not be written (a full
	// disk). Data is empty then.
	Dropped int64
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
	// followBufferSize is how much a follower reads from the file at least
	// each time; its buffer is this plus its largest chunk, the only
	// memory a follower holds.
	followBufferSize = 32 << 10
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

	// wmu serializes writers and Finish. It guards f, scratch and gap, and
	// is held during the write to the file. Followers never take it.
	wmu     sync.Mutex
	f       *os.File // nil once finished
	scratch []byte   // one gap and one record being written; nil once finished
	gap     int64    // bytes dropped by failed writes and not marked by a gap record yet

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
		path:    path,
		cap:     outputCap,
		f:       f,
		scratch: make([]byte, gapRecordSize+recordHeaderSize+maxRecordData),
		index:   []checkpoint{{0, 0}},
		wake:    make(chan struct{}),
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

// Truncated reports whether output was dropped: the cap was reached, or
// writing the file failed (then Err says why).
func (l *OutputLog) Truncated() bool {
	return l.Truncation() != NotTruncated
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

// ErrCause is Err for clients: the system's reason alone ("no space left
// on device"), without the file's path; "" if no write failed.
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

// Finished reports whether Finish was called.
func (l *OutputLog) Finished() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.finished
}

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
		n := min(int64(len(p)), maxRecordData, room)
		rec := l.scratch[:0]
		if l.gap > 0 {
			rec = appendGap(rec, l.gap)
		}
		rec = append(rec, byte(s), 0, 0, 0, 0)
		binary.BigEndian.PutUint32(rec[len(rec)-4:], uint32(n))
		rec = append(rec, p[:n]...)
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
		if l.size >= l.index[len(l.index)-1].logical+indexInterval {
			l.index = append(l.index, checkpoint{l.size, l.fileSize})
		}
		l.size += n
		l.fileSize += int64(len(rec))
		close(l.wake)
		l.wake = make(chan struct{})
		l.mu.Unlock()
	}
	return werr
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

// Writer returns an io.Writer that writes to stream s of the log.
func (l *OutputLog) Writer(s Stream) io.Writer { return streamWriter{l, s} }

type streamWriter struct {
	l *OutputLog
	s Stream
}

func (w streamWriter) Write(p []byte) (int, error) {
	if err := w.l.Write(w.s, p); err != nil {
		return 0, err
	}
	return len(p), nil
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
	l.scratch = nil // the log is kept for watchers; its write buffer is not needed
	l.mu.Lock()
	l.finished = true
	close(l.wake)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("close output log: %w", err)
	}
	return nil
}

// DefaultMaxChunk is the most data Watch hands over in one chunk.
const DefaultMaxChunk = 32 << 10

// Watch calls fn with every output byte from logical offset from on, in
// order, then follows the log live until it is finished and every byte was
// delivered; then it returns nil. It returns ctx.Err() when ctx ends, fn's
// error when fn fails, and an error wrapping ErrInvalidOffset when from is
// negative or past the end of a finished log (for a log still being
// written, Watch waits until output reaches from). A file that does not
// hold whole, well-formed records up to its committed size (changed behind
// the log's back) ends the watch with an error wrapping ErrCorruptLog,
// after the output of the records before the bad one. A chunk's Data is only
// valid during fn. fn runs in the caller's goroutine; while it blocks,
// only this watcher waits. Chunks are at most DefaultMaxChunk bytes; see
// WatchChunks.
func (l *OutputLog) Watch(ctx context.Context, from int64, fn func(Chunk) error) error {
	return l.WatchChunks(ctx, from, DefaultMaxChunk, fn)
}

// WatchChunks is Watch with chunks of at most maxChunk bytes (<= 0 means
// DefaultMaxChunk). Output is handed over in chunks as large as possible,
// whatever the writes it came from: consecutive output of one stream is
// merged into one chunk, which ends only where the stream changes, at
// maxChunk bytes, or where the output committed so far ends (a chunk is
// never held back to wait for more output). A follower holds one buffer of
// maxChunk plus 32 KiB.
func (l *OutputLog) WatchChunks(ctx context.Context, from int64, maxChunk int, fn func(Chunk) error) error {
	if from < 0 {
		return fmt.Errorf("%w: %d is negative", ErrInvalidOffset, from)
	}
	if maxChunk <= 0 {
		maxChunk = DefaultMaxChunk
	}
	l.mu.Lock()
	if l.finished && from > l.size {
		size := l.size
		l.mu.Unlock()
		return fmt.Errorf("%w: %d is past the end of the output (%d bytes)", ErrInvalidOffset, from, size)
	}
	start := l.checkpointLocked(from)
	l.mu.Unlock()

	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("open output log: %w", err)
	}
	defer f.Close()

	var (
		// buf holds the pending chunk's data at buf[:w], then the bytes
		// read from the file. Each piece of output is moved down to the
		// end of the pending chunk, dropping the record headers, so the
		// pending chunk never overtakes the unread bytes.
		buf       = make([]byte, maxChunk+followBufferSize)
		w         int             // length of the pending chunk
		cStream   Stream          // its stream
		cOffset   int64           // its logical offset
		pos       = start.file    // file offset of the next unread byte
		logical   = start.logical // logical offset of the next output byte
		stream    Stream          // stream of the current record
		remaining int64           // bytes of the current record not read yet
	)
	flush := func() error {
		if w == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n := w
		w = 0
		return fn(Chunk{Stream: cStream, Offset: cOffset, Data: buf[:n]})
	}
	// corrupt hands over the output of the good records before the bad
	// one, then reports it.
	corrupt := func(what string) error {
		if err := flush(); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s at file offset %d", ErrCorruptLog, what, pos)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.mu.Lock()
		committed, size, finished, wake := l.fileSize, l.size, l.finished, l.wake
		l.mu.Unlock()
		if pos >= committed {
			// The committed part of the file ends at a record boundary:
			// a record cut short was changed behind the log's back.
			if remaining > 0 {
				return corrupt("record cut short")
			}
			// Everything committed was read: hand over what is pending
			// before waiting for more.
			if err := flush(); err != nil {
				return err
			}
			if finished {
				if from > size {
					return fmt.Errorf("%w: %d is past the end of the output (%d bytes)", ErrInvalidOffset, from, size)
				}
				return nil
			}
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}

		want := min(int64(len(buf)-w), committed-pos)
		n, err := f.ReadAt(buf[w:int64(w)+want], pos)
		if int64(n) < want {
			return fmt.Errorf("read output log: %w", err)
		}
		for r, end := w, w+n; r < end; {
			if remaining == 0 {
				if end-r < recordHeaderSize {
					if pos+int64(end-r) >= committed {
						// Not a header continued past the buffer (read it
						// again) but one cut short by the committed end,
						// which no read would ever complete.
						return corrupt("record header cut short")
					}
					break // the header continues past the buffer: read it again
				}
				stream = Stream(buf[r])
				remaining = int64(binary.BigEndian.Uint32(buf[r+1 : r+recordHeaderSize]))
				if stream == recordGap && remaining == gapDataSize {
					if end-r < gapRecordSize {
						remaining = 0
						if pos+int64(end-r) >= committed {
							return corrupt("gap record cut short")
						}
						break // the gap continues past the buffer: read it again
					}
					dropped, ok := gapCount(buf[r+recordHeaderSize : r+gapRecordSize])
					if !ok {
						remaining = 0
						return corrupt("bad gap record")
					}
					remaining = 0
					r += gapRecordSize
					pos += gapRecordSize
					// A gap at from is delivered: a watcher resuming there
					// may see it twice, never miss it.
					if logical < from {
						continue
					}
					if err := flush(); err != nil {
						return err
					}
					if err := ctx.Err(); err != nil {
						return err
					}
					if err := fn(Chunk{Offset: logical, Dropped: dropped}); err != nil {
						return err
					}
					continue
				}
				if (stream != Stdout && stream != Stderr) || remaining == 0 || remaining > maxRecordData {
					return corrupt("bad record header")
				}
				r += recordHeaderSize
				pos += recordHeaderSize
				continue
			}
			k := int(min(remaining, int64(end-r)))
			data := r // the piece is buf[data:r]
			r += k
			pos += int64(k)
			remaining -= int64(k)
			at := logical
			logical += int64(k)
			if logical <= from {
				continue // before the requested offset
			}
			if at < from {
				data += int(from - at)
				at = from
			}
			if w > 0 && cStream != stream {
				if err := flush(); err != nil {
					return err
				}
			}
			for data < r {
				if w == 0 {
					cStream, cOffset = stream, at
				}
				c := min(maxChunk-w, r-data)
				copy(buf[w:w+c], buf[data:data+c])
				w += c
				data += c
				at += int64(c)
				if w == maxChunk {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
	}
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
