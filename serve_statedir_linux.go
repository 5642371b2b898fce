package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkStateDir creates the state directory 0700 if it is missing, and
// refuses one that someone other than root could have made or could change:
// owned by another user, or writable by its group or by others. Jobs' logs
// and records there must not be forgeable.
func checkStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	fix := fmt.Sprintf("use a directory of root's alone: chown root:root %[1]s && chmod 0700 %[1]s", dir)
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("--state-dir %s is a symbolic link: give the directory itself", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--state-dir %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("--state-dir: cannot read its owner")
	}
	if st.Uid != 0 {
		return fmt.Errorf("--state-dir %s is owned by uid %d, not root: %s", dir, st.Uid, fix)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("--state-dir %s is writable by its group or by others (mode %04o): %s", dir, fi.Mode().Perm(), fix)
	}
	return nil
}
