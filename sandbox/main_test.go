package sandbox

import (
	"os"
	"runtime"
	"testing"
)

// offMainShimEnv, set in the shim's environment by a wrapper script, makes
// the test binary run RunChild on a thread other than the process's initial
// one (TestShimOffMainThread): main's own thread is taken by the main
// goroutine, locked and parked.
const offMainShimEnv = "TELEHANDLER_SANDBOX_TEST_SHIM_OFF_MAIN"

// TestMain makes the test binary its own shim: the sandbox re-executes
// /proc/self/exe __child, which here is this test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__child" {
		if os.Getenv(offMainShimEnv) == "1" {
			runtime.LockOSThread()
			go RunChild()
			select {}
		}
		RunChild()
	}
	os.Exit(m.Run())
}

// requireRoot skips a test that needs root (namespaces, real cgroups). CI
// runs as root, so these tests always run there.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("needs root, and CI must run every root test: run CI as root")
	}
	t.Skip("needs root: creates namespaces and cgroups (CI runs as root)")
}
