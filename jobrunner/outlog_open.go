package jobrunner

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"time"
)

// openFinishedLog opens the output log an earlier run left at path as a
// finished log (watchable, never written again) and returns it with the
// file's modification time (when output last came). It reads the record
// headers to rebuild the committed size and the checkpoints, and the gap
// records to count what was dropped. What follows the last whole record, a
// record cut short by a crash or bytes that are not a record, is not
// output: it is ignored, and the log is marked truncated (errTornLog) when
// there is such a tail.
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
	var hdr [gapRecordSize]byte
	for l.fileSize < fi.Size() {
		got, err := f.ReadAt(hdr[:], l.fileSize)
		if err != nil && err != io.EOF {
			return nil, time.Time{}, fmt.Errorf("read output log: %w", err)
		}
		if got < recordHeaderSize {
			break
		}
		s, n := Stream(hdr[0]), int64(binary.BigEndian.Uint32(hdr[1:recordHeaderSize]))
		gap := s == recordGap && n == gapDataSize
		if !gap && ((s != Stdout && s != Stderr) || n == 0 || n > maxRecordData) || l.fileSize+recordHeaderSize+n > fi.Size() {
			break
		}
		dropped, ok := gapCount(hdr[recordHeaderSize:gapRecordSize])
		if gap && !ok {
			break
		}
		// A checkpoint may start at a gap: a watcher from there gets it.
		if l.size >= l.index[len(l.index)-1].logical+indexInterval {
			l.index = append(l.index, checkpoint{l.size, l.fileSize})
		}
		if gap {
			l.dropped = min(l.dropped+dropped, math.MaxInt64/2) // a file's sum cannot overflow
		} else {
			l.size += n
		}
		l.fileSize += recordHeaderSize + n
	}
	if l.fileSize < fi.Size() {
		l.werr = errTornLog
	}
	return l, fi.ModTime(), nil
}

// errTornLog marks a log whose end was lost: a record cut short, or fewer
// bytes than its job's record says it held.
var errTornLog = causeError("the end of the output log was lost when the server stopped")

// restoreTruncation sets what a job's record says was dropped from its log,
// which the file alone does not tell (output past the cap, or dropped
// while the disk was full until the end): why is the record's
// Truncation.String(), truncated its older yes-or-no.
func (l *OutputLog) restoreTruncation(why string, dropped int64, cause string, truncated bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropped = max(l.dropped, dropped)
	switch {
	case why == TruncatedWriteError.String():
		if l.werr == nil {
			l.werr = causeError(cmp.Or(cause, "write failed"))
		}
	case truncated: // the cap, or a record from before reasons were kept
		l.capped = true
	}
}

// diskBytes is the size of the log's committed records on disk, what
// retention counts.
func (l *OutputLog) diskBytes() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fileSize
}
