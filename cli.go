package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/drrev/telehandler/client"
)

// version is the binary's version; release builds set it with
// -ldflags "-X main.version=...".
var version = "dev"

// run runs the command line args (args[0] is the program) and returns the
// process exit status: 0 on success, 1 on an error (printed to stderr as
// "telehandler: ..."), or the job's own status for watch and start --watch.
func run(args []string) int {
	return exitStatus(newApp(os.Stdout, os.Stderr).Run(args), os.Stderr)
}

// newApp is the urfave/cli application: the server, client and certgen
// commands. __child is dispatched in main before it.
func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:    "telehandler",
		Usage:   "run Linux processes as isolated, resource-limited jobs over a mutual-TLS gRPC API",
		Version: version,
		Description: `One binary for the server, the client and the certificate tool.

Quick start (as root, in a checkout: sudo make run), or by hand:
  telehandler certgen --out certs --user alice --user admin:admin
  sudo telehandler serve --ca certs/ca.crt --cert certs/server.crt --key certs/server.key --state-dir /tmp/th
  export TELEHANDLER_CA=certs/ca.crt TELEHANDLER_CERT=certs/alice.crt TELEHANDLER_KEY=certs/alice.key
  JOB=$(telehandler start -- sh -c 'echo out; echo err >&2; exit 3')
  telehandler watch $JOB; echo $?
  telehandler status $JOB
  telehandler list

Every flag can also be set with the TELEHANDLER_* environment variable shown
in the command's --help.`,
		Writer:    stdout,
		ErrWriter: stderr,
		Commands: []*cli.Command{
			serveCommand(),
			client.StartCommand(),
			client.WatchCommand(),
			client.StatusCommand(),
			client.StopCommand(),
			client.ListCommand(),
			client.RmCommand(),
			certgenCommand(),
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					_, err := fmt.Fprintf(c.App.Writer, "telehandler %s\n", version)
					return err
				},
			},
		},
		// Flag values such as --env A=x,y keep their commas.
		DisableSliceFlagSeparator: true,
		HideHelpCommand:           true,
		// Errors are printed once, by exitStatus; urfave must not exit.
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unknown command %q (telehandler --help lists the commands)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
	}
	for _, cmd := range app.Commands {
		cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			return fmt.Errorf("%s: %w\nhint: telehandler %s --help shows its flags", c.Command.Name, err, c.Command.Name)
		}
	}
	return app
}

// exitStatus prints err (if any) to stderr and returns the exit status.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	code := 1
	var ee *client.ExitError
	if errors.As(err, &ee) {
		code = ee.Code
	}
	if msg := err.Error(); msg != "" {
		for _, line := range strings.Split(msg, "\n") {
			fmt.Fprintf(stderr, "telehandler: %s\n", line)
		}
	}
	return code
}
