package jobrunner

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// stateDirInodesLeft fails with an error wrapping ENOSPC when the file
// system of dir has no free inode: no new file (a job's log or record) can
// be made there. File systems that do not count inodes (btrfs) report
// none in all and pass.
func stateDirInodesLeft(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil // the file's creation says what is wrong, if anything is
	}
	if st.Files > 0 && st.Ffree == 0 {
		return fmt.Errorf("state directory %s: %w", dir, unix.ENOSPC)
	}
	return nil
}
