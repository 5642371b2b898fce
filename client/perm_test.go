package client

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestPermWarnings: a key others may read and a configuration file others
// may change are warned about, with the chmod that fixes them; 0600 files
// and missing ones are not.
func TestPermWarnings(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes on Windows")
	}
	dir := t.TempDir()
	file := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o644, true}, {0o604, true}, {0o660, true}} {
		p := file("k", c.mode)
		got := keyWarning(p)
		if (got != "") != c.warn {
			t.Errorf("key mode %04o: warning %q, want one: %v", c.mode, got, c.warn)
		}
		if c.warn && !strings.Contains(got, "chmod 600 "+p) {
			t.Errorf("key mode %04o: warning %q does not name the fix", c.mode, got)
		}
	}
	for _, c := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o644, false}, {0o664, true}, {0o666, true}, {0o602, true}} {
		p := file("config", c.mode)
		if got := configWarning(p); (got != "") != c.warn || (c.warn && !strings.Contains(got, "chmod go-w "+p)) {
			t.Errorf("config mode %04o: warning %q, want one: %v", c.mode, got, c.warn)
		}
	}
	if got := keyWarning(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("missing key: %q", got)
	}
}
