// Package certgen creates the certificates of a Telehandler deployment: a
// certificate authority, the server's certificate and one client certificate
// per user, with the user's role written into the certificate.
//
// It exists so that mutual TLS works out of the box for development and
// small deployments without openssl recipes. Every key is ECDSA P-384; the
// CA lives for years and signs users added later, the server and client
// certificates are short-lived and renewed with the same CA. The server
// certificate may only authenticate a server and a client certificate only
// a client.
//
// A client certificate carries the user's identity in its Subject Common
// Name and the user's role as the single Subject Organizational Unit
// ("admin" or "user"), where openssl and grpcurl users can see it; RoleOf
// reads it back.
package certgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// Roles a client certificate can carry.
const (
	// RoleUser may start jobs and see and control only the jobs it owns.
	RoleUser = "user"
	// RoleAdmin may see and control every job.
	RoleAdmin = "admin"
)

// DefaultValidity is how long server and client certificates are valid when
// Options.Validity is zero: one week. Short-lived certificates limit what a
// leaked key is worth; renewing one keeps the CA.
const DefaultValidity = 7 * 24 * time.Hour

// DefaultCAValidity is how long a new CA is valid when Options.CAValidity
// is zero: ten years (365-day years), so that adding users and renewing
// certificates never forces a new CA on everyone.
const DefaultCAValidity = 10 * 365 * 24 * time.Hour

// clockSkew is how far before "now" certificates become valid, so that a
// peer whose clock is slightly behind still accepts them.
const clockSkew = time.Minute

// maxNameLen is the longest user name: RFC 5280's upper bound for a Common
// Name.
const maxNameLen = 64

// Organization written into every certificate's subject.
const organization = "Telehandler"

var (
	// ErrExists is returned when a file Generate would write already exists
	// and neither Options.Renew nor Options.Force allows replacing it.
	ErrExists = errors.New("already exists")
	// ErrInvalidUser is returned for a user name that is empty, too long,
	// has characters other than letters, digits, '.', '_' and '-', does not
	// start with a letter or digit, or is one of the reserved names "ca" and
	// "server" (which would collide with those files).
	ErrInvalidUser = errors.New("invalid user name")
	// ErrInvalidRole is returned for a role other than RoleUser and
	// RoleAdmin.
	ErrInvalidRole = errors.New("invalid role")
	// ErrNoRole is returned by RoleOf for a certificate that does not carry
	// exactly one recognised role.
	ErrNoRole = errors.New("certificate carries no single recognised role")
	// ErrInvalidValidity is returned for a negative validity.
	ErrInvalidValidity = errors.New("validity must be positive")
)

// User is a client certificate to create.
type User struct {
	// Name becomes the certificate's Subject Common Name (the identity the
	// server sees) and the base name of its files (NAME.crt, NAME.key).
	Name string
	// Role is RoleUser or RoleAdmin; empty means RoleUser.
	Role string
}

// ParseUser parses the command line form NAME or NAME:ROLE. A missing role
// is RoleUser. The result is validated.
func ParseUser(s string) (User, error) {
	name, role, _ := strings.Cut(s, ":")
	u := User{Name: name, Role: role}
	if u.Role == "" {
		u.Role = RoleUser
	}
	if err := u.Validate(); err != nil {
		return User{}, err
	}
	return u, nil
}

// Validate reports whether u's name and role are acceptable (an empty role
// is, and means RoleUser).
func (u User) Validate() error {
	if !validName(u.Name) {
		return fmt.Errorf("%w %q: want 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit, not \"ca\" or \"server\"",
			ErrInvalidUser, u.Name, maxNameLen)
	}
	switch u.Role {
	case "", RoleUser, RoleAdmin:
		return nil
	default:
		return fmt.Errorf("%w %q for user %q: want %q or %q", ErrInvalidRole, u.Role, u.Name, RoleUser, RoleAdmin)
	}
}

func (u User) role() string {
	if u.Role == "" {
		return RoleUser
	}
	return u.Role
}

func validName(name string) bool {
	if name == "" || len(name) > maxNameLen || name == "ca" || name == "server" {
		return false
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return false
		}
		if !alnum && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// RoleOf returns the role written into a client certificate: its Subject
// Organizational Units must hold exactly one of RoleUser and RoleAdmin
// (other units are ignored). Otherwise it returns an error wrapping ErrNoRole.
func RoleOf(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", fmt.Errorf("%w: no certificate", ErrNoRole)
	}
	var roles []string
	for _, ou := range cert.Subject.OrganizationalUnit {
		if ou == RoleUser || ou == RoleAdmin {
			roles = append(roles, ou)
		}
	}
	if len(roles) != 1 {
		return "", fmt.Errorf("%w: %q has organizational units %q", ErrNoRole, cert.Subject.CommonName, cert.Subject.OrganizationalUnit)
	}
	return roles[0], nil
}

// KeyPair is a certificate and its private key.
type KeyPair struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// shortened is set when the certificate was cut to its issuer's end.
	shortened bool
}

// CertPEM returns the certificate as a PEM "CERTIFICATE" block.
func (kp KeyPair) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kp.Cert.Raw})
}

// KeyPEM returns the private key as a PKCS#8 PEM "PRIVATE KEY" block.
func (kp KeyPair) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(kp.Key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NewCA creates a self-signed certificate authority valid from a minute
// before now for validity. It may sign leaf certificates only (MaxPathLen 0).
func NewCA(now time.Time, validity time.Duration) (KeyPair, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{organization}, CommonName: "Telehandler CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	return issue(tmpl, KeyPair{}, now, validity)
}

// NewServerCert creates a certificate, signed by ca, that may only
// authenticate a TLS server. Its subject alternative names are localhost,
// 127.0.0.1 and ::1 plus hosts; a host that parses as an IP address is an IP
// SAN, anything else a DNS SAN.
func NewServerCert(ca KeyPair, hosts []string, now time.Time, validity time.Duration) (KeyPair, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{organization}, CommonName: "Telehandler server"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		h = strings.TrimSpace(h)
		if h == "" {
			return KeyPair{}, errors.New("server certificate: empty host name")
		}
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
			if !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		if !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return issue(tmpl, ca, now, validity)
}

// NewClientCert creates a certificate, signed by ca, that may only
// authenticate a TLS client: Subject Common Name u.Name, Subject
// Organizational Unit u's role.
func NewClientCert(ca KeyPair, u User, now time.Time, validity time.Duration) (KeyPair, error) {
	if err := u.Validate(); err != nil {
		return KeyPair{}, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization:       []string{organization},
			OrganizationalUnit: []string{u.role()},
			CommonName:         u.Name,
		},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return issue(tmpl, ca, now, validity)
}

// issue fills in the key, serial and validity of tmpl and signs it with
// parent, or self-signs it when parent has no certificate.
func issue(tmpl *x509.Certificate, parent KeyPair, now time.Time, validity time.Duration) (KeyPair, error) {
	if validity <= 0 {
		return KeyPair{}, fmt.Errorf("%w, got %v", ErrInvalidValidity, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate serial: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1)) // positive, never zero
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(validity)

	signer, issuer, shortened := key, tmpl, false
	if parent.Cert != nil {
		signer, issuer = parent.Key, parent.Cert
		// No certificate outlives its issuer.
		if tmpl.NotAfter.After(parent.Cert.NotAfter) {
			tmpl.NotAfter, shortened = parent.Cert.NotAfter, true
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		return KeyPair{}, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return KeyPair{Cert: cert, Key: key, shortened: shortened}, nil
}
