package jobrunner

import (
	"errors"
	"testing"
)

// slots is the number of running-jobs slots held (running jobs and starts
// in flight).
func (r *Runner) slots() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.load.total
}

// TestLoadAdmit checks the bounds of a Quota on the count alone: the
// owner's bound first, then the total, zero meaning none, and a released
// slot free again (with no entry left for an owner who holds none).
func TestLoadAdmit(t *testing.T) {
	var l load
	user := Quota{Total: 3, PerOwner: 2}
	for range 2 {
		if err := l.admitLocked("alice", user); err != nil {
			t.Fatal(err)
		}
	}
	err := l.admitLocked("alice", user)
	var qe *QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, ErrTooManyJobs) {
		t.Fatalf("alice's third job: %v, want a QuotaError", err)
	}
	if *qe != (QuotaError{Owner: "alice", PerOwner: true, Limit: 2, Owned: 2, Total: 2}) {
		t.Errorf("alice's third job: %+v", *qe)
	}
	if err := l.admitLocked("bob", user); err != nil {
		t.Fatalf("bob's first job: %v", err)
	}
	if err := l.admitLocked("bob", user); !errors.As(err, &qe) || qe.PerOwner || qe.Limit != 3 || qe.Total != 3 || qe.Owned != 1 {
		t.Fatalf("bob's job past the total: %v", err)
	}
	// A caller with a larger total (an admin's share) still gets in.
	if err := l.admitLocked("root", Quota{Total: 4}); err != nil {
		t.Fatalf("admin: %v", err)
	}
	if err := l.admitLocked("root", Quota{Total: 4}); err == nil {
		t.Fatal("admin past the total: admitted")
	}
	if err := l.admitLocked("anyone", Quota{}); err != nil {
		t.Fatalf("zero quota: %v", err)
	}
	l.releaseLocked("anyone")
	l.releaseLocked("root")
	l.releaseLocked("alice")
	if err := l.admitLocked("alice", user); err != nil {
		t.Fatalf("alice after a release: %v", err)
	}
	l.releaseLocked("alice")
	l.releaseLocked("alice")
	l.releaseLocked("bob")
	if l.total != 0 || len(l.byOwner) != 0 {
		t.Errorf("after releasing everything: total %d, owners %v", l.total, l.byOwner)
	}
}
