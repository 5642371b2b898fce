package jobrunner

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"
)

// openFinishedLog opens the output log an earlier run left at path as a
// finished log (watchable, never written again) and returns it with the
// file's modification time (when output last came). It reads the record
// headers to rebuild the committed size and the checkpoints. What follows
// the last whole record, a record cut short by a crash or bytes that are
// not a record, is not output: it is ignored, and the log is marked
// truncated when there is such a tail.
func openFinishedLog(path string, outputCap int64) (*OutputLog, time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("open output log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("open output log: %w", err)
	}
	if outputCap <= 0 {
		outputCap = DefaultOutputCap
	}
	l := &OutputLog{
		path:     path,
		cap:      outputCap,
		index:    []checkpoint{{0, 0}},
		finished: true,
		wake:     make(chan struct{}),
	}
	close(l.wake)
	var hdr [recordHeaderSize]byte
	for l.fileSize < fi.Size() {
		if _, err := f.ReadAt(hdr[:], l.fileSize); err != nil {
			if err != io.EOF {
				return nil, time.Time{}, fmt.Errorf("read output log: %w", err)
			}
			break
		}
		s, n := Stream(hdr[0]), int64(binary.BigEndian.Uint32(hdr[1:]))
		if (s != Stdout && s != Stderr) || n == 0 || n > maxRecordData || l.fileSize+recordHeaderSize+n > fi.Size() {
			break
		}
		if l.size >= l.index[len(l.index)-1].logical+indexInterval {
			l.index = append(l.index, checkpoint{l.size, l.fileSize})
		}
		l.size += n
		l.fileSize += recordHeaderSize + n
	}
	if l.fileSize < fi.Size() {
		l.truncated = true
	}
	return l, fi.ModTime(), nil
}

// diskBytes is the size of the log's committed records on disk, what
// retention counts.
func (l *OutputLog) diskBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fileSize
}
