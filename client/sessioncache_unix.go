//go:build unix

package client

import (
	"io/fs"
	"syscall"
)

// openNoFollow refuses to open a symbolic link.
const openNoFollow = syscall.O_NOFOLLOW

// ownerOf is the uid owning a file, -1 if unknown.
func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
