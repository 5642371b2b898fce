package certgen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// File modes of what Generate writes. Keys are created with keyMode from the
// start (never widened and then narrowed); certificates are public.
const (
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
	dirMode  fs.FileMode = 0o700
)

// Options says what Generate writes.
type Options struct {
	// Dir is the directory the files are written to; it is created (0700)
	// if missing. Required.
	Dir string
	// Hosts are extra names or IP addresses of the server, in addition to
	// localhost, 127.0.0.1 and ::1.
	Hosts []string
	// Users get one client certificate each. None is fine.
	Users []User
	// Validity is how long the server and client certificates are valid;
	// zero means DefaultValidity. The CA is valid CAValidityMargin longer.
	Validity time.Duration
	// Force overwrites existing files. Without it Generate writes nothing
	// and returns an error wrapping ErrExists if any file it would write
	// exists, most importantly ca.crt or ca.key.
	Force bool
	// Now is the clock; nil means time.Now. Tests set it to make
	// not-yet-valid or expired certificates.
	Now func() time.Time
}

// Generate writes a fresh CA (ca.crt, ca.key), a server certificate
// (server.crt, server.key) and one client certificate per user (NAME.crt,
// NAME.key) into opts.Dir, and returns the paths it wrote in that order.
// Keys are PKCS#8 PEM files with mode 0600, certificates PEM files with mode
// 0644. Either every file is written or, on error, none that this call
// created is left behind.
func Generate(opts Options) ([]string, error) {
	if opts.Dir == "" {
		return nil, errors.New("certgen: no output directory")
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("certgen: %w, got %v", ErrInvalidValidity, validity)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	seen := map[string]bool{}
	for _, u := range opts.Users {
		if err := u.Validate(); err != nil {
			return nil, fmt.Errorf("certgen: %w", err)
		}
		if seen[u.Name] {
			return nil, fmt.Errorf("certgen: %w %q: given twice", ErrInvalidUser, u.Name)
		}
		seen[u.Name] = true
	}

	// Make everything in memory first, so that a failure writes nothing.
	t := now()
	ca, err := NewCA(t, validity+CAValidityMargin)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA: %w", err)
	}
	server, err := NewServerCert(ca, opts.Hosts, t, validity)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	pairs := []namedPair{{"ca", ca}, {"server", server}}
	for _, u := range opts.Users {
		kp, err := NewClientCert(ca, u, t, validity)
		if err != nil {
			return nil, fmt.Errorf("certgen: user %q: %w", u.Name, err)
		}
		pairs = append(pairs, namedPair{u.Name, kp})
	}

	var files []outFile
	for _, p := range pairs {
		keyPEM, err := p.kp.KeyPEM()
		if err != nil {
			return nil, fmt.Errorf("certgen: %s: %w", p.name, err)
		}
		files = append(files,
			outFile{filepath.Join(opts.Dir, p.name+".crt"), p.kp.CertPEM(), certMode},
			outFile{filepath.Join(opts.Dir, p.name+".key"), keyPEM, keyMode},
		)
	}

	if err := os.MkdirAll(opts.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	if !opts.Force {
		for _, f := range files {
			if _, err := os.Lstat(f.path); err == nil {
				return nil, fmt.Errorf("certgen: %s %w", f.path, ErrExists)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("certgen: %w", err)
			}
		}
	}
	var written []string
	for _, f := range files {
		if err := writeFile(f, opts.Force); err != nil {
			for _, p := range written {
				os.Remove(p) // best effort: leave nothing half-made behind
			}
			return nil, fmt.Errorf("certgen: %w", err)
		}
		written = append(written, f.path)
	}
	return written, nil
}

type namedPair struct {
	name string
	kp   KeyPair
}

type outFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// writeFile creates f.path exclusively with f.mode, so a key is never
// readable by others even for an instant; with force it first removes an
// existing file (and so never writes through a symlink planted there).
func writeFile(f outFile, force bool) error {
	if force {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	fd, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s %w", f.path, ErrExists)
	}
	if err != nil {
		return err
	}
	// The umask may have narrowed a certificate's mode; certificates are
	// public, so set it exactly. A key's mode is only ever narrowed.
	if f.mode == certMode {
		if err := fd.Chmod(f.mode); err != nil {
			fd.Close()
			return err
		}
	}
	if _, err := fd.Write(f.data); err != nil {
		fd.Close()
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	if err := fd.Sync(); err != nil {
		fd.Close()
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	return fd.Close()
}
