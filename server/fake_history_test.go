package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/drrev/telehandler/jobrunner"
)

// ListPage pages as the real runner does: newest first by (start time,
// id), after q.After, filtered by owner and state.
func (f *fakeRunner) ListPage(q jobrunner.ListQuery) ([]jobrunner.Status, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	type entry struct {
		pos jobrunner.Cursor
		j   *fakeJob
	}
	var sel []entry
	for _, j := range f.jobs {
		if (q.Owner != "" && j.st.Owner != q.Owner) || (q.State != 0 && j.st.State != q.State) {
			continue
		}
		pos := jobrunner.CursorOf(j.st)
		if q.After != (jobrunner.Cursor{}) && newestFirst(pos, q.After) <= 0 {
			continue
		}
		sel = append(sel, entry{pos, j})
	}
	slices.SortFunc(sel, func(a, b entry) int { return newestFirst(a.pos, b.pos) })
	limit := q.Limit
	if limit <= 0 {
		limit = jobrunner.DefaultListLimit
	}
	more := len(sel) > limit
	var page []jobrunner.Status
	for _, e := range sel[:min(limit, len(sel))] {
		page = append(page, e.j.st)
	}
	return page, more
}

func newestFirst(a, b jobrunner.Cursor) int {
	return cmp.Or(cmp.Compare(b.Started, a.Started), cmp.Compare(b.ID, a.ID))
}

// Remove removes an ended job; a running one only with force (stopped
// first).
func (f *fakeRunner) Remove(ctx context.Context, id string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return fmt.Errorf("%w: %s", jobrunner.ErrJobNotFound, id)
	}
	if j.st.State == jobrunner.StateRunning {
		if !force {
			return fmt.Errorf("%w: %s", jobrunner.ErrRunning, id)
		}
		j.endLocked(-1, 9, jobrunner.ReasonStopped)
	}
	delete(f.jobs, id)
	return nil
}

// add registers a finished job with the given status, as if it had run.
func (f *fakeRunner) add(st jobrunner.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := &fakeJob{st: st, done: make(chan struct{})}
	close(j.done)
	f.jobs[st.ID] = j
}
