package jobrunner

import (
	"errors"
	"os"
	"sync"
)

// spareJobs is how many new jobs' files the Runner keeps made ahead.
// Creating a file can be the dearest step of a start outside the sandbox,
// and a job needs two: its log and its record. On ext4 without a journal
// (the bench machines' disks) each took 0.25-0.6 ms of CPU in a busy
// directory (/tmp) against 15 us elsewhere: the inode allocator steps over
// every inode of the block group freed in the last minutes, one by one
// (recently_deleted in fs/ext4/ialloc.c), and a busy host frees many.
//
// A start takes a spare and wakes the refill, which makes the next one
// while the job starts; a burst of starts larger than the spares (eight,
// as many as the bench's concurrent callers; each holds two open files)
// makes its files itself, as every start used to. The refill is woken once
// the start has written its record: until then its file creations would
// hold the state directory's lock against the record's rename; after,
// they overlap the sandbox's start, where the server mostly waits for the
// shim.
const spareJobs = 8

// jobFiles are the files a job starts with, made before its id is handed
// out: the id, its output log (created empty, open for writing) and its
// record's temporary file (ID.json.tmp, created empty and open), which the
// start record is written into and renamed to ID.json. Until a Start takes
// them they are a spare, whose log is ID.log.tmp (renamed to ID.log then):
// nothing in the state directory looks like a job's files but a job's.
// loadRecords removes the spares an earlier run left.
type jobFiles struct {
	id  string
	log *OutputLog
	rec *os.File
}

// spares is the Runner's stock of jobFiles and the goroutine that refills
// it.
type spares struct {
	// mu guards files.
	mu    sync.Mutex
	files []jobFiles
	// wake (capacity 1) asks the refill for more; stop ends it, and done
	// is closed when it has returned.
	wake, stop, done chan struct{}
	stopOnce         sync.Once
}

func newSpares() *spares {
	return &spares{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// makeJobFiles creates the files of a new job with a new id; a spare's
// log under its spare name.
func (r *Runner) makeJobFiles(spare bool) (jobFiles, error) {
	id, err := newID()
	if err != nil {
		return jobFiles{}, err
	}
	path := r.logPath(id)
	if spare {
		path += tmpSuffix
	}
	log, err := CreateOutputLog(path, r.outputCap)
	if err != nil {
		return jobFiles{}, err
	}
	rec, err := createTemp(r.recordPath(id))
	if err != nil {
		r.discardLog(log)
		return jobFiles{}, err
	}
	return jobFiles{id: id, log: log, rec: rec}, nil
}

// takeJobFiles returns the files of a new job: a spare if there is one,
// else made now (refillSpares makes more). Either way no job starts while the state directory has no
// free inode (ENOSPC): a spare would give the job its log, but the record
// of its end needs a new file too (writeFileAtomic).
func (r *Runner) takeJobFiles() (jobFiles, error) {
	if err := stateDirInodesLeft(r.stateDir); err != nil {
		return jobFiles{}, err
	}
	s := r.spares
	s.mu.Lock()
	var f jobFiles
	ok := len(s.files) > 0
	if ok {
		f = s.files[len(s.files)-1]
		s.files = s.files[:len(s.files)-1]
	}
	s.mu.Unlock()
	if ok {
		if err := os.Rename(f.log.path, r.logPath(f.id)); err == nil {
			f.log.path = r.logPath(f.id) // not shared yet: no reader to race
			return f, nil
		}
		r.discardJobFiles(f)
	}
	return r.makeJobFiles(false)
}

// refillSpares wakes the refill after a start took (or found no) spare.
func (r *Runner) refillSpares() {
	select {
	case r.spares.wake <- struct{}{}:
	default: // already asked
	}
}

// discardJobFiles removes the files of a job that did not start, or of a
// spare: its log, its record's temporary file if still open, and its
// record if written.
func (r *Runner) discardJobFiles(f jobFiles) {
	r.discardLog(f.log)
	if f.rec != nil {
		f.rec.Close()
		os.Remove(f.rec.Name())
	}
	if err := os.Remove(r.recordPath(f.id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Error("cannot remove the record of a job that did not start: it comes back FAILED after a restart", "job", f.id, "error", err.Error())
	}
}

// spareLoop keeps spareJobs spares made, each time refillSpares asks,
// until stopSpares. After a failure (a full disk) it waits for the next
// start to try again.
func (r *Runner) spareLoop() {
	s := r.spares
	defer close(s.done)
	for {
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			s.mu.Lock()
			full := len(s.files) >= spareJobs
			s.mu.Unlock()
			if full {
				break
			}
			f, err := r.makeJobFiles(true)
			if err != nil {
				break
			}
			s.mu.Lock()
			s.files = append(s.files, f)
			s.mu.Unlock()
		}
		select {
		case <-s.wake:
		case <-s.stop:
			return
		}
	}
}

// stopSpares ends the refill and removes the spares. Starts that come
// later make their files themselves.
func (r *Runner) stopSpares() {
	s := r.spares
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	s.mu.Lock()
	files := s.files
	s.files = nil
	s.mu.Unlock()
	for _, f := range files {
		r.discardJobFiles(f)
	}
}
