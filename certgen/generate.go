package certgen

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File modes of what Generate writes. Keys are created with keyMode from the
// start (never widened and then narrowed); certificates are public.
const (
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
	dirMode  fs.FileMode = 0o700
)

// ServerName is the name Options.Renew uses for the server certificate
// (server.crt, server.key).
const ServerName = "server"

// Options says what Generate writes.
type Options struct {
	// Dir is the directory the server and client certificates are written
	// to; it is created (0700) if missing. Required.
	Dir string
	// CADir is the directory of the CA (ca.crt, ca.key); "" means Dir. When
	// it holds both files, that CA signs the new certificates and is never
	// rewritten (without Force); when it holds neither, a new CA is made
	// there together with a server certificate in Dir; one file without the
	// other is an error. When CADir is not Dir, Dir gets a copy of ca.crt
	// (the certificate only) for the people the certificates are for.
	CADir string
	// Hosts are extra names or IP addresses of the server, in addition to
	// localhost, 127.0.0.1 and ::1. They go into a new server certificate:
	// with an existing CA, only together with Renew "server".
	Hosts []string
	// Users get one client certificate each. None is fine. A user whose
	// certificate exists in Dir must also be in Renew.
	Users []User
	// Renew names existing certificates in Dir to issue again with a new
	// key and validity: user names, or ServerName. A renewed user keeps the
	// role of its old certificate unless Users gives one; the renewed server
	// keeps its old names and adds Hosts. The old certificate stays valid
	// until it expires: a server's deny list shuts it out earlier.
	Renew []string
	// Validity is how long the server and client certificates are valid;
	// zero means DefaultValidity. No certificate outlives its CA: one that
	// would is cut to the CA's end (Issued.Shortened says so).
	Validity time.Duration
	// CAValidity is how long a new CA is valid; zero means
	// DefaultCAValidity. It must be at least Validity.
	CAValidity time.Duration
	// Force makes a new CA in CADir even if one exists, and overwrites
	// every certificate named. Certificates of the old CA stop working.
	Force bool
	// Now is the clock; nil means time.Now. Tests set it to make
	// not-yet-valid or expired certificates.
	Now func() time.Time
}

// Issued describes one certificate Generate wrote.
type Issued struct {
	// Name is "ca", ServerName or the user's name.
	Name string
	// Role is the user's role; empty for the CA and the server.
	Role string
	// Cert and Key are the paths written.
	Cert, Key string
	// Serial is the certificate's serial number in hex (as a server's
	// deny list and openssl x509 -serial write it).
	Serial string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
	// Shortened is set when the certificate was cut to the CA's end.
	Shortened bool
	// Renewed is set when an older certificate was replaced.
	Renewed bool
}

// Result is what Generate did.
type Result struct {
	// NewCA is set when Generate made the CA (otherwise it signed with an
	// existing one, untouched).
	NewCA bool
	// CA is the CA that signed the certificates; CACert is its ca.crt.
	CA     *x509.Certificate
	CACert string
	// Issued lists the certificates written, the CA first when new.
	Issued []Issued
	// Files lists every path written, in order.
	Files []string
}

// SerialHex writes a serial number as Generate and the deny list do:
// upper-case hex without separators, as openssl x509 -serial prints it.
func SerialHex(n *big.Int) string {
	s := strings.ToUpper(hex.EncodeToString(n.Bytes()))
	if s == "" {
		return "00"
	}
	return s
}

// Generate makes or reuses a CA and writes the server and client
// certificates opts asks for (see Options). Keys are PKCS#8 PEM files with
// mode 0600, certificates PEM files with mode 0644. Every check runs before
// anything is written; an existing file is replaced only when asked (Renew,
// Force), by an atomic rename, so a server reloading its files never reads
// a half-written one.
func Generate(opts Options) (Result, error) {
	p, err := plan(opts)
	if err != nil {
		return Result{}, fmt.Errorf("certgen: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, dirMode); err != nil {
		return Result{}, fmt.Errorf("certgen: %w", err)
	}
	if p.caDir != opts.Dir {
		if err := os.MkdirAll(p.caDir, dirMode); err != nil {
			return Result{}, fmt.Errorf("certgen: %w", err)
		}
	}
	var written []string
	for _, f := range p.files {
		if err := writeFile(f); err != nil {
			for _, path := range written {
				if !slices.Contains(p.replaced, path) {
					os.Remove(path) // best effort: leave nothing new half-made behind
				}
			}
			return Result{}, fmt.Errorf("certgen: %w", err)
		}
		written = append(written, f.path)
	}
	p.result.Files = written
	return p.result, nil
}

// genPlan is everything Generate will write, made and checked in memory.
type genPlan struct {
	caDir    string
	files    []outFile
	replaced []string // paths of files that existed and are replaced
	result   Result
}

// plan does every check and makes every key and certificate in memory.
func plan(opts Options) (*genPlan, error) {
	if opts.Dir == "" {
		return nil, errors.New("no output directory")
	}
	validity, caValidity := opts.Validity, opts.CAValidity
	if validity == 0 {
		validity = DefaultValidity
	}
	if caValidity == 0 {
		caValidity = DefaultCAValidity
	}
	if validity < 0 || caValidity < 0 {
		return nil, fmt.Errorf("%w, got %v and CA %v", ErrInvalidValidity, validity, caValidity)
	}
	if caValidity < validity {
		return nil, fmt.Errorf("%w: the CA's validity %v is shorter than the certificates' %v", ErrInvalidValidity, caValidity, validity)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	t := now()

	// Who is asked for, checked before anything is read or made.
	users := map[string]User{}
	for _, u := range opts.Users {
		if err := u.Validate(); err != nil {
			return nil, err
		}
		if _, dup := users[u.Name]; dup {
			return nil, fmt.Errorf("%w %q: given twice", ErrInvalidUser, u.Name)
		}
		users[u.Name] = u
	}
	renew := map[string]bool{}
	for _, name := range opts.Renew {
		if name != ServerName {
			if err := (User{Name: name}).Validate(); err != nil {
				return nil, fmt.Errorf("renew: %w", err)
			}
		}
		renew[name] = true
	}

	p := &genPlan{caDir: opts.CADir}
	if p.caDir == "" {
		p.caDir = opts.Dir
	}
	caCrt, caKey := filepath.Join(p.caDir, "ca.crt"), filepath.Join(p.caDir, "ca.key")
	var ca KeyPair
	newCA := opts.Force
	if !newCA {
		crtOK, keyOK := exists(caCrt), exists(caKey)
		switch {
		case crtOK && keyOK:
			var err error
			if ca, err = LoadCA(caCrt, caKey); err != nil {
				return nil, err
			}
			if !t.Before(ca.Cert.NotAfter) {
				return nil, fmt.Errorf("the CA in %s expired on %s: make a new one with --force (every certificate must then be issued again)", p.caDir, ca.Cert.NotAfter.Format(time.DateOnly))
			}
		case crtOK || keyOK:
			have, missing := caCrt, caKey
			if keyOK {
				have, missing = caKey, caCrt
			}
			return nil, fmt.Errorf("%s %w, but %s is missing: sign with the CA where its key is (--ca-dir DIR), restore the file, or make a new CA with --force (every certificate must then be issued again)", have, ErrExists, missing)
		default:
			newCA = true
		}
	}
	if newCA {
		var err error
		if ca, err = NewCA(t, caValidity); err != nil {
			return nil, fmt.Errorf("CA: %w", err)
		}
		if err := p.add(namedPair{"ca", ca}, p.caDir, true, &p.result); err != nil {
			return nil, err
		}
	}
	p.result.NewCA, p.result.CA, p.result.CACert = newCA, ca.Cert, caCrt

	// A copy of ca.crt next to certificates made with a CA kept elsewhere.
	if p.caDir != opts.Dir {
		copyPath := filepath.Join(opts.Dir, "ca.crt")
		data, err := os.ReadFile(copyPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			p.files = append(p.files, outFile{copyPath, ca.CertPEM(), certMode})
		case err != nil:
			return nil, err
		case !bytes.Equal(data, ca.CertPEM()) && !opts.Force:
			return nil, fmt.Errorf("%s holds another CA than %s: use another --out, or remove it", copyPath, caCrt)
		case !bytes.Equal(data, ca.CertPEM()):
			p.replaced = append(p.replaced, copyPath)
			p.files = append(p.files, outFile{copyPath, ca.CertPEM(), certMode})
		}
	}

	// The server: new with a new CA, or renewed on request.
	serverCrt := filepath.Join(opts.Dir, ServerName+".crt")
	switch {
	case renew[ServerName]:
		old, err := readCertFile(serverCrt)
		if err != nil {
			return nil, fmt.Errorf("renew server: %w (a server certificate is made together with a new CA)", err)
		}
		hosts := append(hostsOf(old), opts.Hosts...)
		kp, err := NewServerCert(ca, hosts, t, validity)
		if err != nil {
			return nil, err
		}
		if err := p.add(namedPair{ServerName, kp}, opts.Dir, true, &p.result); err != nil {
			return nil, err
		}
	case newCA:
		kp, err := NewServerCert(ca, opts.Hosts, t, validity)
		if err != nil {
			return nil, err
		}
		if err := p.add(namedPair{ServerName, kp}, opts.Dir, opts.Force, &p.result); err != nil {
			return nil, err
		}
	case len(opts.Hosts) > 0:
		return nil, fmt.Errorf("--host goes into the server certificate: add --renew server to issue it again with these names (the CA in %s is kept)", p.caDir)
	}

	// Users: new ones, and renewed ones (keeping their role unless given).
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range users {
			if !yield(n) {
				return
			}
		}
		for n := range renew {
			if _, ok := users[n]; !ok && n != ServerName && !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		u, given := users[name]
		if !given {
			old, err := readCertFile(filepath.Join(opts.Dir, name+".crt"))
			if err != nil {
				return nil, fmt.Errorf("renew %s: %w (a new user needs --user %s)", name, err, name)
			}
			role, err := RoleOf(old)
			if err != nil {
				return nil, fmt.Errorf("renew %s: %w", name, err)
			}
			u = User{Name: name, Role: role}
		}
		kp, err := NewClientCert(ca, u, t, validity)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", name, err)
		}
		if err := p.add(namedPair{name, kp}, opts.Dir, opts.Force || renew[name], &p.result); err != nil {
			return nil, err
		}
		p.result.Issued[len(p.result.Issued)-1].Role = u.role()
	}
	return p, nil
}

// add plans the files of one key pair in dir. Without replace, an existing
// file is an error naming the way to replace it.
func (p *genPlan) add(np namedPair, dir string, replace bool, r *Result) error {
	keyPEM, err := np.kp.KeyPEM()
	if err != nil {
		return fmt.Errorf("%s: %w", np.name, err)
	}
	crt, key := filepath.Join(dir, np.name+".crt"), filepath.Join(dir, np.name+".key")
	renewed := false
	for _, path := range []string{crt, key} {
		if _, err := os.Lstat(path); err == nil {
			if !replace {
				if np.name == "ca" {
					return fmt.Errorf("%s %w (use --force to make a new CA; every certificate must then be issued again)", path, ErrExists)
				}
				return fmt.Errorf("%s %w: --renew %s issues it again (the old one stays valid until it expires; a server's --deny-list shuts it out)", path, ErrExists, np.name)
			}
			renewed = true
			p.replaced = append(p.replaced, path)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	p.files = append(p.files, outFile{crt, np.kp.CertPEM(), certMode}, outFile{key, keyPEM, keyMode})
	r.Issued = append(r.Issued, Issued{
		Name: np.name, Cert: crt, Key: key,
		Serial:    SerialHex(np.kp.Cert.SerialNumber),
		NotAfter:  np.kp.Cert.NotAfter,
		Shortened: np.kp.shortened,
		Renewed:   renewed,
	})
	return nil
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

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// readCertFile reads one PEM certificate.
func readCertFile(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// LoadCA reads a CA certificate and its key, and checks they belong
// together and may sign certificates.
func LoadCA(certFile, keyFile string) (KeyPair, error) {
	cert, err := readCertFile(certFile)
	if err != nil {
		return KeyPair{}, fmt.Errorf("CA: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return KeyPair{}, fmt.Errorf("CA: %s is not a CA certificate", certFile)
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return KeyPair{}, fmt.Errorf("CA: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return KeyPair{}, fmt.Errorf("CA: %s holds no PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return KeyPair{}, fmt.Errorf("CA: %s: %w", keyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return KeyPair{}, fmt.Errorf("CA: %s is not the key of %s", keyFile, certFile)
	}
	return KeyPair{Cert: cert, Key: key}, nil
}

// hostsOf lists the names of a server certificate, for its renewal.
func hostsOf(cert *x509.Certificate) []string {
	hosts := slices.Clone(cert.DNSNames)
	for _, ip := range cert.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return hosts
}

// writeFile writes f.path through a new file in the same directory,
// created exclusively with f.mode (so a key is never readable by others
// even for an instant) and renamed over the target: a reader sees the old
// file or the new one, never a part, and a symlink planted at the target is
// replaced, never written through.
func writeFile(f outFile) error {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(f.path), "."+filepath.Base(f.path)+".tmp-"+hex.EncodeToString(rnd[:]))
	fd, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		fd.Close()
		os.Remove(tmp)
		return err
	}
	// The umask may have narrowed a certificate's mode; certificates are
	// public, so set it exactly. A key's mode is only ever narrowed.
	if f.mode == certMode {
		if err := fd.Chmod(f.mode); err != nil {
			return fail(err)
		}
	}
	if _, err := fd.Write(f.data); err != nil {
		return fail(fmt.Errorf("write %s: %w", f.path, err))
	}
	if err := fd.Sync(); err != nil {
		return fail(fmt.Errorf("sync %s: %w", f.path, err))
	}
	if err := fd.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, f.path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
