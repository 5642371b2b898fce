package client

import (
	"fmt"

	"github.com/drrev/telehandler/certgen"
)

// keyWarning warns when others than its owner may read or change the
// private key at path: whoever reads it acts as you until the certificate
// is denied or expires.
func keyWarning(path string) string {
	mode, ok := certgen.KeyExposed(path)
	if !ok {
		return ""
	}
	return fmt.Sprintf("telehandler: warning: key %s can be read by others than you (mode %04o): chmod 600 %s", path, mode, path)
}

// configWarning warns when others than its owner may change the
// configuration file at path, which names the server your commands go to
// and the CA that vouches for it.
func configWarning(path string) string {
	mode, ok := certgen.WritableByOthers(path)
	if !ok {
		return ""
	}
	return fmt.Sprintf("telehandler: warning: %s can be changed by others than you (mode %04o), who could send your commands to their server: chmod go-w %s", path, mode, path)
}
