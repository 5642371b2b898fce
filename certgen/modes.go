package certgen

import (
	"io/fs"
	"os"
	"runtime"
)

// The one rule for files of a deployment's keys that are too open, used by
// certgen, serve and the CLI to warn: a private key any of whose group or
// other bits is set (ssh refuses such a key), and a file or directory
// others may write (whoever can replace a certificate, a CA or a
// configuration chooses whom you trust). The mode is returned for the
// message; a file that cannot be read is not reported (its use fails with
// the reason), and Windows has no such modes.
const (
	keyLooseBits      fs.FileMode = 0o077
	writableLooseBits fs.FileMode = 0o022
)

// KeyExposed reports whether others than its owner may read or change the
// private key at path, and its mode.
func KeyExposed(path string) (fs.FileMode, bool) { return looseMode(path, keyLooseBits) }

// WritableByOthers reports whether others than its owner may change the
// file or directory at path, and its mode.
func WritableByOthers(path string) (fs.FileMode, bool) { return looseMode(path, writableLooseBits) }

func looseMode(path string, bits fs.FileMode) (fs.FileMode, bool) {
	if runtime.GOOS == "windows" || path == "" {
		return 0, false
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&bits == 0 {
		return 0, false
	}
	return fi.Mode().Perm(), true
}
