package sandbox

import (
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/sys/unix"
)

// jobCapabilities are the only capabilities a job may ever hold: Docker's
// default set of 14. They are the bounding set of every job, and a root
// job's bounding, permitted, effective, inheritable and ambient sets. Not in
// it, among others: CAP_SYS_ADMIN (mounts, namespaces: remounting the view
// or the cgroups writable), CAP_SYS_TIME (the clock), CAP_SYS_MODULE,
// CAP_SYS_RAWIO, CAP_SYS_PTRACE, CAP_NET_ADMIN, CAP_SYS_BOOT, CAP_DAC_READ_SEARCH
// (open_by_handle_at) and CAP_MAC_*, CAP_SYSLOG, CAP_SYS_RESOURCE.
func jobCapabilities() []int {
	return []int{
		unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FSETID, unix.CAP_FOWNER, unix.CAP_MKNOD,
		unix.CAP_NET_RAW, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETFCAP, unix.CAP_SETPCAP,
		unix.CAP_NET_BIND_SERVICE, unix.CAP_SYS_CHROOT, unix.CAP_KILL, unix.CAP_AUDIT_WRITE,
	}
}

// capMask is caps as a 64-bit set.
func capMask(caps []int) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return m
}

// limitBoundingSet drops every capability but jobCapabilities from the
// bounding set: nothing the job executes can ever gain another one. It needs
// CAP_SETPCAP, so it runs while the shim is still root; the shim's own
// effective capabilities stay until execve (or until dropRootCapabilities).
func limitBoundingSet() error {
	keep := capMask(jobCapabilities())
	for c := 0; c < 64; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			break // past the kernel's last capability
		}
		if err != nil {
			return shimErr("limit capabilities", fmt.Errorf("drop capability %d from the bounding set: %w", c, err))
		}
	}
	return nil
}

// dropRootCapabilities leaves a job that runs as root exactly
// jobCapabilities in its permitted, effective and inheritable sets, and
// raises them as ambient ones, so that they are also exactly what its
// command gets after execve, whatever file capabilities it has (the kernel
// gives root permitted = inheritable | bounding). It also drops the
// supplementary groups. Called last before execve: the shim needs its other
// capabilities until then.
func dropRootCapabilities() error {
	if err := unix.Setgroups(nil); err != nil {
		return shimErr("drop supplementary groups", err)
	}
	keep := capMask(jobCapabilities())
	lo, hi := uint32(keep), uint32(keep>>32)
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: lo, Permitted: lo, Inheritable: lo},
		{Effective: hi, Permitted: hi, Inheritable: hi},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return shimErr("limit capabilities", fmt.Errorf("capset: %w", err))
	}
	for m := keep; m != 0; m &= m - 1 {
		c := bits.TrailingZeros64(m)
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return shimErr("limit capabilities", fmt.Errorf("raise ambient capability %d: %w", c, err))
		}
	}
	return nil
}

// joinSessionKeyring gives the job a fresh anonymous session keyring, owned
// by its (already switched) user: keys it adds to @s are seen by no other
// job and go away with it. With a uid of its own (dynamic), the uid's
// persistent user keyring @u is cleared as well: a job that had the uid
// before may have left keys there.
func joinSessionKeyring(clearUserKeyring bool) error {
	// KEYCTL_JOIN_SESSION_KEYRING with a NULL name: a new anonymous keyring.
	if _, err := unix.KeyctlInt(unix.KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0, 0); err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return nil // a kernel without keyrings: nothing to share
		}
		return shimErr("join session keyring", err)
	}
	if clearUserKeyring {
		if _, err := unix.KeyctlInt(unix.KEYCTL_CLEAR, unix.KEY_SPEC_USER_KEYRING, 0, 0, 0); err != nil {
			return shimErr("clear user keyring", err)
		}
	}
	return nil
}
