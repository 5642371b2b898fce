package jobrunner

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Fuzz target of the output log's record decoding. `make test` runs its
// seed corpus (testdata/fuzz/FuzzOutputLogDecode) as an ordinary test;
// `make fuzz` fuzzes it for a while.

// FuzzOutputLogDecode makes data the committed part of a finished log's
// file, followed by tail, bytes past the committed size that a follower
// must never read (the writer's record in progress). WatchChunks, from
// offset from in chunks of at most maxChunk bytes, must hand over exactly
// what a plain decoding of data says, in order, each byte with its stream,
// in chunks that are split only where the stream changes or the chunk is
// full; and return ErrCorruptLog after the last good record when data does
// not hold well-formed records, in bounded time.
func FuzzOutputLogDecode(f *testing.F) {
	f.Add(record(Stdout, "hello\n"), record(Stdout, "not yet committed"), uint32(0), uint16(0))
	f.Add(append(record(Stdout, "out"), record(Stderr, "err")...), []byte{}, uint32(2), uint16(1))
	f.Add(append(record(Stdout, "good"), 1, 0), []byte{}, uint32(0), uint16(0))
	f.Add(append(record(Stdout, "good"), record(3, "bad")...), []byte{}, uint32(0), uint16(1000))
	f.Fuzz(func(t *testing.T, data, tail []byte, from uint32, maxChunk uint16) {
		want, streams, corrupt := decodeRecords(data)
		start := int64(from) % int64(len(want)+1)
		l := finishedLog(t, data, tail, int64(len(want)))
		mc := int(maxChunk)%(64<<10) + 1

		var got []byte
		next := start
		var prev Chunk
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := l.WatchChunks(ctx, start, mc, func(c Chunk) error {
			switch {
			case len(c.Data) == 0 || len(c.Data) > mc:
				t.Fatalf("chunk of %d bytes (max %d)", len(c.Data), mc)
			case c.Offset != next:
				t.Fatalf("chunk at offset %d, want %d", c.Offset, next)
			case prev.Data != nil && prev.Stream == c.Stream && len(prev.Data) < mc:
				t.Fatalf("a %d-byte chunk of %v, not full, is followed by another of %v", len(prev.Data), prev.Stream, c.Stream)
			}
			for i := range c.Data {
				if s := streams[c.Offset+int64(i)]; s != c.Stream {
					t.Fatalf("byte %d is handed over as %v, written to %v", c.Offset+int64(i), c.Stream, s)
				}
			}
			got = append(got, c.Data...)
			next += int64(len(c.Data))
			prev = Chunk{Stream: c.Stream, Data: c.Data[:len(c.Data):len(c.Data)]}
			return nil
		})
		if !bytes.Equal(got, want[start:]) {
			t.Fatalf("WatchChunks from %d handed over %q, want %q", start, got, want[start:])
		}
		switch {
		case corrupt && !errors.Is(err, ErrCorruptLog):
			t.Fatalf("WatchChunks of a corrupt log: %v, want ErrCorruptLog", err)
		case !corrupt && err != nil:
			t.Fatalf("WatchChunks: %v", err)
		}
	})
}

// record encodes one record as OutputLog.Write does.
func record(s Stream, data string) []byte {
	rec := make([]byte, recordHeaderSize, recordHeaderSize+len(data))
	rec[0] = byte(s)
	binary.BigEndian.PutUint32(rec[1:], uint32(len(data)))
	return append(rec, data...)
}

// decodeRecords is the log's layout decoded in the plainest way, apart from
// WatchChunks: the output bytes of the well-formed records at the start of
// data (and of a last one cut short), the stream of each byte, and whether
// anything else follows them.
func decodeRecords(data []byte) (out []byte, streams []Stream, corrupt bool) {
	for len(data) > 0 {
		if len(data) < recordHeaderSize {
			return out, streams, true
		}
		s, n := Stream(data[0]), binary.BigEndian.Uint32(data[1:recordHeaderSize])
		if s != Stdout && s != Stderr || n == 0 || n > maxRecordData {
			return out, streams, true
		}
		// A record cut short by the end: what is there is output (a
		// follower hands bytes over as it reads them), then the log is
		// corrupt.
		body := data[recordHeaderSize:min(len(data), recordHeaderSize+int(n))]
		out = append(out, body...)
		for range body {
			streams = append(streams, s)
		}
		if len(body) < int(n) {
			return out, streams, true
		}
		data = data[recordHeaderSize+int(n):]
	}
	return out, streams, false
}

// finishedLog is a finished OutputLog whose file holds data, committed, and
// then tail, which is not; size is its output size.
func finishedLog(t *testing.T, data, tail []byte, size int64) *OutputLog {
	path := filepath.Join(t.TempDir(), "job.log")
	if err := os.WriteFile(path, append(append([]byte(nil), data...), tail...), 0o600); err != nil {
		t.Fatal(err)
	}
	return &OutputLog{
		path:     path,
		cap:      DefaultOutputCap,
		size:     size,
		fileSize: int64(len(data)),
		index:    []checkpoint{{0, 0}},
		finished: true,
		wake:     make(chan struct{}),
	}
}
