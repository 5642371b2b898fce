package server

import (
	"testing"

	"github.com/drrev/telehandler/sandbox"
)

// TestJobDefaultLimits: a request without limits resolves to
// JobDefaultLimits (what serve makes the warm shims' cgroups with), the
// configured fields kept and the others sandbox.DefaultLimits'.
func TestJobDefaultLimits(t *testing.T) {
	configured := sandbox.Limits{CPUMilli: 250, Pids: 64}
	want := sandbox.DefaultLimits()
	want.CPUMilli, want.Pids = 250, 64
	if got := JobDefaultLimits(configured); got != want {
		t.Errorf("JobDefaultLimits(%+v) = %+v, want %+v", configured, got, want)
	}
	got, err := resolveLimits(nil, JobDefaultLimits(configured), DefaultMaxLimits())
	if err != nil || got != want {
		t.Errorf("resolveLimits of no limits = %+v, %v; want %+v", got, err, want)
	}
}
