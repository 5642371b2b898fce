package main

import (
	_ "embed"
	"fmt"

	"github.com/urfave/cli/v2"
)

// The completion scripts ask the binary itself for the words that can
// follow (urfave/cli's --generate-bash-completion), never after "--": what
// follows is a job's command line, which must not be run to complete it.
var (
	//go:embed completion/telehandler.bash
	bashCompletion string
	//go:embed completion/telehandler.zsh
	zshCompletion string
)

// completionCommand is `telehandler completion bash|zsh`.
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: `Prints a script that completes telehandler's commands and flags.

Examples:
  source <(telehandler completion bash)             # this bash session
  telehandler completion bash > /etc/bash_completion.d/telehandler
  telehandler completion zsh > "${fpath[1]}/_telehandler"   # then restart zsh
  (make install writes both)`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("completion takes one shell, bash or zsh, got %d arguments", c.NArg())
			}
			switch sh := c.Args().First(); sh {
			case "bash":
				_, err := fmt.Fprint(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(c.App.Writer, zshCompletion)
				return err
			default:
				return fmt.Errorf("completion %q: bash or zsh", sh)
			}
		},
	}
}
