// Package client is Telehandler's command line client: the gRPC connection
// to a server (mutual TLS 1.3, the server's certificate and name verified)
// and one urfave/cli command per file for start, stop, status, watch and
// list. It speaks only the API; it never imports the server.
package client

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// DefaultAddr is the server address when --addr is not given.
const DefaultAddr = "127.0.0.1:7443"

// defaultPort is added to an --addr without one.
const defaultPort = "7443"

// DefaultTimeout bounds connecting to the server when --timeout is not
// given.
const DefaultTimeout = 10 * time.Second

// connSetting is one connection setting: its flag, its environment
// variable, and its key in a context of the configuration file.
type connSetting struct {
	flag, env, usage string
}

// connSettings are resolved by resolveConn: a flag (before or after the
// command) beats the environment variable, which beats the context, which
// beats the default.
var connSettings = []connSetting{
	{"addr", "TELEHANDLER_ADDR", "server address HOST:PORT; HOST must be a name in the server's certificate (default " + DefaultAddr + ")"},
	{"ca", "TELEHANDLER_CA", "CA certificate (PEM) that signed the server's certificate"},
	{"cert", "TELEHANDLER_CERT", "your client certificate (PEM), made by telehandler certgen --user NAME"},
	{"key", "TELEHANDLER_KEY", "the private key (PEM) of --cert"},
}

// ConnFlags are the connection flags, accepted before the command
// (telehandler --addr HOST list) and after it (telehandler list --addr
// HOST). Their environment variables are read by resolveConn, not by the
// flags, so that a flag on either side beats them.
func ConnFlags() []cli.Flag {
	var flags []cli.Flag
	for _, s := range connSettings {
		flags = append(flags, &cli.StringFlag{Name: s.flag, Usage: s.usage + " (or " + s.env + ")"})
	}
	return append(flags,
		&cli.StringFlag{
			Name:  "context",
			Usage: "named context of the configuration file to use (or TELEHANDLER_CONTEXT; default: its current one; see telehandler context)",
		},
		&cli.BoolFlag{
			Name:  "no-session-cache",
			Usage: "always make a full TLS handshake: neither resume nor keep the TLS session (kept in ~/.cache/telehandler to make the next command's handshake cheap; or TELEHANDLER_NO_SESSION_CACHE=1)",
		},
		&cli.DurationFlag{
			Name:        "timeout",
			Usage:       "most time connecting to the server may take (or TELEHANDLER_TIMEOUT)",
			DefaultText: DefaultTimeout.String(),
		},
	)
}

// connFlags are the connection flags every client command takes after its
// name.
func connFlags() []cli.Flag { return ConnFlags() }

// connParams are the resolved connection settings and where each came
// from, for messages and telehandler context show.
type connParams struct {
	values  map[string]string // by flag name
	sources map[string]string // "--addr", "TELEHANDLER_ADDR", "context prod", "default"
	context string            // the context used, if any
	timeout time.Duration
}

// flagValue returns the value of a flag given on the command line, before
// or after the command, the one nearest the command winning, and "--name".
func flagValue(c *cli.Context, name string) (string, string, bool) {
	for _, ctx := range c.Lineage() {
		if slices.Contains(ctx.LocalFlagNames(), name) {
			return ctx.String(name), "--" + name, true
		}
	}
	return "", "", false
}

// noSessionCache reports whether --no-session-cache (before or after the
// command) or TELEHANDLER_NO_SESSION_CACHE turns the session cache off.
func noSessionCache(c *cli.Context) bool {
	for _, ctx := range c.Lineage() {
		if slices.Contains(ctx.LocalFlagNames(), "no-session-cache") {
			return ctx.Bool("no-session-cache")
		}
	}
	v, err := strconv.ParseBool(os.Getenv("TELEHANDLER_NO_SESSION_CACHE"))
	return err == nil && v
}

// resolveConn resolves the connection settings of c (see connSettings).
func resolveConn(c *cli.Context) (*connParams, error) {
	p := &connParams{values: map[string]string{}, sources: map[string]string{}, timeout: DefaultTimeout}
	timeout, from, ok := flagValue(c, "timeout")
	if !ok {
		timeout, from = os.Getenv("TELEHANDLER_TIMEOUT"), "TELEHANDLER_TIMEOUT"
	}
	if timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s %q: want a positive duration such as 10s", from, timeout)
		}
		p.timeout = d
	}

	ctxName, ctxSource := "", ""
	if v, from, ok := flagValue(c, "context"); ok {
		ctxName, ctxSource = v, from
	} else if v := os.Getenv("TELEHANDLER_CONTEXT"); v != "" {
		ctxName, ctxSource = v, "TELEHANDLER_CONTEXT"
	}
	var ctx *Context
	needContext := ctxName != ""
	for _, s := range connSettings {
		if _, _, ok := flagValue(c, s.flag); !ok && os.Getenv(s.env) == "" {
			needContext = true
		}
	}
	if needContext { // the file is read only when it can matter
		path, err := ConfigPath()
		if err != nil && ctxName != "" {
			return nil, err
		}
		if err == nil {
			cfg, err := LoadConfig(path)
			if err != nil {
				return nil, err
			}
			if w := configWarning(path); w != "" {
				fmt.Fprintln(c.App.ErrWriter, w)
			}
			if ctxName == "" {
				ctxName, ctxSource = cfg.Current, "current context of "+path
			}
			if ctxName != "" {
				if ctx = cfg.find(ctxName); ctx == nil {
					return nil, fmt.Errorf("%s names context %q, which %s does not have (telehandler context list shows them)", ctxSource, ctxName, path)
				}
				p.context = ctxName
			}
		}
	}
	var shadowed []string // variables that beat a context named on purpose
	for _, s := range connSettings {
		if v, from, ok := flagValue(c, s.flag); ok {
			p.values[s.flag], p.sources[s.flag] = v, from
		} else if v := os.Getenv(s.env); v != "" {
			p.values[s.flag], p.sources[s.flag] = v, s.env
			if ctx != nil && ctxSource != "" && !strings.HasPrefix(ctxSource, "current context") &&
				*ctx.field(s.flag) != "" && *ctx.field(s.flag) != v {
				shadowed = append(shadowed, s.env)
			}
		} else if ctx != nil && *ctx.field(s.flag) != "" {
			p.values[s.flag], p.sources[s.flag] = *ctx.field(s.flag), "context "+ctx.Name
		} else if s.flag == "addr" {
			p.values[s.flag], p.sources[s.flag] = DefaultAddr, "default"
		}
	}
	if len(shadowed) > 0 {
		// Settings come from flags, then variables, then the context: a
		// context asked for by name but overridden must not pass silently
		// for itself (say, as another user).
		fmt.Fprintf(c.App.ErrWriter, "telehandler: warning: context %s (%s) is overridden by %s set in this shell; unset %[3]s to use the context's settings\n",
			ctxName, ctxSource, strings.Join(shadowed, " "))
	}
	return p, nil
}

// Conn is a connection to a Telehandler server.
type Conn struct {
	pb.ForemanClient
	// Addr is the address dialled, for messages.
	Addr string
	// Timeout bounds connecting (--timeout), for messages.
	Timeout time.Duration
	// addrSource and certSource say where --addr and --cert came from
	// ("--addr", "TELEHANDLER_ADDR", "context prod", "default"), for hints.
	addrSource, certSource string
	cc                     *grpc.ClientConn
}

// Close closes the connection.
func (c *Conn) Close() error { return c.cc.Close() }

// TLSConfig is the client's TLS: 1.3 only, the server's certificate must
// chain to the CA in caFile and name serverName, and the client presents
// certFile/keyFile. Go's default TLS 1.3 suites and key exchanges are kept.
func TLSConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	return clientTLS(caFile, certFile, keyFile, serverName, "")
}

// clientTLS is TLSConfig with, when sessionAddr is set, the session cache
// of the server at sessionAddr (sessioncache.go). With a session to resume
// the private key is parsed only if the server asks for a full handshake
// after all: parsing a P-384 key costs more CPU than the rest of a resumed
// handshake. The session file opens only with the bytes of this key and
// this certificate, which a full handshake proved, so a key file broken
// since is found by the next full handshake.
func clientTLS(caFile, certFile, keyFile, serverName, sessionAddr string) (*tls.Config, error) {
	if caFile == "" {
		return nil, errors.New("no CA certificate: set --ca or TELEHANDLER_CA to the ca.crt that telehandler certgen wrote")
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("no client certificate: set --cert and --key (or TELEHANDLER_CERT and TELEHANDLER_KEY) to a NAME.crt and NAME.key that telehandler certgen --user NAME wrote")
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate (--ca, TELEHANDLER_CA): %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--ca %s holds no PEM certificate", caFile)
	}
	loadErr := func(err error) error {
		return fmt.Errorf("load client certificate (--cert %s, --key %s): %w", certFile, keyFile, err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, loadErr(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, loadErr(err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		ServerName: serverName,
	}
	var cache *sessionCache
	if sessionAddr != "" {
		cache = openSessionCache(sessionAddr, serverName, caPEM, certPEM, keyPEM)
	}
	var leaf *x509.Certificate
	if cache != nil && cache.has() {
		leaf = firstCert(certPEM)
	}
	if leaf == nil { // no session, or a certificate only X509KeyPair explains
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, loadErr(err)
		}
		cfg.Certificates, leaf = []tls.Certificate{cert}, cert.Leaf
	} else {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, loadErr(err)
			}
			return &cert, nil
		}
	}
	if err := checkClientCert(certFile, leaf, time.Now()); err != nil {
		return nil, err
	}
	if cache != nil {
		cfg.ClientSessionCache, cfg.VerifyConnection = cache, cache.verifyConnection
	}
	return cfg, nil
}

// firstCert parses the first certificate of a PEM file, nil if it has none.
func firstCert(certPEM []byte) *x509.Certificate {
	for block, rest := pem.Decode(certPEM); block != nil; block, rest = pem.Decode(rest) {
		if block.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
	return nil
}

// checkClientCert says, before any connection, what the server would
// refuse in a way the client cannot see clearly (TLS 1.3 reports a refused
// client certificate only as a broken connection): a certificate that may
// not authenticate a client, or one that expired.
func checkClientCert(file string, leaf *x509.Certificate, now time.Time) error {
	if leaf == nil {
		return nil
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
			return fmt.Errorf("--cert %s is a server certificate (%q): it may only authenticate a server, and the server refuses it from a client\nhint: use a client certificate, made by telehandler certgen --user NAME (NAME.crt and NAME.key)", file, leaf.Subject.CommonName)
		}
		return fmt.Errorf("--cert %s may not authenticate a TLS client (no clientAuth usage)\nhint: use a client certificate made by telehandler certgen --user NAME", file)
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("--cert %s (%q) expired on %s\nhint: renew it: telehandler certgen --out DIR --renew %s (with the deployment's CA)", file, leaf.Subject.CommonName, leaf.NotAfter.Format(time.RFC3339), leaf.Subject.CommonName)
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("--cert %s (%q) is not valid before %s: is this machine's clock right?", file, leaf.Subject.CommonName, leaf.NotBefore.Format(time.RFC3339))
	}
	return nil
}

// hostPort returns addr with the default port added when it has none, and
// its host part (the name the server's certificate must have).
func hostPort(addr string) (string, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// No port: "example.com", "127.0.0.1", "::1" or "[::1]".
		if inner, ok := strings.CutPrefix(addr, "["); ok && strings.HasSuffix(inner, "]") {
			addr = strings.TrimSuffix(inner, "]")
			if net.ParseIP(addr) == nil {
				return "", "", fmt.Errorf("--addr [%s]: only an IPv6 address goes in brackets", addr)
			}
		}
		host, port = addr, defaultPort
		if ip := net.ParseIP(addr); ip == nil && (addr == "" || strings.ContainsAny(addr, ":/ ")) {
			return "", "", fmt.Errorf("--addr %q is not HOST:PORT", addr)
		}
	}
	if host == "" {
		return "", "", fmt.Errorf("--addr %q has no host", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", fmt.Errorf("--addr %q: the port %q is not a number from 1 to 65535", addr, port)
	}
	return net.JoinHostPort(host, port), host, nil
}

// maxHeaderListSize is the most header bytes the client accepts in one
// answer.
const maxHeaderListSize = 64 << 10

// Dial connects to the server named by the connection settings of c
// (flags, TELEHANDLER_* variables, the context; see resolveConn). It starts
// connecting at once; the first call waits for the connection, which may
// take at most the --timeout.
func Dial(c *cli.Context) (*Conn, error) {
	p, err := resolveConn(c)
	if err != nil {
		return nil, err
	}
	addr, host, err := hostPort(p.values["addr"])
	if err != nil {
		return nil, err
	}
	sessionAddr := addr
	if noSessionCache(c) {
		sessionAddr = ""
	}
	tlsCfg, err := clientTLS(p.values["ca"], p.values["cert"], p.values["key"], host, sessionAddr)
	if err != nil {
		if p.context != "" {
			err = fmt.Errorf("%w\n(context %s is in use)", err, p.context)
		}
		return nil, err
	}
	if w := keyWarning(p.values["key"]); w != "" {
		fmt.Fprintln(c.App.ErrWriter, w)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, append(transportOptions(),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// The TCP connection and the TLS handshake together: a server that
		// accepts but never answers costs at most this (gRPC's own default
		// is 20 s).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: p.timeout}),
		// A server's answers carry a few hundred bytes of headers and
		// trailers (the error message included); refuse megabytes of them
		// (grpc-go's default allows 16 MiB) from a server that is not ours.
		grpc.WithMaxHeaderListSize(maxHeaderListSize),
	)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	// Connect now: the TCP connection and the TLS handshake run while the
	// command builds its first request (each command calls Dial just
	// before its first call).
	cc.Connect()
	return &Conn{ForemanClient: pb.NewForemanClient(cc), Addr: addr, Timeout: p.timeout,
		addrSource: p.sources["addr"], certSource: p.sources["cert"], cc: cc}, nil
}
