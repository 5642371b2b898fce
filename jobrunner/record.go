package jobrunner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/drrev/telehandler/sandbox"
)

// A job's files in the state directory, named by its id (newID: 26
// lowercase base32 characters):
//
//	ID.log       its output log (OutputLog)
//	ID.json      its record (record), written when it starts and when it ends
//	ID.json.tmp  a record being written; renamed over ID.json once written
//	             (and synced, for an ended job: writeRecord)
//	ID.log.tmp   a spare's log (spareJobs: the files of a next job, made
//	             ahead under an id no job has yet, with an empty ID.json.tmp);
//	             renamed to ID.log when a job takes it
//
// The directory itself is the Runner's lock (lockStateDir). At start,
// files that match these names but belong to no loaded record are removed;
// anything else in the directory is left alone.
const (
	logSuffix    = ".log"
	recordSuffix = ".json"
	tmpSuffix    = ".tmp"
)

// stateFileRE matches the names of the files a job has in the state
// directory; group 1 is the job's id.
// Compiled on first use (at server start), not at package init, which every
// process of the binary (a CLI command, a shim) runs.
var stateFileRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([a-z2-7]{26})(\.log|\.json|\.json\.tmp|\.log\.tmp)$`)
})

// recordVersion is the version of the record format written. A record of a
// later version (a newer server wrote it) is neither loaded nor removed.
const recordVersion = 1

// record is what the state directory keeps of a job, as JSON: everything
// its status shows except the live statistics of a running job.
type record struct {
	Version          int            `json:"version"`
	ID               string         `json:"id"`
	Owner            string         `json:"owner"`
	Name             string         `json:"name,omitempty"`
	Init             bool           `json:"init,omitempty"`
	Command          string         `json:"command"`
	Args             []string       `json:"args,omitempty"`
	CommandTruncated bool           `json:"command_truncated,omitempty"`
	Dir              string         `json:"dir,omitempty"`
	Limits           sandbox.Limits `json:"limits"`
	Network          bool           `json:"network,omitempty"`
	State            string         `json:"state"` // State.String()
	Started          time.Time      `json:"started"`
	Ended            time.Time      `json:"ended,omitzero"`
	ExitCode         int            `json:"exit_code"`
	Signal           int            `json:"signal,omitempty"`
	Stopped          bool           `json:"stopped,omitempty"`
	OOMKilled        bool           `json:"oom_killed,omitempty"`
	Reason           string         `json:"reason,omitempty"` // EndReason.String()
	Stats            sandbox.Stats  `json:"stats"`
	OutputBytes      int64          `json:"output_bytes"`
	OutputTruncated  bool           `json:"output_truncated,omitempty"`
	// Why output was dropped (Truncation.String()), how much, and the last
	// write error's cause.
	OutputTruncation string `json:"output_truncation,omitempty"`
	OutputDropped    int64  `json:"output_dropped,omitempty"`
	OutputError      string `json:"output_error,omitempty"`
}

func recordOf(st Status) record {
	return record{
		Version:          recordVersion,
		ID:               st.ID,
		Owner:            st.Owner,
		Name:             st.Name,
		Init:             st.Init,
		Command:          st.Command,
		Args:             st.Args,
		CommandTruncated: st.CommandTruncated,
		Dir:              st.Dir,
		Limits:           st.Limits,
		Network:          st.Network,
		State:            st.State.String(),
		Started:          st.Started,
		Ended:            st.Ended,
		ExitCode:         st.ExitCode,
		Signal:           st.Signal,
		Stopped:          st.Stopped,
		OOMKilled:        st.OOMKilled,
		Reason:           st.Reason.String(),
		Stats:            st.Stats,
		OutputBytes:      st.OutputBytes,
		OutputTruncated:  st.OutputTruncated,
		OutputTruncation: st.OutputTruncation.String(),
		OutputDropped:    st.OutputDropped,
		OutputError:      st.OutputError,
	}
}

// errNewerRecord marks a record written by a later version.
var errNewerRecord = errors.New("record of a later version")

// check validates a decoded record that claims to be job id's.
func (rec *record) check(id string) error {
	switch {
	case rec.Version > recordVersion:
		return fmt.Errorf("%w %d (this server reads %d)", errNewerRecord, rec.Version, recordVersion)
	case rec.Version < 1:
		return fmt.Errorf("version %d", rec.Version)
	case rec.ID != id:
		return fmt.Errorf("holds job %q", rec.ID)
	case rec.Command == "":
		return errors.New("no command")
	case rec.Started.IsZero():
		return errors.New("no start time")
	case rec.OutputBytes < 0:
		return errors.New("negative output size")
	case rec.Name != "" && ValidateName(rec.Name) != nil:
		return fmt.Errorf("bad job name: %w", ValidateName(rec.Name))
	}
	switch rec.State {
	case StateRunning.String():
	case StateCompleted.String(), StateFailed.String():
		if rec.Ended.IsZero() {
			return errors.New("ended job without an end time")
		}
	default:
		return fmt.Errorf("unknown state %q", rec.State)
	}
	switch rec.Reason {
	case ReasonNone.String(), ReasonStopped.String(), ReasonServerLost.String(), ReasonServerShutdown.String():
	default:
		return fmt.Errorf("unknown end reason %q", rec.Reason)
	}
	switch rec.OutputTruncation {
	case NotTruncated.String(), TruncatedCap.String(), TruncatedWriteError.String():
	default:
		return fmt.Errorf("unknown output truncation %q", rec.OutputTruncation)
	}
	if rec.OutputDropped < 0 {
		return errors.New("negative dropped output")
	}
	return nil
}

func (r *Runner) recordPath(id string) string { return filepath.Join(r.stateDir, id+recordSuffix) }
func (r *Runner) logPath(id string) string    { return filepath.Join(r.stateDir, id+logSuffix) }

// writeRecord writes the job's current status as its record, atomically:
// a temporary file renamed over the record. The record of an ended job is
// also made durable (the file synced before the rename, the directory
// after it). The record of a running job is not: StartJob would wait for
// two fsyncs, milliseconds on a busy disk, and a record that matters only
// if the server dies while the job runs survives the server's own crash
// without them (it is in the page cache); a machine crash within the
// kernel's writeback delay may lose it, together with the job (which died
// with the machine) and its output (which is never synced). A failure is
// logged, not returned: the job runs on, and its status stays right in
// memory; only a restart would lose it.
func (r *Runner) writeRecord(j *job) { r.writeRecordInto(j, nil) }

// writeRecordInto is writeRecord through tmp, the record's temporary file
// made beforehand (jobFiles.rec), or a new one when tmp is nil.
func (r *Runner) writeRecordInto(j *job, tmp *os.File) {
	// A running job's record keeps no stats; an ended job's are final.
	st := j.snapshot(false)
	data, err := json.Marshal(recordOf(st))
	switch {
	case err != nil:
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	case tmp != nil:
		err = commitTemp(tmp, r.recordPath(j.id), data, !st.Running())
	default:
		err = writeFileAtomic(r.recordPath(j.id), data, !st.Running())
	}
	if err != nil {
		r.log.Error("cannot write job record: the job is lost if the server restarts", "job", j.id, "error", err.Error())
	}
}

// writeFileAtomic replaces path with data so that a crash of the process
// leaves either the old file or the new one, whole; with durable, so does a
// crash of the machine, and the new file is on disk when it returns. The
// temporary file is created anew (O_EXCL), never opened through what is
// there: a symbolic link planted in its place is removed, not followed, so
// that the root server never writes through it into another file.
func writeFileAtomic(path string, data []byte, durable bool) error {
	f, err := createTemp(path)
	if err != nil {
		return err
	}
	return commitTemp(f, path, data, durable)
}

// createTemp creates path's temporary file (path + tmpSuffix), empty, as
// writeFileAtomic says.
func createTemp(path string) (*os.File, error) {
	tmp := path + tmpSuffix
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// commitTemp writes data into f, path's empty temporary file (createTemp),
// closes it and renames it over path: the rest of writeFileAtomic. On
// error the temporary file is removed.
func commitTemp(f *os.File, path string, data []byte, durable bool) error {
	tmp := f.Name()
	_, err := f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// loadRecords loads the jobs of earlier runs from the state directory.
// Ended jobs come back as they ended, their output watchable. A job whose
// record still says RUNNING died with the server that ran it (every job
// does): it comes back FAILED with ReasonServerLost and the output it
// wrote until then, ended when its log was last written, and its record is
// rewritten so. A record that cannot be read, or whose log is gone, is
// logged and skipped; then its files, like every file of ours that belongs
// to no loaded record, are removed. Only an unreadable directory is an
// error.
func (r *Runner) loadRecords() error {
	entries, err := os.ReadDir(r.stateDir)
	if err != nil {
		return fmt.Errorf("read state directory: %w", err)
	}
	keep := make(map[string]bool) // ids whose files stay
	for _, e := range entries {
		m := stateFileRE().FindStringSubmatch(e.Name())
		if m == nil || m[2] != recordSuffix || !e.Type().IsRegular() {
			continue
		}
		id := m[1]
		j, err := r.loadJob(id)
		if errors.Is(err, errNewerRecord) {
			r.log.Warn("job record of a newer telehandler: kept, not loaded", "job", id, "error", err.Error())
			keep[id] = true
			continue
		}
		if err != nil {
			r.log.Warn("skipping unreadable job record; its files are removed", "job", id, "error", err.Error())
			continue
		}
		keep[id] = true
		r.addLocked(j)
	}
	removed := 0
	for _, e := range entries {
		m := stateFileRE().FindStringSubmatch(e.Name())
		if m == nil || keep[m[1]] || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(r.stateDir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("cannot remove a file that belongs to no job", "file", e.Name(), "error", err.Error())
			continue
		}
		removed++
	}
	if len(r.jobs) > 0 || removed > 0 {
		r.log.Info("loaded the jobs of earlier runs", "jobs", len(r.jobs), "files_removed", removed)
	}
	return nil
}

// loadJob reads job id's record and opens its log.
func (r *Runner) loadJob(id string) (*job, error) {
	data, err := os.ReadFile(r.recordPath(id))
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if err := rec.check(id); err != nil {
		return nil, err
	}
	log, mtime, err := openFinishedLog(r.logPath(id), r.outputCap)
	if err != nil {
		return nil, err
	}
	log.restoreTruncation(rec.OutputTruncation, rec.OutputDropped, rec.OutputError, rec.OutputTruncated)
	if lost := rec.OutputBytes - log.Size(); lost > 0 {
		log.restoreTruncation(TruncatedWriteError.String(), rec.OutputDropped+lost, errTornLog.Error(), true)
	}
	command, args, cut := cutCommandLine(rec.Command, rec.Args)
	j := &job{
		id:      id,
		owner:   rec.Owner,
		name:    rec.Name,
		init:    rec.Init,
		command: command,
		args:    args,
		dir:     rec.Dir,
		cmdCut:  cut || rec.CommandTruncated,
		limits:  rec.Limits,
		network: rec.Network,
		started: rec.Started,
		log:     log,
		done:    make(chan struct{}),
		exited:  true,
		ended:   true,
		stopped: rec.Stopped,
		lost:    rec.Reason == ReasonServerLost.String(),
		exit: sandbox.ExitState{
			ExitCode:  rec.ExitCode,
			Signal:    rec.Signal,
			OOMKilled: rec.OOMKilled,
			Stats:     rec.Stats,
		},
		endedAt: rec.Ended,
	}
	if rec.Reason == ReasonServerShutdown.String() {
		j.stopReason = ReasonServerShutdown
	}
	close(j.done)
	if rec.State == StateRunning.String() {
		j.lost = true
		j.exit.ExitCode, j.exit.Signal = -1, 0
		j.endedAt = mtime
		if j.endedAt.Before(j.started) {
			j.endedAt = j.started
		}
		r.log.Warn("job was running when the server stopped: it is FAILED", "job", id, "owner", j.owner,
			"output_bytes", log.Size())
		r.writeRecord(j)
	}
	return j, nil
}
