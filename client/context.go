package client

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

// ContextCommand is `telehandler context add|list|use|show|rm`.
func ContextCommand() *cli.Command {
	return &cli.Command{
		Name:  "context",
		Usage: "name servers and certificates in the configuration file, and choose one",
		Description: `A context is a server address and the CA, certificate and key to reach it
with, stored under a name in $XDG_CONFIG_HOME/telehandler/config
(~/.config/telehandler/config). Client commands use the current context, or the
one --context or TELEHANDLER_CONTEXT names; a flag or TELEHANDLER_* variable
still overrides each setting (with a warning, for a context you named). Paths
are stored absolute.

Examples:
  telehandler context add --addr worker1.example.com:7443 \
      --ca certs/ca.crt --cert certs/alice.crt --key certs/alice.key prod
  telehandler context list
  telehandler context use prod
  telehandler --context dev list
  telehandler context show            # the settings in use, and where each comes from
  telehandler context rm dev`,
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add (or with --force replace) a context; the first one becomes current",
				ArgsUsage: "[flags] NAME",
				Description: `Stores --addr, --ca, --cert and --key (or the TELEHANDLER_ADDR, _CA, _CERT and
_KEY variables) under NAME. --use makes it the current context.

Example:
  telehandler context add --use --addr worker1.example.com --ca certs/ca.crt --cert certs/alice.crt --key certs/alice.key prod`,
				Flags: append(ConnFlags(),
					&cli.BoolFlag{Name: "use", Usage: "make it the current context"},
					&cli.BoolFlag{Name: "force", Usage: "replace a context of that name"},
				),
				Action: runContextAdd,
			},
			{
				Name:        "list",
				Usage:       "list the contexts; * marks the current one",
				ArgsUsage:   " ",
				Description: "Example:\n  telehandler context list",
				Action:      runContextList,
			},
			{
				Name:        "use",
				Usage:       "make a context the current one",
				ArgsUsage:   "NAME",
				Description: "Example:\n  telehandler context use prod",
				Action:      runContextUse,
			},
			{
				Name:      "show",
				Usage:     "show the connection settings in use and where each comes from",
				ArgsUsage: "[NAME]",
				Description: `Without NAME, shows what a client command run here would use: each setting
with its source (a flag, a TELEHANDLER_* variable, a context, the default).
With NAME, shows that context as stored.

Example:
  telehandler context show
  telehandler --context prod context show`,
				Flags:  ConnFlags(),
				Action: runContextShow,
			},
			{
				Name:        "rm",
				Usage:       "remove a context",
				ArgsUsage:   "NAME",
				Description: "Example:\n  telehandler context rm dev",
				Action:      runContextRm,
			},
		},
	}
}

// loadConfigFile returns the configuration file's path and contents.
func loadConfigFile() (string, *Config, error) {
	path, err := ConfigPath()
	if err != nil {
		return "", nil, err
	}
	cfg, err := LoadConfig(path)
	return path, cfg, err
}

// contextName returns the one NAME argument.
func contextName(c *cli.Context) (string, error) {
	if c.NArg() > 1 && strings.HasPrefix(c.Args().Get(1), "-") {
		return "", fmt.Errorf("flags go before NAME: telehandler context %s [flags] %s", c.Command.Name, c.Args().First())
	}
	if c.NArg() != 1 {
		return "", fmt.Errorf("context %s takes one NAME, got %d arguments", c.Command.Name, c.NArg())
	}
	name := c.Args().First()
	if !validContextName(name) {
		return "", fmt.Errorf("context name %q: use letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return name, nil
}

func runContextAdd(c *cli.Context) error {
	name, err := contextName(c)
	if err != nil {
		return err
	}
	path, cfg, err := loadConfigFile()
	if err != nil {
		return err
	}
	if cfg.find(name) != nil && !c.Bool("force") {
		return fmt.Errorf("context %s already exists in %s (--force replaces it; telehandler context show %s shows it)", name, path, name)
	}
	ctx := Context{Name: name}
	for _, s := range connSettings {
		v, _, ok := flagValue(c, s.flag)
		if !ok {
			v = os.Getenv(s.env)
		}
		if v == "" && s.flag != "addr" {
			return fmt.Errorf("context add %s: --%s (or %s) is required", name, s.flag, s.env)
		}
		if !validValue(v) {
			return fmt.Errorf("--%s: no line breaks, please", s.flag)
		}
		if s.flag != "addr" {
			if v, err = filepath.Abs(v); err != nil {
				return err
			}
			if _, err := os.Stat(v); err != nil {
				return fmt.Errorf("--%s: %w", s.flag, err)
			}
		} else if v != "" {
			if _, _, err := hostPort(v); err != nil {
				return err
			}
		}
		*ctx.field(s.flag) = v
	}
	if _, err := TLSConfig(ctx.CA, ctx.Cert, ctx.Key, "localhost"); err != nil {
		return err
	}
	if w := keyWarning(ctx.Key); w != "" {
		fmt.Fprintln(c.App.ErrWriter, w)
	}
	if old := cfg.find(name); old != nil {
		*old = ctx
	} else {
		cfg.Contexts = append(cfg.Contexts, ctx)
	}
	if cfg.Current == "" || c.Bool("use") {
		cfg.Current = name
	}
	if err := cfg.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "added context %s to %s", name, path)
	if cfg.Current == name {
		fmt.Fprint(c.App.Writer, "; it is the current context")
	}
	fmt.Fprintln(c.App.Writer)
	return nil
}

func runContextList(c *cli.Context) error {
	if c.NArg() > 0 {
		return errors.New("context list takes no arguments")
	}
	path, cfg, err := loadConfigFile()
	if err != nil {
		return err
	}
	if len(cfg.Contexts) == 0 {
		fmt.Fprintf(c.App.ErrWriter, "no contexts in %s: telehandler context add --addr HOST --ca FILE --cert FILE --key FILE NAME adds one\n", path)
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CURRENT\tNAME\tADDR\tCERT")
	for _, ctx := range cfg.Contexts {
		mark := ""
		if ctx.Name == cfg.Current {
			mark = "*"
		}
		addr := ctx.Addr
		if addr == "" {
			addr = DefaultAddr
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", mark, ctx.Name, addr, ctx.Cert)
	}
	return tw.Flush()
}

func runContextUse(c *cli.Context) error {
	name, err := contextName(c)
	if err != nil {
		return err
	}
	path, cfg, err := loadConfigFile()
	if err != nil {
		return err
	}
	if cfg.find(name) == nil {
		return fmt.Errorf("no context %s in %s (telehandler context list shows them)", name, path)
	}
	cfg.Current = name
	if err := cfg.Save(path); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.App.Writer, "now using context %s\n", name)
	return err
}

func runContextShow(c *cli.Context) error {
	w := c.App.Writer
	if c.NArg() > 0 {
		name, err := contextName(c)
		if err != nil {
			return err
		}
		path, cfg, err := loadConfigFile()
		if err != nil {
			return err
		}
		ctx := cfg.find(name)
		if ctx == nil {
			return fmt.Errorf("no context %s in %s (telehandler context list shows them)", name, path)
		}
		fmt.Fprintf(w, "context: %s\n", name)
		for _, k := range contextKeys {
			fmt.Fprintf(w, "%-8s %s\n", k+":", *ctx.field(k))
		}
		return nil
	}
	p, err := resolveConn(c)
	if err != nil {
		return err
	}
	if p.context != "" {
		fmt.Fprintf(w, "context: %s\n", p.context)
	} else {
		fmt.Fprintln(w, "context: (none)")
	}
	for _, s := range connSettings {
		v, src := p.values[s.flag], p.sources[s.flag]
		if src == "" {
			v, src = "(not set)", "set --"+s.flag+", "+s.env+" or a context"
		}
		fmt.Fprintf(w, "%-8s %s  [%s]\n", s.flag+":", v, src)
	}
	fmt.Fprintf(w, "%-8s %v\n", "timeout:", p.timeout)
	return nil
}

func runContextRm(c *cli.Context) error {
	name, err := contextName(c)
	if err != nil {
		return err
	}
	path, cfg, err := loadConfigFile()
	if err != nil {
		return err
	}
	if !cfg.remove(name) {
		return fmt.Errorf("no context %s in %s", name, path)
	}
	if err := cfg.Save(path); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.App.Writer, "removed context %s\n", name)
	return err
}
