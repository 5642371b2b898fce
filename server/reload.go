package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/drrev/telehandler/certgen"
)

// tlsState is what Reload replaces at once: the TLS configuration every new
// connection gets (the server's certificate and the CA pool) and the deny
// list every call is checked against.
type tlsState struct {
	config *tls.Config
	deny   *DenyList
	// cas are the CA certificates client certificates must chain to.
	cas []*x509.Certificate
	// serverCert is the leaf of config's certificate, for the log.
	serverCert *x509.Certificate
	// tickets encrypt this state's TLS session tickets: a reload makes new
	// ones, so that no session from before it resumes (session.go).
	tickets *ticketKeys
}

// tlsFiles are the files a tlsState is loaded from.
type tlsFiles struct {
	ca, cert, key, deny string
}

// load reads every file into a new state; nothing is kept of a failed load.
func (f tlsFiles) load() (*tlsState, error) {
	cfg, err := serverTLS(f.ca, f.cert, f.key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("server: parse certificate %s: %w", f.cert, err)
	}
	st := &tlsState{config: cfg, serverCert: leaf, deny: &DenyList{}, tickets: &ticketKeys{}}
	if st.cas, err = readCerts(f.ca); err != nil {
		return nil, err
	}
	if f.deny != "" {
		if st.deny, err = ReadDenyList(f.deny); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
	}
	return st, nil
}

// readCerts reads the PEM certificates of a CA file.
func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: read CA: %w", err)
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("server: CA %s: %w", path, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// refuse returns why st does not accept a client certificate chain that
// a handshake verified, perhaps before a reload: its CA is no longer the
// server's (the CA was replaced), or the certificate is on the deny list.
// A nil st refuses nothing.
func (st *tlsState) refuse(chain []*x509.Certificate) error {
	if st == nil {
		return nil
	}
	leaf, root := chain[0], chain[len(chain)-1]
	if !slices.ContainsFunc(st.cas, root.Equal) {
		return errorf(errRevokedCert, "client certificate of %q (serial %s) is signed by a CA the server no longer trusts: it reloaded another CA",
			leaf.Subject.CommonName, certgen.SerialHex(leaf.SerialNumber))
	}
	return st.deny.check(leaf)
}

// dynamicTLS is the configuration the gRPC credentials hold: each
// handshake takes the configuration of the current state, so a reload
// applies to every connection made after it, resumed sessions included
// (connConfig).
func dynamicTLS(cur *atomic.Pointer[tlsState]) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return cur.Load().connConfig()
		},
	}
}

// Reload reads the CA, the server's certificate and key and the deny list
// again (serve does on SIGHUP). New connections use the new certificate and
// CA; the deny list applies to every call from now on, on open connections
// too. On any error the running configuration is kept whole, and the error
// says why.
func (s *Server) Reload() error {
	st, err := s.files.load()
	if err != nil {
		s.log.Error("reload failed; keeping the previous certificates and deny list", "error", err.Error())
		return err
	}
	s.tls.Store(st)
	s.logState("reloaded certificates and deny list", st)
	s.revokeStreams(st)
	return nil
}

// openStream is a streaming call in progress: the certificate chain it
// was authenticated with, and how to end it.
type openStream struct {
	chain  []*x509.Certificate
	cancel context.CancelCauseFunc
}

// trackStream registers a streaming call until the returned function is
// called, so that a reload that refuses its certificate ends it.
func (s *Server) trackStream(chain []*x509.Certificate, cancel context.CancelCauseFunc) func() {
	o := &openStream{chain: chain, cancel: cancel}
	s.streamsMu.Lock()
	if s.streams == nil {
		s.streams = make(map[*openStream]struct{})
	}
	s.streams[o] = struct{}{}
	s.streamsMu.Unlock()
	return func() {
		s.streamsMu.Lock()
		delete(s.streams, o)
		s.streamsMu.Unlock()
	}
}

// revokeStreams ends every open stream whose certificate st refuses, with
// the refusal as the stream's error: a watch that a leaked certificate
// opened before it was denied does not go on.
func (s *Server) revokeStreams(st *tlsState) {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	for o := range s.streams {
		if err := st.refuse(o.chain); err != nil {
			s.log.Warn("ending a stream of a certificate now refused", "user", o.chain[0].Subject.CommonName,
				"serial", certgen.SerialHex(o.chain[0].SerialNumber), "error", err.Error())
			o.cancel(err)
		}
	}
}

// logState logs what a state holds: the server certificate's serial and
// end, and the size of the deny list.
func (s *Server) logState(msg string, st *tlsState) {
	s.log.Info(msg,
		"server_cert_serial", certgen.SerialHex(st.serverCert.SerialNumber),
		"server_cert_expires", st.serverCert.NotAfter.Format(time.RFC3339),
		"deny_list", s.files.deny, "denied_serials", len(st.deny.serials), "denied_identities", len(st.deny.identities))
}

// DenyList is the set of client certificates refused although they verify:
// by serial number (one leaked certificate) or by identity (every
// certificate of a user). The zero value denies nothing.
type DenyList struct {
	serials    map[string]bool // certgen.SerialHex form
	identities map[string]bool
}

// ReadDenyList reads a deny list file (see ParseDenyList).
func ReadDenyList(path string) (*DenyList, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("deny list: %w", err)
	}
	defer f.Close()
	d, err := ParseDenyList(f)
	if err != nil {
		return nil, fmt.Errorf("deny list %s: %w", path, err)
	}
	return d, nil
}

// ParseDenyList reads one entry per line; blank lines and everything from
// a '#' on are ignored. An entry is
//
//	serial=HEX or serial:HEX  a certificate's serial number, as
//	                          openssl x509 -noout -serial prints it
//	                          (colons between bytes allowed)
//	user:NAME                 every certificate whose identity is NAME
//	HEX                       16 or more hex digits: a serial number
//	NAME                      anything else: an identity
func ParseDenyList(r io.Reader) (*DenyList, error) {
	d := &DenyList{serials: map[string]bool{}, identities: map[string]bool{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("line %d: %q: one serial or identity per line", n, line)
		}
		lower := strings.ToLower(line)
		switch {
		case strings.HasPrefix(lower, "serial=") || strings.HasPrefix(lower, "serial:"):
			s, ok := normalSerial(line[len("serial="):])
			if !ok {
				return nil, fmt.Errorf("line %d: %q: a serial number is hex digits", n, line)
			}
			d.serials[s] = true
		case strings.HasPrefix(lower, "user:"):
			if line[len("user:"):] == "" {
				return nil, fmt.Errorf("line %d: %q: no identity", n, line)
			}
			if !plainIdentity(line[len("user:"):]) {
				return nil, fmt.Errorf("line %d: %q: an identity is printable text without '=' or ':'", n, line)
			}
			d.identities[line[len("user:"):]] = true
		default:
			if s, ok := normalSerial(line); ok && len(s) >= 16 {
				d.serials[s] = true
			} else if plainIdentity(line) {
				d.identities[line] = true
			} else {
				// A serial mistyped ("serial = ..", "Serial Number:",
				// an editor's byte order mark) must not pass for a
				// name no certificate has, denying nobody.
				return nil, fmt.Errorf("line %d: %q: neither serial=HEX nor user:NAME (an identity is printable text without '=' or ':')", n, line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return d, nil
}

// plainIdentity reports whether s can be an identity in a deny list:
// printable UTF-8 without '=' or ':', which only the serial= and user:
// forms use.
func plainIdentity(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsAny(s, "=:") &&
		!strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// normalSerial writes a hex serial as certgen.SerialHex does: upper case,
// no colons, no leading zeros.
func normalSerial(s string) (string, bool) {
	s = strings.ToUpper(strings.ReplaceAll(s, ":", ""))
	if s == "" || strings.Trim(s, "0123456789ABCDEF") != "" {
		return "", false
	}
	s = strings.TrimLeft(s, "0")
	if s == "" {
		s = "00"
	}
	if len(s)%2 == 1 { // SerialHex writes whole bytes
		s = "0" + s
	}
	return s, true
}

// errRevokedCert is errRevoked and errPermissionDenied at once.
var errRevokedCert = errors.Join(errPermissionDenied, errRevoked)

// check returns an error wrapping errPermissionDenied and errRevoked when cert is denied,
// naming why.
func (d *DenyList) check(cert *x509.Certificate) error {
	if d == nil {
		return nil
	}
	serial := certgen.SerialHex(cert.SerialNumber)
	switch {
	case d.serials[serial]:
		return errorf(errRevokedCert, "client certificate of %q (serial %s) is revoked: its serial is on the server's deny list", cert.Subject.CommonName, serial)
	case d.identities[cert.Subject.CommonName]:
		return errorf(errRevokedCert, "client certificate of %q (serial %s) is revoked: the identity %q is on the server's deny list", cert.Subject.CommonName, serial, cert.Subject.CommonName)
	}
	return nil
}
