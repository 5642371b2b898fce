package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/drrev/telehandler/certgen"
)

// certgenCommand is `telehandler certgen`: it makes or reuses a CA and
// writes the server and client certificates signed by it.
func certgenCommand() *cli.Command {
	return &cli.Command{
		Name:      "certgen",
		Usage:     "create a CA, a server certificate and client certificates for mutual TLS; add and renew them",
		ArgsUsage: " ",
		Description: `The first run writes into --out:
  ca.crt, ca.key           a new certificate authority (ECDSA P-384), valid --ca-validity
                           (10 years): keep ca.key safe, it signs every later certificate
  server.crt, server.key   the server's certificate, for TLS server authentication only;
                           its names are localhost, 127.0.0.1 and ::1 plus each --host
                           (an IP address becomes an IP name, anything else a DNS name)
  NAME.crt, NAME.key       one client certificate per --user, for TLS client
                           authentication only; Subject CN = NAME (the identity the
                           server sees), Subject OU = the role: "user" (the default;
                           starts jobs and controls only its own) or "admin" (controls
                           every job)

Later runs find the CA in --out (or in --ca-dir) and sign with it, never rewriting
it: add users with --user, issue a certificate again with --renew NAME (a user keeps
its role, the server its names plus any --host; "--renew server" for the server).
Certificates are valid --validity (one week); a renewed one has a new key and
serial, the old one stays valid until it expires: add its serial (printed here, or
openssl x509 -noout -serial -in FILE) to the server's --deny-list to shut it out
now. An existing certificate is never replaced without --renew.

Keys are PKCS#8 PEM files with mode 0600, certificates mode 0644, replaced
atomically (a server reloading on SIGHUP never reads half a file). User names are
letters, digits, '.', '_' and '-' ("ca" and "server" are taken). --force makes a
new CA: certificates of the old one stop working, so list every user again.

Examples:
  telehandler certgen --out certs --host worker1.example.com --user alice --user root:admin
  telehandler certgen --out certs --user bob                  # add bob, same CA
  telehandler certgen --out bob-certs --ca-dir certs --user bob  # bob's files apart (and a ca.crt)
  telehandler certgen --out certs --renew alice --renew server   # renew, then SIGHUP the server
  sudo telehandler serve --ca certs/ca.crt --cert certs/server.crt --key certs/server.key

Inspect a certificate with: openssl x509 -noout -text -in certs/alice.crt`,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:     "out",
				Usage:    "directory to write the files to (created 0700 if missing)",
				Required: true,
			},
			&cli.StringFlag{
				Name:  "ca-dir",
				Usage: "directory of an existing CA (ca.crt, ca.key) to sign with (default: --out)",
			},
			&cli.StringSliceFlag{
				Name:  "host",
				Usage: "extra DNS name or IP address of the server (repeatable; with an existing CA, together with --renew server)",
			},
			&cli.StringSliceFlag{
				Name:  "user",
				Usage: "client certificate to create, as NAME or NAME:ROLE with ROLE user or admin (repeatable)",
			},
			&cli.StringSliceFlag{
				Name:  "renew",
				Usage: "existing certificate in --out to issue again: a user NAME, or server (repeatable)",
			},
			&cli.StringFlag{
				Name:        "validity",
				Usage:       "how long the server and client certificates are valid (as 168h, 30d, 1y)",
				DefaultText: formatLongDuration(certgen.DefaultValidity),
			},
			&cli.StringFlag{
				Name:        "ca-validity",
				Usage:       "how long a new CA is valid (as 10y, 3650d)",
				DefaultText: formatLongDuration(certgen.DefaultCAValidity),
			},
			&cli.BoolFlag{
				Name:  "force",
				Usage: "make a new CA even if one exists, and overwrite every certificate named",
			},
		},
		Action: runCertgen,
	}
}

func runCertgen(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("certgen takes no arguments, got %q (did you mean --user %s?)", c.Args().Slice(), c.Args().First())
	}
	var users []certgen.User
	for _, s := range c.StringSlice("user") {
		u, err := certgen.ParseUser(s)
		if err != nil {
			return err
		}
		users = append(users, u)
	}
	validity, err := durationFlag(c, "validity")
	if err != nil {
		return err
	}
	caValidity, err := durationFlag(c, "ca-validity")
	if err != nil {
		return err
	}
	dir := c.String("out")
	res, err := certgen.Generate(certgen.Options{
		Dir:        dir,
		CADir:      c.String("ca-dir"),
		Hosts:      c.StringSlice("host"),
		Users:      users,
		Renew:      c.StringSlice("renew"),
		Validity:   validity,
		CAValidity: caValidity,
		Force:      c.Bool("force"),
	})
	if err != nil {
		return err
	}
	w := c.App.Writer
	if res.NewCA {
		fmt.Fprintf(w, "made a new CA in %s, valid until %s\n", res.CACert, res.CA.NotAfter.Format(time.DateOnly))
	} else {
		fmt.Fprintf(w, "signed with the CA in %s (kept; valid until %s)\n", res.CACert, res.CA.NotAfter.Format(time.DateOnly))
	}
	for _, is := range res.Issued {
		if is.Name == "ca" {
			continue
		}
		what := "wrote"
		if is.Renewed {
			what = "renewed"
		}
		who := is.Name
		if is.Role != "" {
			who += " (role " + is.Role + ")"
		}
		fmt.Fprintf(w, "%s %s and %s: %s, serial %s, valid until %s\n", what, is.Cert, filepath.Base(is.Key), who, is.Serial, is.NotAfter.Format(time.RFC3339))
		if is.Shortened {
			fmt.Fprintf(w, "warning: %s ends with its CA; make a new CA (--force) and issue every certificate again before then\n", is.Name)
		}
	}
	if len(res.Issued) == 0 {
		fmt.Fprintln(w, "nothing to write: add --user NAME or --renew NAME")
	}
	for _, is := range res.Issued {
		if is.Renewed && is.Name == certgen.ServerName {
			fmt.Fprintln(w, "a running server picks up a renewed server certificate on SIGHUP (sudo systemctl reload telehandler, or kill -HUP its pid)")
			break
		}
	}
	if res.NewCA {
		fmt.Fprintf(w, "serve with: --ca %s --cert %s --key %s\n",
			filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	}
	for _, warning := range looseCertFiles(filepath.Dir(res.CACert), dir) {
		fmt.Fprintln(c.App.ErrWriter, "telehandler: warning: "+warning)
	}
	return nil
}

// looseCertFiles says which of the CA's directory and key and the output
// directory others than their owner may change or read: whoever replaces
// a certificate there or reads ca.key issues certificates of their own
// choosing (an admin's included). certgen creates them 0700 and 0600, but
// keeps the modes of what exists.
func looseCertFiles(caDir, outDir string) []string {
	var out []string
	for _, d := range slices.Compact([]string{filepath.Clean(caDir), filepath.Clean(outDir)}) {
		if mode, ok := certgen.WritableByOthers(d); ok {
			out = append(out, fmt.Sprintf("others may change the files in %s (mode %04o): chmod go-w %s", d, mode, d))
		}
	}
	key := filepath.Join(caDir, "ca.key")
	if mode, ok := certgen.KeyExposed(key); ok {
		out = append(out, fmt.Sprintf("others may read the CA's key %s (mode %04o), and sign any certificate with it: chmod 600 %s", key, mode, key))
	}
	return out
}

// durationFlag parses a duration flag that may be given in days or years.
// Unset is 0 (certgen's default).
func durationFlag(c *cli.Context, name string) (time.Duration, error) {
	if !c.IsSet(name) {
		return 0, nil
	}
	d, err := parseLongDuration(c.String(name))
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", name, err)
	}
	return d, nil
}

// parseLongDuration parses a positive Go duration ("168h", "90m") or a
// whole number of days ("30d") or 365-day years ("10y").
func parseLongDuration(s string) (time.Duration, error) {
	var d time.Duration
	if n, unit := strings.TrimRight(s, "dy"), strings.TrimLeft(s, "0123456789"); unit == "d" || unit == "y" {
		v, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q: want a whole number of days (30d) or years (10y)", s)
		}
		day := 24 * time.Hour
		if unit == "y" {
			day *= 365
		}
		if v > uint64(1<<63-1)/uint64(day) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		d = time.Duration(v) * day
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want a duration such as 168h, 30d or 10y", s)
		}
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

// formatLongDuration writes d in years or days when it is a whole number
// of them.
func formatLongDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d%(365*day) == 0:
		return fmt.Sprintf("%dy", d/(365*day))
	case d%day == 0:
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
