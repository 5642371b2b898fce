package jobrunner

import (
	"cmp"
	"slices"
)

// ListQuery selects one page of jobs for ListPage. The zero value is the
// first DefaultListLimit jobs of every owner and state.
type ListQuery struct {
	// Owner keeps only the jobs of this owner; "" keeps every owner.
	Owner string
	// State keeps only the jobs in this state; 0 keeps every state.
	State State
	// After starts the page after this position; the zero cursor starts
	// at the newest job.
	After Cursor
	// Limit is the most jobs returned; <= 0 means DefaultListLimit.
	Limit int
}

// DefaultListLimit is ListQuery.Limit's default.
const DefaultListLimit = 100

// Cursor is a position in the order ListPage lists jobs in: newest first
// by start time, then by id (descending). The zero Cursor is before the
// newest job.
type Cursor struct {
	// Started is the start time in Unix nanoseconds.
	Started int64
	ID      string
}

// CursorOf is the position of the job st in ListPage's order: a page that
// starts after it starts with the next older job.
func CursorOf(st Status) Cursor { return Cursor{Started: st.Started.UnixNano(), ID: st.ID} }

func (j *job) cursor() Cursor { return Cursor{Started: j.started.UnixNano(), ID: j.id} }

// compareOldestFirst orders positions oldest first (the order of
// Runner.order).
func compareOldestFirst(a, b Cursor) int {
	return cmp.Or(cmp.Compare(a.Started, b.Started), cmp.Compare(a.ID, b.ID))
}

// addLocked registers j. r.mu must be held.
func (r *Runner) addLocked(j *job) {
	r.jobs[j.id] = j
	if j.name != "" {
		r.names[ownerName{j.owner, j.name}] = struct{}{}
	}
	pos := j.cursor()
	// Jobs start in clock order: the new one almost always goes last.
	i := len(r.order)
	if i > 0 && compareOldestFirst(r.order[i-1].cursor(), pos) > 0 {
		i, _ = slices.BinarySearchFunc(r.order, pos, func(o *job, c Cursor) int { return compareOldestFirst(o.cursor(), c) })
	}
	r.order = slices.Insert(r.order, i, j)
}

// deleteLocked forgets j. r.mu must be held.
func (r *Runner) deleteLocked(j *job) {
	delete(r.jobs, j.id)
	r.freeNameLocked(j.owner, j.name) // free for a new job
	if i, ok := slices.BinarySearchFunc(r.order, j.cursor(), func(o *job, c Cursor) int { return compareOldestFirst(o.cursor(), c) }); ok {
		r.order = slices.Delete(r.order, i, i+1)
	}
}

// ListPage returns the jobs q selects, newest first, at most q.Limit of
// them, and whether more follow. Positions are stable under starts and
// removals: a page after a cursor holds exactly the selected jobs older
// than it. Only the returned running jobs' cgroups are read.
func (r *Runner) ListPage(q ListQuery) ([]Status, bool) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	sel := make([]*job, 0, min(limit, 1024))
	more := false
	r.mu.Lock()
	end := len(r.order)
	if q.After != (Cursor{}) {
		// The first job at or after the cursor, oldest first: the page
		// holds the ones before it.
		end, _ = slices.BinarySearchFunc(r.order, q.After, func(o *job, c Cursor) int { return compareOldestFirst(o.cursor(), c) })
	}
	for i := end - 1; i >= 0; i-- {
		j := r.order[i]
		if q.Owner != "" && j.owner != q.Owner {
			continue
		}
		if q.State != 0 && j.state() != q.State {
			continue
		}
		if len(sel) == limit {
			more = true
			break
		}
		sel = append(sel, j)
	}
	r.mu.Unlock()
	page := make([]Status, 0, len(sel))
	for _, j := range sel {
		page = append(page, j.status())
	}
	return page, more
}

// state is the job's state without the rest of its status (no cgroup
// read).
func (j *job) state() State {
	j.mu.Lock()
	ended, exit, stopped := j.ended, j.exit, j.stopped
	j.mu.Unlock()
	if !ended {
		return StateRunning
	}
	return endState(exit, stopped, j.lost)
}
