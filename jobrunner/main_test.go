package jobrunner

import (
	"os"
	"testing"

	"github.com/drrev/telehandler/sandbox"
)

// TestMain makes the test binary its own shim: the sandbox re-executes
// /proc/self/exe __child, which here is this test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__child" {
		sandbox.RunChild()
	}
	os.Exit(m.Run())
}

// requireRoot skips a test that needs root (namespaces, real cgroups). CI
// runs as root, so these tests always run there; with CI set they fail
// instead of skipping.
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
