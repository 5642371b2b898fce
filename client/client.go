// Package client is Telehandler's command line client: the gRPC connection
// to a server (mutual TLS 1.3, the server's certificate and name verified)
// and one urfave/cli command per file for start, stop, status, watch and
// list. It speaks only the API; it never imports the server.
package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// DefaultAddr is the server address when --addr is not given.
const DefaultAddr = "127.0.0.1:7443"

// defaultPort is added to an --addr without one.
const defaultPort = "7443"

// connFlags are the connection flags every client command takes.
func connFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "addr",
			Usage:   "server address HOST:PORT; HOST must be a name in the server's certificate",
			Value:   DefaultAddr,
			EnvVars: []string{"TELEHANDLER_ADDR"},
		},
		&cli.StringFlag{
			Name:    "ca",
			Usage:   "CA certificate (PEM) that signed the server's certificate",
			EnvVars: []string{"TELEHANDLER_CA"},
		},
		&cli.StringFlag{
			Name:    "cert",
			Usage:   "your client certificate (PEM), made by telehandler certgen --user NAME",
			EnvVars: []string{"TELEHANDLER_CERT"},
		},
		&cli.StringFlag{
			Name:    "key",
			Usage:   "the private key (PEM) of --cert",
			EnvVars: []string{"TELEHANDLER_KEY"},
		},
	}
}

// Conn is a connection to a Telehandler server.
type Conn struct {
	pb.ForemanClient
	// Addr is the address dialled, for messages.
	Addr string
	cc   *grpc.ClientConn
}

// Close closes the connection.
func (c *Conn) Close() error { return c.cc.Close() }

// TLSConfig is the client's TLS: 1.3 only, the server's certificate must
// chain to the CA in caFile and name serverName, and the client presents
// certFile/keyFile. Go's default TLS 1.3 suites and key exchanges are kept.
func TLSConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
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
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load client certificate (--cert %s, --key %s): %w", certFile, keyFile, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      pool,
		ServerName:   serverName,
		Certificates: []tls.Certificate{cert},
	}, nil
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
	return net.JoinHostPort(host, port), host, nil
}

// maxHeaderListSize is the most header bytes the client accepts in one
// answer.
const maxHeaderListSize = 64 << 10

// Dial connects to the server named by the connection flags of c. The
// connection itself is made lazily, by the first call.
func Dial(c *cli.Context) (*Conn, error) {
	addr, host, err := hostPort(c.String("addr"))
	if err != nil {
		return nil, err
	}
	tlsCfg, err := TLSConfig(c.String("ca"), c.String("cert"), c.String("key"), host)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// A server's answers carry a few hundred bytes of headers and
		// trailers (the error message included); refuse megabytes of them
		// (grpc-go's default allows 16 MiB) from a server that is not ours.
		grpc.WithMaxHeaderListSize(maxHeaderListSize),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return &Conn{ForemanClient: pb.NewForemanClient(cc), Addr: addr, cc: cc}, nil
}
