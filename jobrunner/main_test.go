package jobrunner

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/drrev/telehandler/sandbox"
)

// TestMain makes the test binary its own shim: the sandbox re-executes
// /proc/self/exe __child, which here is this test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "__child" {
		sandbox.RunChild()
	}
	if os.Getenv(netProbeEnv) != "" {
		os.Exit(netProbe(os.Args[1:]))
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

// testTimeout bounds every test's waiting; jobs normally take well under a
// second.
const testTimeout = 2 * time.Minute

// testContext is a context that ends after testTimeout or with the test.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}
