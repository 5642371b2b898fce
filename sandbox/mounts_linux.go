package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The shim's half of view.go: buildView turns the copy of the host's mounts
// that CLONE_NEWNS gave the shim into the job's view. Every mount here is in
// the job's private mount namespace; the host's mounts are never changed.
//
// Host objects that the new mounts cover (the host's /dev nodes, the job's
// cgroup directories, the sources of Config.Binds) are opened as O_PATH file
// descriptors first and bound later through /proc/self/fd/N.

// Flags of the job's private mounts.
const (
	// tmpfsFlags: the private writable tmpfs mounts (/tmp, /dev/shm, ...).
	tmpfsFlags = unix.MS_NOSUID | unix.MS_NODEV
	// sealedFlags: mounts nothing is executed from or written to.
	sealedFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
)

// maskedPaths are covered in the job's view (an empty read-only tmpfs on a
// directory, /dev/null on a file), as runc and Docker mask them by default:
// they leak host information (kernel memory, keys of other users, timers and
// scheduling of every task) or offer host-wide knobs.
func maskedPaths() []string {
	return []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
}

// hostSecrets are masked in the host's view like maskedPaths: root-only
// files that a root job (CAP_DAC_OVERRIDE) could otherwise read through the
// read-only host: password hashes, sshd's host keys, root's home. Jobs of a
// dynamic user cannot read them anyway and skip the masks (view.MaskSecrets).
func hostSecrets() []string {
	return []string{"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/ssh", "/root"}
}

// readOnlyProcPaths are read-only in the job's /proc (the rest of it stays
// writable for the job's own processes: oom_score_adj, comm, ...).
func readOnlyProcPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// devNodes are bound from the host's /dev into the job's.
func devNodes() []string { return []string{"null", "zero", "full", "random", "urandom", "tty"} }

// privateTmpfsDirs get a private tmpfs when the view has them.
func privateTmpfsDirs() []string { return []string{"/tmp", "/var/tmp", "/run"} }

// buildView builds the job's view (see view.go) and returns the job's home.
// It runs in the shim, in its own mount namespace with private propagation,
// as root, before the credentials change.
func buildView(v view) (home string, err error) {
	// The directories and files made here get the modes asked for, whatever
	// umask the server runs with (systemd's UMask=0077 would make a bind's
	// mount point under /tmp unreachable for the job). The job gets the
	// server's umask back.
	defer unix.Umask(unix.Umask(0o022))
	// The host objects that mounts below will cover, opened now.
	devFD, err := openPath("/dev")
	if err != nil {
		return "", shimErr("open /dev", err)
	}
	defer unix.Close(devFD)
	cgFDs := make([]int, len(v.Cgroups))
	for i, c := range v.Cgroups {
		if cgFDs[i], err = openPath(c.Host); err != nil {
			return "", shimErr("open cgroup", err)
		}
		defer unix.Close(cgFDs[i])
	}
	bindFDs := make([]int, len(v.Binds))
	for i, b := range v.Binds {
		if bindFDs[i], err = openPath(b.Host); err != nil {
			return "", shimErr("bind "+b.Job, err)
		}
		defer unix.Close(bindFDs[i])
	}

	root := "/"
	if v.Image != "" {
		// The image becomes a mount of its own: pivot_root needs one.
		if err := unix.Mount(v.Image, v.Image, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return "", shimErr("bind image", fmt.Errorf("%s: %w", v.Image, err))
		}
		root = v.Image
	}
	// One call makes the whole tree read-only, every submount included, and
	// nodev: no device node anywhere in it (a container's rootfs under
	// /var/lib, a node in an image) opens; the job's /dev binds its few
	// nodes back with nodev cleared.
	if err := setMountAttr(root, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, 0, true); err != nil {
		return "", shimErr("make the root read-only", err)
	}
	at := func(p string) string { return filepath.Join(root, p) }
	if v.Image == "" {
		for _, h := range v.Hide {
			if err := mountEmpty(h); err != nil && !errors.Is(err, unix.ENOENT) {
				return "", shimErr("hide "+h, err)
			}
		}
		if v.MaskSecrets {
			for _, p := range hostSecrets() {
				if err := mask(p, devFD); err != nil {
					return "", shimErr("mask "+p, err)
				}
			}
		}
	}
	if err := mountProc(at, devFD); err != nil {
		return "", err
	}
	if err := mountDev(at("/dev"), devFD, v.TmpfsSize); err != nil {
		return "", err
	}
	// In the host's view the cgroup mounts are read-only already: their
	// binds are born read-only.
	if err := mountSys(at, devFD, v.Cgroups, cgFDs, v.Image == ""); err != nil {
		return "", err
	}
	if err := mountPrivateTmpfs(at, v.TmpfsSize); err != nil {
		return "", err
	}
	home, err = mountHome(at, v.TmpfsSize, v.HomeUID, v.HomeGID)
	if err != nil {
		return "", err
	}
	for i, b := range v.Binds {
		if err := bindIn(bindFDs[i], at(b.Job), b.Writable); err != nil {
			return "", shimErr("bind "+b.Job, err)
		}
	}
	if v.Image != "" {
		if err := enterRoot(root); err != nil {
			return "", shimErr("enter image", err)
		}
	}
	return home, nil
}

// openPath opens p as an O_PATH file descriptor (a handle to bind from).
func openPath(p string) (int, error) {
	fd, err := unix.Open(p, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", p, err)
	}
	return fd, nil
}

// fdPath names what fd refers to, for mount(2)'s source (the magic link is
// followed to the very object the fd holds, even where a mount covers it).
func fdPath(fd int, name ...string) string {
	return filepath.Join(append([]string{"/proc/self/fd", strconv.Itoa(fd)}, name...)...)
}

// mountTmpfs mounts a fresh tmpfs with flags and data on dir.
func mountTmpfs(dir string, flags uintptr, data string) error {
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, data); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// mountEmpty covers dir with an empty read-only tmpfs.
func mountEmpty(dir string) error {
	return mountTmpfs(dir, unix.MS_RDONLY|sealedFlags, "mode=0555,size=4k,nr_inodes=2")
}

// bindReadOnly binds src on dst (a file or a directory) and makes the bind
// read-only.
func bindReadOnly(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", dst, err)
	}
	return setMountAttr(dst, unix.MOUNT_ATTR_RDONLY, 0, true)
}

// mask covers p, if it exists: an empty read-only tmpfs on a directory,
// the host's /dev/null on anything else.
func mask(p string, devFD int) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return mountEmpty(p)
	}
	if err := unix.Mount(fdPath(devFD, "null"), p, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	// The bind is a copy of the host's /dev mount, nodev in the view:
	// cleared, the masked file reads empty (rather than "permission
	// denied"). Read-only: a root job's chmod must not reach the host's
	// /dev/null (the host's /dev is not read-only in an image's view).
	return setMountAttr(p, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID, unix.MOUNT_ATTR_NODEV, false)
}

// mountProc mounts the PID namespace's /proc, masks runc's masked paths in
// it and makes its read-only paths read-only.
func mountProc(at func(string) string, devFD int) error {
	if err := unix.Mount("proc", at("/proc"), "proc", sealedFlags, ""); err != nil {
		return shimErr("mount /proc", err)
	}
	for _, p := range maskedPaths() {
		if !strings.HasPrefix(p, "/proc/") {
			continue
		}
		if err := mask(at(p), devFD); err != nil {
			return shimErr("mask "+p, err)
		}
	}
	for _, p := range readOnlyProcPaths() {
		q := at(p)
		if _, err := os.Lstat(q); err != nil {
			continue
		}
		if err := bindReadOnly(q, q); err != nil {
			return shimErr("make "+p+" read-only", err)
		}
	}
	return nil
}

// mountDev builds the job's /dev: a tmpfs with the host's harmless nodes
// bound in (each bind a mount without nodev, although the tmpfs and the
// rest of the view are nodev), a devpts
// instance of its own, a private /dev/shm, and the usual symlinks; then the
// tmpfs is made read-only, so that not even a root job can make nodes in it.
func mountDev(dev string, devFD int, size uint64) error {
	if err := mountTmpfs(dev, sealedFlags, "mode=0755,size=64k"); err != nil {
		return shimErr("mount /dev", err)
	}
	for _, n := range devNodes() {
		var st unix.Stat_t
		if err := unix.Fstatat(devFD, n, &st, 0); err != nil {
			continue // the host has no such node
		}
		p := filepath.Join(dev, n)
		fd, err := unix.Open(p, unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return shimErr("mount /dev", err)
		}
		unix.Close(fd)
		if err := unix.Mount(fdPath(devFD, n), p, "", unix.MS_BIND, ""); err != nil {
			return shimErr("mount /dev", fmt.Errorf("bind %s: %w", p, err))
		}
		// Read-only (a root job's chmod must not reach the host's node, the
		// host's /dev is not read-only in an image's view), and not nodev.
		if err := setMountAttr(p, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID, unix.MOUNT_ATTR_NODEV, false); err != nil {
			return shimErr("mount /dev", err)
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := unix.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return shimErr("mount /dev", err)
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, devptsOptions); err != nil {
		return shimErr("mount /dev/pts", err)
	}
	if err := mountTmpfs(filepath.Join(dev, "shm"), tmpfsFlags, tmpfsData(0o1777, size)); err != nil {
		return shimErr("mount /dev/shm", err)
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd",
		"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := unix.Symlink(target, filepath.Join(dev, name)); err != nil {
			return shimErr("mount /dev", err)
		}
	}
	if err := setMountAttr(dev, unix.MOUNT_ATTR_RDONLY, 0, false); err != nil {
		return shimErr("make /dev read-only", err)
	}
	return nil
}

// mountSys mounts a fresh, read-only sysfs: made in the job's network
// namespace, its /sys/class/net lists the job's interfaces (lo) only. The
// host's cgroup tree is not in it: the job's own cgroup directories are
// bound at /sys/fs/cgroup, read-only.
func mountSys(at func(string) string, devFD int, cgroups []viewCgroup, cgFDs []int, readOnlySources bool) error {
	bindCgroup := func(fd int, dst string) error {
		if readOnlySources {
			return unix.Mount(fdPath(fd), dst, "", unix.MS_BIND, "")
		}
		return bindReadOnly(fdPath(fd), dst)
	}
	sys := at("/sys")
	if err := unix.Mount("sysfs", sys, "sysfs", unix.MS_RDONLY|sealedFlags, ""); err != nil {
		return shimErr("mount /sys", err)
	}
	for _, p := range maskedPaths() {
		if !strings.HasPrefix(p, "/sys/") {
			continue
		}
		if err := mask(at(p), devFD); err != nil {
			return shimErr("mask "+p, err)
		}
	}
	cg := at("/sys/fs/cgroup")
	if len(cgroups) == 1 && cgroups[0].Name == "" {
		if err := bindCgroup(cgFDs[0], cg); err != nil {
			return shimErr("mount /sys/fs/cgroup", err)
		}
		return nil
	}
	if err := mountTmpfs(cg, sealedFlags, "mode=0755,size=64k"); err != nil {
		return shimErr("mount /sys/fs/cgroup", err)
	}
	for i, c := range cgroups {
		dir := filepath.Join(cg, c.Name)
		if err := unix.Mkdir(dir, 0o755); err != nil {
			return shimErr("mount /sys/fs/cgroup", err)
		}
		if err := bindCgroup(cgFDs[i], dir); err != nil {
			return shimErr("mount /sys/fs/cgroup", err)
		}
		for _, l := range c.Links {
			if err := unix.Symlink(c.Name, filepath.Join(cg, l)); err != nil {
				return shimErr("mount /sys/fs/cgroup", err)
			}
		}
	}
	if err := setMountAttr(cg, unix.MOUNT_ATTR_RDONLY, 0, false); err != nil {
		return shimErr("mount /sys/fs/cgroup", err)
	}
	return nil
}

// tmpfsData is the mount data of a private tmpfs.
func tmpfsData(mode uint32, size uint64) string {
	return fmt.Sprintf("mode=%04o,size=%d", mode, size)
}

// mountPrivateTmpfs mounts a private tmpfs on each of privateTmpfsDirs the
// view has, and makes /run/lock.
func mountPrivateTmpfs(at func(string) string, size uint64) error {
	for _, d := range privateTmpfsDirs() {
		if !isDir(at(d)) {
			continue
		}
		if err := mountTmpfs(at(d), tmpfsFlags, tmpfsData(0o1777, size)); err != nil {
			return shimErr("mount "+d, err)
		}
		if d == "/run" {
			// mkdir's mode is masked by the umask the job inherits.
			lock := at("/run/lock")
			if err := unix.Mkdir(lock, 0o755); err != nil {
				return shimErr("mount /run", err)
			}
			if err := unix.Chmod(lock, 0o1777); err != nil {
				return shimErr("mount /run", err)
			}
		}
	}
	return nil
}

// mountHome gives the job its home, jobHome, when the view has /home: a
// read-only tmpfs on /home (the host's home directories are not in the
// view) holding the job's own writable tmpfs, owned by uid and gid. Without
// /home the home is fallbackHome (or / without that).
func mountHome(at func(string) string, size uint64, uid, gid uint32) (string, error) {
	if !isDir(at("/home")) {
		if isDir(at(fallbackHome)) {
			return fallbackHome, nil
		}
		return "/", nil
	}
	if err := mountTmpfs(at("/home"), sealedFlags, "mode=0755,size=16k,nr_inodes=4"); err != nil {
		return "", shimErr("mount /home", err)
	}
	home := at(jobHome)
	if err := unix.Mkdir(home, 0o700); err != nil {
		return "", shimErr("mount "+jobHome, err)
	}
	data := fmt.Sprintf("%s,uid=%d,gid=%d", tmpfsData(0o700, size), uid, gid)
	if err := mountTmpfs(home, tmpfsFlags, data); err != nil {
		return "", shimErr("mount "+jobHome, err)
	}
	if err := setMountAttr(at("/home"), unix.MOUNT_ATTR_RDONLY, 0, false); err != nil {
		return "", shimErr("mount /home", err)
	}
	return jobHome, nil
}

// bindIn binds what fd refers to on dst, creating dst first if it is
// missing (which works only under the job's private tmpfs mounts: the rest
// is read-only), read-only with every submount unless writable.
func bindIn(fd int, dst string, writable bool) error {
	if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = os.MkdirAll(dst, 0o755)
		} else {
			err = os.MkdirAll(filepath.Dir(dst), 0o755)
			if err == nil {
				var f *os.File
				if f, err = os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
					f.Close()
				}
			}
		}
		if err != nil {
			return fmt.Errorf("%s is not in the job's view and cannot be made there (only under /tmp, /var/tmp, /run or %s): %w", dst, jobHome, err)
		}
	}
	if err := unix.Mount(fdPath(fd), dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if writable {
		return setMountAttr(dst, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, unix.MOUNT_ATTR_RDONLY, false)
	}
	return setMountAttr(dst, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV, 0, true)
}

// enterRoot makes the mount root the job's root directory. pivot_root
// detaches the host's tree from the namespace altogether; where the host's
// root is the initramfs (rootfs cannot be pivoted away from), the image is
// moved over / instead and the shim chroots into it, as switch_root does:
// the host's tree then stays below the image's mount, out of reach of a
// job without CAP_SYS_ADMIN.
func enterRoot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	err := unix.PivotRoot(".", ".")
	if err == nil {
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detach the host's root: %w", err)
		}
		return unix.Chdir("/")
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the image over /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// isDir reports whether p is a directory (following symlinks).
func isDir(p string) bool {
	var st unix.Stat_t
	return unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// setMountAttr sets and clears per-mount attributes (MOUNT_ATTR_RDONLY,
// MOUNT_ATTR_NOSUID, ...) of the mount at p, and of every mount below it
// when recursive, with mount_setattr(2) (Linux 5.12). Older kernels get the
// same with a read-only bind remount of each mount (walking mountinfo when
// recursive).
func setMountAttr(p string, set, clr uint64, recursive bool) error {
	var flags uint
	if recursive {
		flags = unix.AT_RECURSIVE
	}
	err := unix.MountSetattr(unix.AT_FDCWD, p, flags, &unix.MountAttr{Attr_set: set, Attr_clr: clr})
	if !errors.Is(err, unix.ENOSYS) {
		if err != nil {
			return fmt.Errorf("mount_setattr %s: %w", p, err)
		}
		return nil
	}
	targets := []string{p}
	if recursive {
		mounts, err := readMountinfo(defaultMountinfo)
		if err != nil {
			return err
		}
		for _, m := range mounts {
			if m.mountPoint != p && strings.HasPrefix(m.mountPoint, strings.TrimSuffix(p, "/")+"/") {
				targets = append(targets, m.mountPoint)
			}
		}
	}
	for _, t := range targets {
		var st unix.Statfs_t
		if err := unix.Statfs(t, &st); err != nil {
			continue // covered by a later mount, or gone
		}
		var kept uintptr
		for st2ms, ms := range map[int64]uintptr{
			unix.ST_RDONLY: unix.MS_RDONLY, unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV,
			unix.ST_NOEXEC: unix.MS_NOEXEC, unix.ST_NOATIME: unix.MS_NOATIME,
			unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME,
		} {
			if st.Flags&st2ms != 0 {
				kept |= ms
			}
		}
		kept |= attrFlags(set)
		kept &^= attrFlags(clr)
		if err := unix.Mount("", t, "", unix.MS_BIND|unix.MS_REMOUNT|kept, ""); err != nil {
			return fmt.Errorf("remount %s: %w", t, err)
		}
	}
	return nil
}

// attrFlags maps MOUNT_ATTR_* to their MS_* mount flags.
func attrFlags(attr uint64) uintptr {
	var f uintptr
	for a, ms := range map[uint64]uintptr{
		unix.MOUNT_ATTR_RDONLY: unix.MS_RDONLY, unix.MOUNT_ATTR_NOSUID: unix.MS_NOSUID,
		unix.MOUNT_ATTR_NODEV: unix.MS_NODEV, unix.MOUNT_ATTR_NOEXEC: unix.MS_NOEXEC,
	} {
		if attr&a != 0 {
			f |= ms
		}
	}
	return f
}
