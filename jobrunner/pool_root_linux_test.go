package jobrunner

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drrev/telehandler/sandbox"
)

// TestRunnerWarmShims: with a warm shim pool, New fills it after its
// cleanup (the warm shims survive it), the waiting shims are no jobs (List
// is empty), a dynamic user's job runs and is listed, and Shutdown drains
// the pool: not even the parent cgroups are left.
func TestRunnerWarmShims(t *testing.T) {
	e := newRootEnvPool(t, 0, filepath.Join(t.TempDir(), "state"), 2)
	ctx := testContext(t)
	warm := func() int {
		entries, _ := os.ReadDir(e.parents[0])
		n := 0
		for _, ent := range entries {
			procs, err := os.ReadFile(filepath.Join(e.parents[0], ent.Name(), "cgroup.procs"))
			if ent.IsDir() && strings.HasPrefix(ent.Name(), "pool-") && err == nil && len(procs) > 0 {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(testTimeout); warm() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d warm shims after %v, want 2", warm(), testTimeout)
		}
	}
	if list := e.r.List(); len(list) != 0 {
		t.Fatalf("List with only warm shims: %+v, want no job", list)
	}

	st, err := e.r.Start(ctx, StartRequest{Command: "sh", Args: []string{"-c", "sleep 1000"},
		Limits: sandbox.DefaultLimits(), DynamicUser: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st.State != StateRunning {
		t.Fatalf("Start: %+v, want RUNNING", st)
	}
	if list := e.r.List(); len(list) != 1 || list[0].ID != st.ID {
		t.Fatalf("List: %+v, want the one job", list)
	}

	if err := e.r.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := e.r.mustStatus(t, st.ID); got.State != StateFailed || got.Reason != ReasonServerShutdown {
		t.Errorf("job after Shutdown: %+v", got)
	}
	for _, p := range e.parents {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("parent cgroup %s after Shutdown: %v, want it removed (warm shims drained)", p, err)
		}
	}
}
