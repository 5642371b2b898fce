package jobrunner

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Following a log is two parts, as in moby's loggerutils (a Decoder apart
// from the follow loop): recordDecoder turns the file's bytes into pieces
// of output and gaps and knows nothing of offsets, chunks or waiting;
// WatchChunks skips to the requested offset, merges the pieces into chunks
// and waits for more output.

// DefaultMaxChunk is the most data WatchChunks hands over in one chunk when
// the caller does not say.
const DefaultMaxChunk = 32 << 10

// WatchChunks calls fn with every output byte from logical offset from on,
// in order, then follows the log live until it is finished and every byte
// was delivered; then it returns nil. It returns ctx.Err() when ctx ends,
// fn's error when fn fails, and an error wrapping ErrInvalidOffset when from
// is negative or past the end of a finished log (for a log still being
// written, it waits until output reaches from). A file that does not hold
// whole, well-formed records up to its committed size (changed behind the
// log's back) ends the watch with an error wrapping ErrCorruptLog, after the
// output of the records before the bad one. fn runs in the caller's
// goroutine; while it blocks, only this watcher waits.
//
// Output is handed over in chunks of at most maxChunk bytes (<= 0 means
// DefaultMaxChunk), as large as possible whatever the writes it came from:
// consecutive output of one stream is merged into one chunk, which ends
// only where the stream changes, at maxChunk bytes, at a gap (handed over
// as a chunk of its own), or where the output committed so far ends (a
// chunk is never held back to wait for more output). A chunk's Data is
// only valid during fn. A follower holds followBufferSize plus maxChunk
// bytes.
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
	l.followers++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.followers--
		l.mu.Unlock()
	}()

	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("open output log: %w", err)
	}
	defer f.Close()
	dec := &recordDecoder{f: logReader{l, f}, buf: make([]byte, followBufferSize), pos: start.file}
	m := &chunkMerger{size: maxChunk, fn: fn}
	defer m.close()
	logical := start.logical // logical offset of the next piece
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		l.mu.Lock()
		committed, size, finished, wake := l.fileSize, l.size, l.finished, l.wake
		l.mu.Unlock()

		p, err := dec.next(committed)
		switch {
		case errors.Is(err, io.EOF):
			// Everything committed was read: hand over what is pending
			// before waiting for more.
			if err := m.flush(ctx); err != nil {
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
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		case errors.Is(err, ErrCorruptLog):
			// The output of the good records before the bad one first.
			if ferr := m.flush(ctx); ferr != nil {
				return ferr
			}
			return err
		case err != nil:
			return err
		}

		if p.dropped > 0 {
			// A gap at from is delivered: a watcher resuming there may see
			// it twice, never miss it.
			if logical < from {
				continue
			}
			if err := m.gap(ctx, logical, p.dropped); err != nil {
				return err
			}
			continue
		}
		at, data := logical, p.data
		logical += int64(len(data))
		if logical <= from {
			continue // before the requested offset
		}
		if at < from {
			data = data[from-at:]
			at = from
		}
		if err := m.add(ctx, p.stream, at, data); err != nil {
			return err
		}
	}
}

// chunkMerger merges consecutive pieces of output of one stream into
// chunks of at most size bytes and hands them to fn. It merges into a
// chunkBuf: the same one chunk after chunk, unless fn retained a chunk's
// (Chunk.Retain), and then a fresh one from the pool.
type chunkMerger struct {
	size   int
	cb     *chunkBuf // the pending chunk's buffer; nil until needed
	stream Stream    // the pending chunk's stream
	offset int64     // its logical offset
	fn     func(Chunk) error
}

// pending is the pending chunk's data so far.
func (m *chunkMerger) pending() int {
	if m.cb == nil {
		return 0
	}
	return len(m.cb.b)
}

// add appends data, output of stream s at logical offset at (right after
// the pending chunk's end, if there is one), handing over every chunk that
// fills up or ends where the stream changes.
func (m *chunkMerger) add(ctx context.Context, s Stream, at int64, data []byte) error {
	if m.pending() > 0 && m.stream != s {
		if err := m.flush(ctx); err != nil {
			return err
		}
	}
	for len(data) > 0 {
		if m.cb == nil {
			m.cb = newChunkBuf(m.size)
		}
		if len(m.cb.b) == 0 {
			m.stream, m.offset = s, at
		}
		c := min(m.size-len(m.cb.b), len(data))
		m.cb.b = append(m.cb.b, data[:c]...)
		data = data[c:]
		at += int64(c)
		if len(m.cb.b) == m.size {
			if err := m.flush(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// gap hands over the pending chunk, then a gap of dropped bytes at logical
// offset at.
func (m *chunkMerger) gap(ctx context.Context, at, dropped int64) error {
	if err := m.flush(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return m.fn(Chunk{Offset: at, Dropped: dropped})
}

// flush hands over the pending chunk, if there is one, unless ctx ended.
func (m *chunkMerger) flush(ctx context.Context) error {
	if m.pending() == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cb := m.cb
	err := m.fn(Chunk{Stream: m.stream, Offset: m.offset, Data: cb.b, buf: cb})
	if cb.shared() {
		// fn kept the chunk: merge the next one elsewhere.
		cb.release()
		m.cb = nil
	} else {
		cb.b = cb.b[:0]
	}
	return err
}

// close releases the merger's buffer.
func (m *chunkMerger) close() {
	if m.cb != nil {
		m.cb.release()
		m.cb = nil
	}
}

// logReader reads a log's committed bytes for a follower: from the tail in
// memory when it holds them all (a watcher that keeps up), else from the
// file. A reader holds the tail only while it copies it, so a stuck watcher
// pins nothing.
type logReader struct {
	l *OutputLog
	f *os.File
}

func (r logReader) ReadAt(p []byte, off int64) (int, error) {
	l := r.l
	l.mu.Lock()
	t, at := l.tail, l.tailAt
	if t == nil || off < at || off+int64(len(p)) > at+int64(len(t.b)) {
		l.mu.Unlock()
		return r.f.ReadAt(p, off)
	}
	t.refs.Add(1)
	l.mu.Unlock()
	n := copy(p, t.b[off-at:])
	t.release()
	l.memReads.Add(1)
	return n, nil
}

// recordDecoder reads a log file's records from a record boundary on,
// through one fixed buffer, and returns their contents one piece at a
// time: output (a record's data, or the part of it the buffer holds) or a
// gap. It reads only below the limit each call gives (the committed size),
// so it never sees a record still being written.
type recordDecoder struct {
	f      io.ReaderAt
	buf    []byte
	r, end int   // buf[r:end] was read and not decoded yet
	pos    int64 // file offset of buf[r]

	stream    Stream // stream of the record being decoded
	remaining int64  // its data bytes not returned yet
}

// piece is what recordDecoder.next returns: output of stream (data, valid
// until the next call), or a gap of dropped bytes.
type piece struct {
	stream  Stream
	data    []byte
	dropped int64
}

// next returns the next piece below file offset limit. It returns io.EOF
// when everything below limit was decoded and limit is a record boundary,
// an error wrapping ErrCorruptLog when the bytes below limit are not whole,
// well-formed records, and one saying so when reading fails.
func (d *recordDecoder) next(limit int64) (piece, error) {
	for {
		avail := d.end - d.r
		if d.remaining > 0 && avail > 0 {
			k := int(min(d.remaining, int64(avail)))
			p := piece{stream: d.stream, data: d.buf[d.r : d.r+k]}
			d.r += k
			d.pos += int64(k)
			d.remaining -= int64(k)
			return p, nil
		}
		if d.remaining == 0 && avail >= recordHeaderSize {
			s := Stream(d.buf[d.r])
			n := int64(binary.BigEndian.Uint32(d.buf[d.r+1 : d.r+recordHeaderSize]))
			switch {
			case s == recordGap && n == gapDataSize:
				if avail >= gapRecordSize {
					dropped, ok := gapCount(d.buf[d.r+recordHeaderSize : d.r+gapRecordSize])
					if !ok {
						return piece{}, d.corrupt("bad gap record")
					}
					d.r += gapRecordSize
					d.pos += gapRecordSize
					return piece{dropped: dropped}, nil
				}
				// The gap continues past the buffer: read on.
			case (s != Stdout && s != Stderr) || n == 0 || n > maxRecordData:
				return piece{}, d.corrupt("bad record header")
			default:
				d.stream, d.remaining = s, n
				d.r += recordHeaderSize
				d.pos += recordHeaderSize
				continue
			}
		}

		// More bytes are needed, from the file offset of buf[end] on.
		off := d.pos + int64(avail)
		if off >= limit {
			switch {
			case d.remaining > 0:
				return piece{}, d.corrupt("record cut short")
			case avail == 0:
				return piece{}, io.EOF
			case avail < recordHeaderSize:
				// Not a header continued past the buffer but one cut
				// short by the committed end, which no read completes.
				return piece{}, d.corrupt("record header cut short")
			default:
				return piece{}, d.corrupt("gap record cut short")
			}
		}
		if d.r > 0 {
			copy(d.buf, d.buf[d.r:d.end])
			d.r, d.end = 0, avail
		}
		want := int(min(int64(len(d.buf)-d.end), limit-off))
		n, err := d.f.ReadAt(d.buf[d.end:d.end+want], off)
		d.end += n
		if n < want {
			return piece{}, fmt.Errorf("read output log: %w", err)
		}
	}
}

// corrupt is the error for bad bytes at the decoder's position.
func (d *recordDecoder) corrupt(what string) error {
	return fmt.Errorf("%w: %s at file offset %d", ErrCorruptLog, what, d.pos)
}
