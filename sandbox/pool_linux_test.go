package sandbox

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// TestPooled runs the isolation (issue 8) and seccomp (issue 9) root tests
// again with a warm shim pool (newTestSandbox sees the test's name):
// whatever they check of a job, a job started from a warm shim has too.
// Each also checks that its jobs that fit a warm shim got one
// (poolMode.check). The isolation tests keep their users: their
// dynamic-user jobs use the pool, the others show that the cold path works
// beside it. The seccomp tests run their root jobs as dynamic users
// (rootAsDynamic), so that they use the pool: the filter is the same for
// every user.
func TestPooled(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name string
		test func(*testing.T)
	}{
		{"PrivateWritableDirs", TestPrivateWritableDirs},
		{"UnixSocketBetweenJobs", TestUnixSocketBetweenJobs},
		{"KeyringsArePrivate", TestKeyringsArePrivate},
		{"TmpfsPagesDieWithTheJob", TestTmpfsPagesDieWithTheJob},
		{"TmpfsIsSizeLimited", TestTmpfsIsSizeLimited},
		{"HostIsReadOnly", TestHostIsReadOnly},
		{"ServerFilesAreHidden", TestServerFilesAreHidden},
		{"SysShowsOnlyTheJob", TestSysShowsOnlyTheJob},
		{"MaskedPaths", TestMaskedPaths},
		{"ConcurrentJobsHaveTheirOwnUIDs", TestConcurrentJobsHaveTheirOwnUIDs},
		{"RootJobIsNotHostRoot", TestRootJobIsNotHostRoot},
		{"Image", TestImage},
		{"Binds", TestBinds},
		{"MinimalDev", TestMinimalDev},
		{"SeccompRefusesKernelSurface", TestSeccompRefusesKernelSurface},
		{"SeccompForeignABIKills", TestSeccompForeignABIKills},
		{"SeccompUnshareCommand", TestSeccompUnshareCommand},
		{"SeccompOrdinaryPrograms", TestSeccompOrdinaryPrograms},
		{"SeccompOff", TestSeccompOff},
	} {
		t.Run(tc.name, tc.test)
	}
}

// poolMode is how a TestPooled test's sandboxes start jobs.
type poolMode struct {
	rootAsDynamic bool

	mu     sync.Mutex
	fit    int // jobs started that fit a warm shim (guarded by mu)
	pooled int // of those, the ones that got one (guarded by mu)
}

// pooledMode is the pool mode of test t: nil unless it runs under
// TestPooled.
func pooledMode(t *testing.T) *poolMode {
	name, ok := strings.CutPrefix(t.Name(), "TestPooled/")
	if !ok {
		return nil
	}
	name, _, _ = strings.Cut(name, "/")
	return &poolMode{rootAsDynamic: strings.HasPrefix(name, "Seccomp")}
}

// spec is the spec a test job runs with (rootAsDynamic: a root job becomes
// a dynamic user's).
func (m *poolMode) spec(spec Spec) Spec {
	if m != nil && m.rootAsDynamic && spec.UID == nil && spec.GID == nil {
		spec.DynamicUser = true
	}
	return spec
}

// waitWarm waits until sb's pool has a warm shim ready for a job that fits
// one, or its refill failed (then the job starts cold), failing the test
// after jobTimeout.
func (m *poolMode) waitWarm(t *testing.T, sb *Sandbox, spec Spec, cfg StartConfig) {
	if m == nil || sb.pool == nil || !jobFitsWarm(spec, cfg) {
		return
	}
	deadline := time.Now().Add(jobTimeout)
	for {
		p := sb.pool
		p.mu.Lock()
		ready, failed := len(p.warm) > 0, p.lastErr != nil
		p.mu.Unlock()
		if ready || failed {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("no warm shim ready after %v", jobTimeout)
			return
		}
		time.Sleep(5 * time.Millisecond) // a wait with a deadline, not a fixed sleep
	}
}

// started counts a started job.
func (m *poolMode) started(spec Spec, cfg StartConfig, p *Process) {
	if m == nil || !jobFitsWarm(spec, cfg) || p == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fit++
	if p.pooled {
		m.pooled++
	}
}

// check fails the test if jobs fit a warm shim and none got one: the test
// would have checked the cold path only.
func (m *poolMode) check(t *testing.T) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fit > 0 && m.pooled == 0 {
		t.Errorf("%d jobs fit a warm shim, none got one", m.fit)
	}
	t.Logf("%d of %d jobs that fit a warm shim got one", m.pooled, m.fit)
}
