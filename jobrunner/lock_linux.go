package jobrunner

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// lockStateDir takes an exclusive flock on the state directory itself
// (one Runner, one server, per directory: each removes at start the files
// of jobs it does not know), or fails with ErrStateDirInUse. The lock dies
// with the process; the returned function releases it earlier (once;
// later calls do nothing).
func lockStateDir(dir string) (func(), error) {
	f, err := os.Open(dir)
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
