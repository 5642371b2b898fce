package sandbox

import "golang.org/x/sys/unix"

// The native ABI on arm64 is AArch64; arm32 (compat) calls have another
// AUDIT_ARCH. No bit of the number marks another ABI.
const (
	seccompArch       = unix.AUDIT_ARCH_AARCH64
	seccompForeignBit = 0
)

// seccompArchAllowed: chroot (CAP_SYS_CHROOT, in Docker's default
// capabilities); arm64 has no call of its own in Docker's list.
var seccompArchAllowed = []uint32{unix.SYS_CHROOT}

// seccompArchRefused: nothing beyond the common list.
var seccompArchRefused = []uint32{}
