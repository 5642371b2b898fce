package client

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// The CLI's TLS session cache. Every command is a new process and a new
// connection; with the ticket the server gave the previous one, the next
// resumes its TLS 1.3 session (psk_dhe_ke: a fresh key exchange, no
// certificate signed or verified on either side, and the client's P-384 key
// is not even parsed). The server decides what a resumed session may do
// (server/session.go); the client's part is to keep a ticket as safe as
// the key it stands for:
//
//   - one file per connection setting: its name is a hash of the server's
//     address and name, the CA and the client certificate, so another
//     server, CA or identity never gets this one's session;
//   - sealed (AES-GCM) with a key derived from the private key file's
//     bytes: a file written for another key, edited or planted by someone
//     without the key does not open, and without the key a copied file is
//     useless;
//   - used only when it and its directories are owned by us and closed to
//     others (0700 directories, 0600 file); anything wrong (corrupt,
//     expired, refused by the server) means a full handshake, silently.
//
// --no-session-cache (TELEHANDLER_NO_SESSION_CACHE) turns it off.

// sessionDir is where session files live: $XDG_CACHE_HOME/telehandler/
// tls-sessions, or ~/.cache/telehandler/tls-sessions.
func sessionDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "telehandler", "tls-sessions"), nil
}

// sessionMagic starts a session file (and is its format's version).
const sessionMagic = "telehandler-tls-session-v1\n"

// maxSessionFile bounds what is read: a ticket and a few certificates.
const maxSessionFile = 64 << 10

// sessionCache is the tls.ClientSessionCache of one connection setting,
// backed by one file.
type sessionCache struct {
	dir, path string
	aead      cipher.AEAD
	aad       []byte

	mu      sync.Mutex
	state   *tls.ClientSessionState // as loaded, or as last Put
	resumed bool                    // the last handshake resumed state
}

// openSessionCache returns the session cache of a connection setting, with
// the session of its file loaded if there is a good one; nil when there is
// no cache directory we can trust.
func openSessionCache(addr, serverName string, caPEM, certPEM, keyPEM []byte) *sessionCache {
	dir, err := sessionDir()
	if err != nil || !ownExisting(dir) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if !privateDir(d) {
			return nil
		}
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte(sessionMagic), []byte(addr), []byte(serverName), caPEM, certPEM} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(part))))
		h.Write(part)
	}
	name := hex.EncodeToString(h.Sum(nil)[:20])
	key, err := hkdf.Key(sha256.New, keyPEM, nil, sessionMagic+name, 32)
	if err != nil {
		return nil
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil
	}
	c := &sessionCache{dir: dir, path: filepath.Join(dir, name), aead: aead, aad: []byte(sessionMagic + name)}
	c.state = c.load()
	return c
}

// ownExisting reports whether the nearest existing directory on the way to
// dir is ours: sudo telehandler, with HOME still the user's, must not
// create root's directories in the user's cache.
func ownExisting(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Lstat(d)
		if err == nil {
			return ownedByUs(fi)
		}
		if d == filepath.Dir(d) {
			return false
		}
	}
}

// privateDir reports whether dir is a directory of ours that others may
// not write (the cache's own directory must be 0700).
func privateDir(dir string) bool {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || !ownedByUs(fi) {
		return false
	}
	if filepath.Base(dir) == "tls-sessions" {
		return fi.Mode().Perm()&0o077 == 0
	}
	return fi.Mode().Perm()&0o022 == 0
}

// has reports whether a session was loaded.
func (c *sessionCache) has() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != nil
}

// load reads and opens the session file; nil if there is none we may use.
func (c *sessionCache) load() *tls.ClientSessionState {
	f, err := os.OpenFile(c.path, os.O_RDONLY|openNoFollow, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || !ownedByUs(fi) || fi.Mode().Perm()&0o077 != 0 || fi.Size() > maxSessionFile {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSessionFile))
	if err != nil {
		return nil
	}
	state, err := c.open(data)
	if err != nil {
		return nil
	}
	return state
}

// open decodes a session file: sessionMagic, the nonce, and sealed, the
// ticket's length, the ticket and the session state.
func (c *sessionCache) open(data []byte) (*tls.ClientSessionState, error) {
	rest, ok := cutPrefix(data, sessionMagic)
	ns := c.aead.NonceSize()
	if !ok || len(rest) < ns {
		return nil, errors.New("not a session file")
	}
	plain, err := c.aead.Open(nil, rest[:ns], rest[ns:], c.aad)
	if err != nil {
		return nil, err
	}
	if len(plain) < 4 || uint64(binary.BigEndian.Uint32(plain)) > uint64(len(plain)-4) {
		return nil, errors.New("bad session")
	}
	n := binary.BigEndian.Uint32(plain)
	ticket, stateBytes := plain[4:4+n], plain[4+n:]
	ss, err := tls.ParseSessionState(stateBytes)
	if err != nil {
		return nil, err
	}
	return tls.NewResumptionState(ticket, ss)
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return nil, false
	}
	return b[len(prefix):], true
}

// Get returns the session to resume (tls.ClientSessionCache).
func (c *sessionCache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.state != nil
}

// verifyConnection is the tls.Config's VerifyConnection, which crypto/tls
// calls after every handshake, resumed or full, before the server's ticket
// arrives: it notes which it was.
func (c *sessionCache) verifyConnection(cs tls.ConnectionState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resumed = cs.DidResume
	return nil
}

// Put keeps the session of a new ticket, or forgets the session when cs is
// nil (the server did not resume it) (tls.ClientSessionCache). Only the
// ticket of a full handshake is written: the ticket of a resumed session
// lives no longer on the server (which bounds a session by the time of its
// full handshake), so the file's ticket serves until then, and commands
// that resume write nothing. The file is replaced whole (a new file renamed
// over it), so that a command running at the same time reads the old
// session or the new one. Failing to write costs only the next command a
// full handshake.
func (c *sessionCache) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs != nil && c.resumed && c.state != nil {
		return // keep resuming the session of the file
	}
	c.state = cs
	if cs == nil {
		os.Remove(c.path)
		return
	}
	ticket, ss, err := cs.ResumptionState()
	if err != nil || ss == nil {
		return
	}
	stateBytes, err := ss.Bytes()
	if err != nil {
		return
	}
	plain := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(ticket)+len(stateBytes)), uint32(len(ticket)))
	plain = append(append(plain, ticket...), stateBytes...)
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return
	}
	data := append([]byte(sessionMagic), nonce...)
	data = c.aead.Seal(data, nonce, plain, c.aad)
	f, err := os.CreateTemp(c.dir, ".session-*") // mode 0600
	if err != nil {
		return
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), c.path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// ownedByUs reports whether the file belongs to the effective user.
func ownedByUs(fi fs.FileInfo) bool { return ownerOf(fi) == os.Geteuid() }
