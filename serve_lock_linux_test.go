package main

import (
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
}
