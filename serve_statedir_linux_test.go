package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckStateDir: serve creates its state directory 0700 and refuses
// one that another user owns or that its group or others may write, with
// the fix in the message.
func TestCheckStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root, and CI must run every root test: run CI as root")
		}
		t.Skip("needs root: the state directory must be root's")
	}
	base := t.TempDir()
	fresh := filepath.Join(base, "a", "state")
	if err := checkStateDir(fresh); err != nil {
		t.Fatalf("new state directory: %v", err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("new state directory: %v %v, want mode 0700", fi.Mode(), err)
	}

	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o770)
	if err := checkStateDir(open); err == nil || !strings.Contains(err.Error(), "chmod 0700") {
		t.Errorf("group-writable state directory: %v, want a refusal naming chmod 0700", err)
	}

	theirs := filepath.Join(base, "theirs")
	if err := os.Mkdir(theirs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := checkStateDir(theirs); err == nil || !strings.Contains(err.Error(), "chown root:root") {
		t.Errorf("state directory of uid 1000: %v, want a refusal naming chown root:root", err)
	}

	link := filepath.Join(base, "link")
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	if err := checkStateDir(link); err == nil {
		t.Error("a symbolic link as the state directory was accepted")
	}
}
