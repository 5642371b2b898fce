package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockCgroupParent makes sure one server at a time uses a cgroup parent. A
// server kills everything under its parent at start (what a crashed earlier
// run left), so a second server on the same parent would kill the first
// one's jobs. The lock is an flock on dir/PARENT.lock, held until release
// is called or the process ends (a crash releases it too, and leaves the
// file for the next server to reuse). release removes the file while it
// still holds the lock, so a clean shutdown leaves nothing in dir.
//
// Removing a lock file races with a server that opened it just before: it
// would lock a file no longer in dir, while a third server creates and
// locks a new one. So after taking the lock, a server checks that the file
// it locked is still the one at path, and starts over if not.
func lockCgroupParent(dir, parent string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock --cgroup-parent: %w", err)
	}
	path := filepath.Join(dir, parent+".lock")
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock --cgroup-parent: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("another telehandler server is using --cgroup-parent %q (it holds %s): stop it, or give this server another --cgroup-parent", parent, path)
			}
			return nil, fmt.Errorf("lock --cgroup-parent: %s: %w", path, err)
		}
		if !samePath(f, path) {
			f.Close() // removed by the server that held it: lock the new one
			continue
		}
		return func() {
			os.Remove(path)
			f.Close()
		}, nil
	}
}

// samePath reports whether the open file f is the file at path now.
func samePath(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, pi)
}
