package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLockCgroupParent(t *testing.T) {
	dir := t.TempDir()
	release, err := lockCgroupParent(dir, "telehandler-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockCgroupParent(dir, "telehandler-a"); err == nil || !strings.Contains(err.Error(), "another telehandler server") {
		t.Fatalf("second lock of the same parent: %v, want refused", err)
	}
	other, err := lockCgroupParent(dir, "telehandler-b")
	if err != nil {
		t.Fatalf("another parent: %v", err)
	}
	other()
	release()
	again, err := lockCgroupParent(dir, "telehandler-a")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
	// A released lock leaves no file behind.
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left after release: %v", entries)
	}
}

// TestLockCgroupParentRemovedUnderneath plays the race of a release: a
// server that opened the lock file just before the holder removed it must
// not count the removed file as the lock.
func TestLockCgroupParentRemovedUnderneath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "telehandler-a.lock")
	stale, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Close()
	os.Remove(path)
	if samePath(stale, path) {
		t.Fatal("samePath: a removed file is still the one at its path")
	}
	release, err := lockCgroupParent(dir, "telehandler-a")
	if err != nil {
		t.Fatal(err)
	}
	if !samePath(mustOpen(t, path), path) {
		t.Error("the lock is not the file at its path")
	}
	release()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lock file after release: %v", err)
	}
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
