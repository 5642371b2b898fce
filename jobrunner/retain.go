package jobrunner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"
)

// Remove removes an ended job: its status, its record and its output log.
// Watchers already following the log finish reading it. A job that still
// runs is refused with an error wrapping ErrRunning, unless force: then it
// is stopped first (as Stop without grace). An unknown id is ErrJobNotFound.
func (r *Runner) Remove(ctx context.Context, id string, force bool) error {
	j, err := r.lookup(id)
	if err != nil {
		return err
	}
	j.mu.Lock()
	ended := j.ended
	j.mu.Unlock()
	if !ended {
		if !force {
			return fmt.Errorf("%w: job %q", ErrRunning, id)
		}
		if _, err := r.Stop(ctx, id, 0); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
	}
	// An ended job may still be finishing its log and record: wait (only
	// moments) so that nothing is written after the files are gone.
	select {
	case <-j.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !r.remove(j) {
		return fmt.Errorf("%w: %q", ErrJobNotFound, id)
	}
	return nil
}

// remove forgets the ended job j and deletes its files: the record first,
// so that a crash in between leaves a log without a record, which the next
// start removes. It reports false when j was already removed.
func (r *Runner) remove(j *job) bool {
	r.mu.Lock()
	if r.jobs[j.id] != j {
		r.mu.Unlock()
		return false
	}
	r.deleteLocked(j)
	r.mu.Unlock()
	for _, p := range []string{r.recordPath(j.id), r.logPath(j.id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("cannot remove a removed job's file", "job", j.id, "file", p, "error", err.Error())
		}
	}
	return true
}

// sweep applies retention: it removes the ended jobs that ended more than
// retain ago, then, while the logs of all jobs take more than retainBytes
// on disk or more than retainJobs jobs have ended, the ended jobs that
// ended first. Running jobs are never removed (their bytes still count).
func (r *Runner) sweep() {
	now := r.now()
	type candidate struct {
		j     *job
		ended time.Time
		bytes int64
	}
	r.mu.Lock()
	jobs := make([]*job, 0, len(r.jobs))
	for _, j := range r.jobs {
		jobs = append(jobs, j)
	}
	r.mu.Unlock()

	var total int64
	var ended []candidate
	for _, j := range jobs {
		b := j.log.diskBytes()
		total += b
		select {
		case <-j.done:
		default:
			continue
		}
		j.mu.Lock()
		endedAt := j.endedAt
		j.mu.Unlock()
		ended = append(ended, candidate{j, endedAt, b})
	}
	slices.SortFunc(ended, func(a, b candidate) int {
		return cmp.Or(a.ended.Compare(b.ended), cmp.Compare(a.j.id, b.j.id))
	})
	removed, freed := 0, int64(0)
	for i, c := range ended {
		expired := now.Sub(c.ended) > r.retain
		if !expired && total <= r.retainBytes && len(ended)-i <= r.retainJobs {
			break // the rest ended later and fit
		}
		if r.remove(c.j) {
			removed++
			freed += c.bytes
			total -= c.bytes
		}
	}
	if removed > 0 {
		r.log.Info("retention removed ended jobs", "jobs", removed, "bytes", freed,
			"retain", r.retain.String(), "retain_bytes", r.retainBytes, "retain_jobs", r.retainJobs)
	}
}

// sweepLoop runs sweep every sweepInterval until Shutdown.
func (r *Runner) sweepLoop() {
	defer close(r.sweepDone)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.sweep()
		case <-r.stopSweep:
			return
		}
	}
}
