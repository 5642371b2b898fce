package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/drrev/telehandler/certgen"
)

// certgenCommand is `telehandler certgen`: it writes a development CA and the
// server and client certificates signed by it.
func certgenCommand() *cli.Command {
	return &cli.Command{
		Name:      "certgen",
		Usage:     "create a CA, a server certificate and client certificates for mutual TLS",
		ArgsUsage: " ",
		Description: `Writes into --out:
  ca.crt, ca.key           a new certificate authority (ECDSA P-384), valid one day
                           longer than the certificates it signs
  server.crt, server.key   the server's certificate, for TLS server authentication only;
                           its names are localhost, 127.0.0.1 and ::1 plus each --host
                           (an IP address becomes an IP name, anything else a DNS name)
  NAME.crt, NAME.key       one client certificate per --user, for TLS client
                           authentication only; Subject CN = NAME (the identity the
                           server sees), Subject OU = the role: "user" (the default;
                           starts jobs and controls only its own) or "admin" (controls
                           every job)

Keys are PKCS#8 PEM files with mode 0600, certificates mode 0644. User names are
letters, digits, '.', '_' and '-' ("ca" and "server" are taken).

certgen refuses to overwrite existing files, above all an existing CA. --force
replaces the CA and every certificate named on the command line; certificates
signed by the old CA then stop working, so list every user again.

Example:
  telehandler certgen --out certs --host worker1.example.com --user alice --user root:admin
  sudo telehandler serve --ca certs/ca.crt --cert certs/server.crt --key certs/server.key
  export TELEHANDLER_CA=certs/ca.crt TELEHANDLER_CERT=certs/alice.crt TELEHANDLER_KEY=certs/alice.key
  telehandler list

Inspect a certificate with: openssl x509 -noout -text -in certs/alice.crt`,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:     "out",
				Usage:    "directory to write the files to (created 0700 if missing)",
				Required: true,
			},
			&cli.StringSliceFlag{
				Name:  "host",
				Usage: "extra DNS name or IP address of the server (repeatable)",
			},
			&cli.StringSliceFlag{
				Name:  "user",
				Usage: "client certificate to create, as NAME or NAME:ROLE with ROLE user or admin (repeatable)",
			},
			&cli.DurationFlag{
				Name:  "validity",
				Usage: "how long the server and client certificates are valid (the CA: one day longer)",
				Value: certgen.DefaultValidity,
			},
			&cli.BoolFlag{
				Name:  "force",
				Usage: "overwrite an existing CA and certificates",
			},
		},
		Action: func(c *cli.Context) error {
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
			if c.Duration("validity") <= 0 {
				return fmt.Errorf("--validity must be positive, got %v", c.Duration("validity"))
			}
			dir := c.String("out")
			files, err := certgen.Generate(certgen.Options{
				Dir:      dir,
				Hosts:    c.StringSlice("host"),
				Users:    users,
				Validity: c.Duration("validity"),
				Force:    c.Bool("force"),
			})
			if err != nil {
				return err
			}
			w := c.App.Writer
			for _, f := range files {
				fmt.Fprintf(w, "wrote %s\n", f)
			}
			for _, u := range users {
				fmt.Fprintf(w, "user %s has role %s\n", u.Name, u.Role)
			}
			fmt.Fprintf(w, "certificates are valid for %v\n", c.Duration("validity"))
			fmt.Fprintf(w, "serve with: --ca %s --cert %s --key %s\n",
				filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
			return nil
		},
	}
}
