package client

import (
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// keyWarning warns when others than its owner may read or change the
// private key at path (any group or other bit, as ssh checks before it
// refuses such a key): whoever reads it acts as you until the certificate
// is denied or expires.
func keyWarning(path string) string {
	mode, ok := looseMode(path, 0o077)
	if !ok {
		return ""
	}
	return fmt.Sprintf("telehandler: warning: key %s can be read by others than you (mode %04o): chmod 600 %s", path, mode, path)
}

// configWarning warns when others than its owner may change the
// configuration file at path, which names the server your commands go to
// and the CA that vouches for it.
func configWarning(path string) string {
	mode, ok := looseMode(path, 0o022)
	if !ok {
		return ""
	}
	return fmt.Sprintf("telehandler: warning: %s can be changed by others than you (mode %04o), who could send your commands to their server: chmod go-w %s", path, mode, path)
}

// looseMode returns the permissions of the file at path when one of the
// bits of mask is set. A file that cannot be read is not reported (using
// it fails with the reason); Windows has no such modes.
func looseMode(path string, mask fs.FileMode) (fs.FileMode, bool) {
	if runtime.GOOS == "windows" || path == "" {
		return 0, false
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&mask == 0 {
		return 0, false
	}
	return fi.Mode().Perm(), true
}
