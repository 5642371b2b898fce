package jobrunner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// lockFileName is the Runner's lock in the state directory: one Runner
// (one server) per directory, since each removes at start the files of
// jobs it does not know.
const lockFileName = "telehandler.lock"

// lockStateDir takes an exclusive flock on dir's lock file, or fails with
// ErrStateDirInUse. The lock dies with the process; the returned function
// releases it earlier (once; later calls do nothing).
func lockStateDir(dir string) (func(), error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another telehandler serve; give each server its own --state-dir", ErrStateDirInUse, dir)
		}
		return nil, fmt.Errorf("lock state directory: %w", err)
	}
	var once sync.Once
	return func() { once.Do(func() { f.Close() }) }, nil
}
