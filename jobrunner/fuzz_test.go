package jobrunner

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Fuzz target of the output log's record decoding. `make test` runs its
// seed corpus (testdata/fuzz/FuzzOutputLogDecode) as an ordinary test;
// `make fuzz` fuzzes it for a while.

// FuzzOutputLogDecode decodes a log file two ways.
//
// As a live log: data is the committed part of a finished log's file,
// followed by tail, bytes past the committed size that a follower must
// never read (the writer's record in progress). WatchChunks, from offset
// from in chunks of at most maxChunk bytes, must hand over exactly what a
// plain decoding of data says, in order, each byte with its stream, in
// chunks that are split only where the stream changes, the chunk is full
// or a gap record (output dropped there) comes, the gaps as chunks of their
// own;
// and return ErrCorruptLog after the last good record when data does not
// hold well-formed records, in bounded time.
//
// As the file an earlier run left (data and tail together, as a crash may
// leave it): openFinishedLog must take exactly its whole well-formed
// records as the output, mark the log truncated when anything follows them,
// and WatchChunks must then hand over that output and return nil.
func FuzzOutputLogDecode(f *testing.F) {
	f.Add(logRecord(Stdout, "hello\n"), logRecord(Stdout, "not yet committed"), uint32(0), uint16(0))
	f.Add(append(logRecord(Stdout, "out"), logRecord(Stderr, "err")...), []byte{}, uint32(2), uint16(1))
	f.Add(append(logRecord(Stdout, "good"), 1, 0), []byte{}, uint32(0), uint16(0))
	f.Add(append(logRecord(Stdout, "good"), logRecord(3, "bad")...), []byte{}, uint32(0), uint16(1000))
	gap := binary.BigEndian.AppendUint64([]byte{recordGap, 0, 0, 0, gapDataSize}, 7)
	f.Add(append(append(logRecord(Stdout, "before"), gap...), logRecord(Stderr, "after")...), []byte{}, uint32(6), uint16(3))
	f.Add(append(logRecord(Stdout, "good"), gap[:9]...), []byte{}, uint32(0), uint16(0))
	f.Fuzz(func(t *testing.T, data, tail []byte, from uint32, maxChunk uint16) {
		mc := int(maxChunk)%(64<<10) + 1
		path := filepath.Join(t.TempDir(), "job.log")
		file := append(append([]byte(nil), data...), tail...)
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}

		// The live log, committed up to len(data).
		dec := decodeRecords(data)
		start := int64(from) % int64(len(dec.out)+1)
		l := &OutputLog{path: path, cap: DefaultOutputCap, size: int64(len(dec.out)), fileSize: int64(len(data)),
			index: []checkpoint{{0, 0}}, finished: true, wake: make(chan struct{})}
		err := watchAndCheck(t, l, start, mc, dec)
		switch {
		case dec.corrupt && !errors.Is(err, ErrCorruptLog):
			t.Fatalf("WatchChunks of a corrupt log: %v, want ErrCorruptLog", err)
		case !dec.corrupt && err != nil:
			t.Fatalf("WatchChunks: %v", err)
		}

		// The file reopened after a restart.
		whole := decodeRecords(file)
		whole.out, whole.streams = whole.out[:whole.wholeOut], whole.streams[:whole.wholeOut]
		ol, _, err := openFinishedLog(path, 0)
		if err != nil {
			t.Fatalf("openFinishedLog: %v", err)
		}
		if ol.Size() != int64(whole.wholeOut) || ol.diskBytes() != int64(whole.wholeFile) || (ol.Truncation() != NotTruncated) != (whole.wholeFile < len(file)) {
			t.Fatalf("openFinishedLog: size %d, %d bytes of records, truncated %v; want %d, %d, %v",
				ol.Size(), ol.diskBytes(), (ol.Truncation() != NotTruncated), whole.wholeOut, whole.wholeFile, whole.wholeFile < len(file))
		}
		whole.corrupt = false // what is past the whole records is not output
		if err := watchAndCheck(t, ol, int64(from)%int64(whole.wholeOut+1), mc, whole); err != nil {
			t.Fatalf("WatchChunks of a reopened log: %v", err)
		}
	})
}

// watchAndCheck runs l.WatchChunks from start with chunks of at most mc
// bytes and checks what it hands over against want; it returns
// WatchChunks' error.
func watchAndCheck(t *testing.T, l *OutputLog, start int64, mc int, want decoded) error {
	t.Helper()
	var got []byte
	next := start
	var prev Chunk
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := l.WatchChunks(ctx, start, mc, func(c Chunk) error {
		if c.Dropped != 0 {
			// A gap: no data, at the next offset; it ends the chunk before.
			if len(c.Data) != 0 || c.Offset != next || c.Dropped < 0 {
				t.Fatalf("gap %+v at offset %d", c, next)
			}
			prev = Chunk{}
			return nil
		}
		switch {
		case len(c.Data) == 0 || len(c.Data) > mc:
			t.Fatalf("chunk of %d bytes (max %d)", len(c.Data), mc)
		case c.Offset != next:
			t.Fatalf("chunk at offset %d, want %d", c.Offset, next)
		case c.Offset+int64(len(c.Data)) > int64(len(want.out)):
			t.Fatalf("chunk [%d, %d) past the output's end %d", c.Offset, c.Offset+int64(len(c.Data)), len(want.out))
		case prev.Data != nil && prev.Stream == c.Stream && len(prev.Data) < mc:
			t.Fatalf("a %d-byte chunk of %v, not full, is followed by another of %v", len(prev.Data), prev.Stream, c.Stream)
		}
		for i := range c.Data {
			if s := want.streams[c.Offset+int64(i)]; s != c.Stream {
				t.Fatalf("byte %d is handed over as %v, written to %v", c.Offset+int64(i), c.Stream, s)
			}
		}
		got = append(got, c.Data...)
		next += int64(len(c.Data))
		prev = Chunk{Stream: c.Stream, Data: c.Data[:len(c.Data):len(c.Data)]}
		return nil
	})
	if !bytes.Equal(got, want.out[start:]) {
		t.Fatalf("WatchChunks from %d handed over %q, want %q", start, got, want.out[start:])
	}
	return err
}

// logRecord encodes one record as OutputLog.Write does.
func logRecord(s Stream, data string) []byte {
	rec := make([]byte, recordHeaderSize, recordHeaderSize+len(data))
	rec[0] = byte(s)
	binary.BigEndian.PutUint32(rec[1:], uint32(len(data)))
	return append(rec, data...)
}

// decoded is a log file decoded by decodeRecords.
type decoded struct {
	out       []byte   // output bytes of the well-formed records, and of a last one cut short
	streams   []Stream // the stream of each byte of out
	wholeOut  int      // the bytes of out from whole records
	wholeFile int      // the file bytes of those whole records
	corrupt   bool     // something other than whole records follows them
}

// decodeRecords is the log's layout decoded in the plainest way, apart from
// WatchChunks and openFinishedLog.
func decodeRecords(data []byte) decoded {
	var d decoded
	for d.wholeFile < len(data) {
		rest := data[d.wholeFile:]
		if len(rest) < recordHeaderSize {
			d.corrupt = true
			return d
		}
		s, n := Stream(rest[0]), binary.BigEndian.Uint32(rest[1:recordHeaderSize])
		if s == recordGap && n == gapDataSize {
			// A gap: no output. Cut short, or a count no writer makes
			// (0, or past int64), the log is corrupt.
			if len(rest) < gapRecordSize || binary.BigEndian.Uint64(rest[recordHeaderSize:gapRecordSize])-1 >= math.MaxInt64 {
				d.corrupt = true
				return d
			}
			d.wholeFile += gapRecordSize
			continue
		}
		if s != Stdout && s != Stderr || n == 0 || n > maxRecordData {
			d.corrupt = true
			return d
		}
		// A record cut short by the end: what is there is output to a
		// follower (which hands bytes over as it reads them), then the
		// log is corrupt.
		body := rest[recordHeaderSize:min(len(rest), recordHeaderSize+int(n))]
		d.out = append(d.out, body...)
		for range body {
			d.streams = append(d.streams, s)
		}
		if len(body) < int(n) {
			d.corrupt = true
			return d
		}
		d.wholeOut += len(body)
		d.wholeFile += recordHeaderSize + len(body)
	}
	return d
}
