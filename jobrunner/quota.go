package jobrunner

import "fmt"

// Quota bounds how many jobs may run at once. It travels with each
// StartRequest because the caller decides who gets how much (jobrunner
// gives owners no meaning); the Runner decides whether there is room,
// under the one lock that also registers the job, so that two starts can
// never both take the last slot. A job holds its slot from the moment
// Start admits it (before its command runs) until it ended and its output
// is complete (it leaves RUNNING), or until Start fails.
//
// The zero Quota admits every job.
type Quota struct {
	// Total: the job starts only if fewer than Total jobs hold a slot,
	// whoever owns them (0 = no bound).
	Total int
	// PerOwner: the job starts only if its Owner holds fewer than PerOwner
	// slots (0 = no bound).
	PerOwner int
	// NetworkPerOwner: a networked job (StartRequest.Network) starts only
	// if its Owner runs fewer than NetworkPerOwner networked jobs (0 = no
	// bound); ErrTooManyNetworkJobs otherwise.
	NetworkPerOwner int
}

// QuotaError is Start's error when a Quota has no room. It wraps
// ErrTooManyJobs and says which bound was hit and the count that hit it.
type QuotaError struct {
	// Owner is the request's owner.
	Owner string
	// PerOwner is true when the owner's own bound was hit, false for the
	// total.
	PerOwner bool
	// Limit is the bound that was hit (Quota.PerOwner or Quota.Total).
	Limit int
	// Owned and Total are the slots held when the start was refused: the
	// owner's and everyone's.
	Owned, Total int
}

func (e *QuotaError) Error() string {
	if e.PerOwner {
		return fmt.Sprintf("%v: %q runs %d jobs, its limit is %d", ErrTooManyJobs, e.Owner, e.Owned, e.Limit)
	}
	return fmt.Sprintf("%v: %d jobs run, the limit is %d", ErrTooManyJobs, e.Total, e.Limit)
}

func (e *QuotaError) Unwrap() error { return ErrTooManyJobs }

// load is the one count of the jobs that hold a slot (running, or admitted
// and starting): in total and per owner. Runner.mu guards it.
type load struct {
	total   int
	byOwner map[string]int // owners with no slot have no entry
}

// admitLocked takes a slot for owner if q has room.
func (l *load) admitLocked(owner string, q Quota) error {
	owned := l.byOwner[owner]
	if q.PerOwner > 0 && owned >= q.PerOwner {
		return &QuotaError{Owner: owner, PerOwner: true, Limit: q.PerOwner, Owned: owned, Total: l.total}
	}
	if q.Total > 0 && l.total >= q.Total {
		return &QuotaError{Owner: owner, Limit: q.Total, Owned: owned, Total: l.total}
	}
	if l.byOwner == nil {
		l.byOwner = make(map[string]int)
	}
	l.total++
	l.byOwner[owner]++
	return nil
}

// releaseLocked gives back a slot of owner's.
func (l *load) releaseLocked(owner string) {
	l.total--
	if l.byOwner[owner]--; l.byOwner[owner] <= 0 {
		delete(l.byOwner, owner)
	}
}
