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

// version is the binary's version: make build and make release set it to
// git describe --always --dirty with -ldflags "-X main.version=...".
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
  telehandler context add --ca certs/ca.crt --cert certs/alice.crt --key certs/alice.key local
  JOB=$(telehandler start -- sh -c 'echo out; echo err >&2; exit 3')
  telehandler watch $JOB; echo $?
  telehandler status $JOB
  telehandler list

The connection flags (--addr, --ca, --cert, --key, --context, --timeout) go
before or after the command; each also comes from its TELEHANDLER_* variable,
then from the context (telehandler context --help). Every other flag can be
set with the TELEHANDLER_* variable shown in the command's --help.
telehandler help COMMAND explains a command with examples.`,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     client.ConnFlags(),
		Commands: []*cli.Command{
			serveCommand(),
			client.StartCommand(),
			client.WatchCommand(),
			client.AttachCommand(),
			client.StatusCommand(),
			client.StopCommand(),
			client.KillCommand(),
			client.ListCommand(),
			client.ContextCommand(),
			client.RmCommand(),
			certgenCommand(),
			completionCommand(),
			{
				Name:        "version",
				Usage:       "print the version",
				ArgsUsage:   " ",
				Description: "Prints the version make build stamped from git (dev when built otherwise).\n\nExample:\n  telehandler version",
				Action: func(c *cli.Context) error {
					_, err := fmt.Fprintf(c.App.Writer, "telehandler %s\n", version)
					return err
				},
			},
		},
		// Flag values such as --env A=x,y keep their commas.
		DisableSliceFlagSeparator: true,
		// telehandler completion bash|zsh asks the binary for the words.
		EnableBashCompletion: true,
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
		// A command without subcommands takes no "help" or "h" subcommand:
		// those are job names or id prefixes (status h), and telehandler
		// help CMD and CMD --help explain it.
		if len(cmd.Subcommands) == 0 {
			cmd.HideHelpCommand = true
		}
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
