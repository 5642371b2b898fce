package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// resolvConfPath is where a networked job's resolver configuration lives.
const resolvConfPath = "/etc/resolv.conf"

// openResolvConf takes, before the job's view is built (while the host's
// paths are still in reach), a detached read-only bind mount of the job's
// own resolv.conf (a host file the network attachment wrote), for
// mountResolvConf to put over /etc/resolv.conf in the view. -1 without one.
func openResolvConf(src string) (int, error) {
	if src == "" {
		return -1, nil
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("bind %s: %w", src, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("make the bind of %s read-only: %w", src, err)
	}
	return fd, nil
}

// mountResolvConf puts the mount openResolvConf made over the view's
// /etc/resolv.conf (not following a symlink there): the job resolves names
// through the resolvers its network allows, and the host's file stays as
// it is. The view needs a /etc/resolv.conf to cover.
func mountResolvConf(fd int) error {
	if fd < 0 {
		return nil
	}
	defer unix.Close(fd)
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, resolvConfPath, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind over %s (the job's root file system needs one): %w", resolvConfPath, err)
	}
	return nil
}
