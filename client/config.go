package client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Config is the client's configuration file: named contexts (a server and
// the certificate to reach it with) and the one in use. The file lives at
// ConfigPath and reads like this:
//
//	# telehandler contexts
//	current = prod
//
//	[context prod]
//	addr = worker1.example.com:7443
//	ca = /home/alice/certs/ca.crt
//	cert = /home/alice/certs/alice.crt
//	key = /home/alice/certs/alice.key
//
// Blank lines and lines starting with '#' are ignored; keys and values are
// trimmed. The zero Config has no contexts.
type Config struct {
	// Current names the context used when neither --context nor
	// TELEHANDLER_CONTEXT names one ("" = none).
	Current string
	// Contexts in the order of the file.
	Contexts []Context
}

// Context is one named server and the files to reach it with.
type Context struct {
	Name                string
	Addr, CA, Cert, Key string
}

// contextKeys are the keys of a context section, in the order written.
var contextKeys = []string{"addr", "ca", "cert", "key"}

func (c *Context) field(key string) *string {
	switch key {
	case "addr":
		return &c.Addr
	case "ca":
		return &c.CA
	case "cert":
		return &c.Cert
	case "key":
		return &c.Key
	}
	return nil
}

// ConfigPath is the configuration file: $XDG_CONFIG_HOME/telehandler/config,
// or ~/.config/telehandler/config when XDG_CONFIG_HOME is unset.
func ConfigPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) { // the XDG spec ignores a relative one
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no configuration directory: set XDG_CONFIG_HOME or HOME (%w)", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "telehandler", "config"), nil
}

// LoadConfig reads the file at path; a missing file is the zero Config.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := ParseConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads the format Config describes. Errors name the line.
func ParseConfig(r io.Reader) (*Config, error) {
	cfg := &Config{}
	var cur *Context
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			name, ok := strings.CutPrefix(strings.TrimSuffix(line, "]"), "[context ")
			name = strings.TrimSpace(name)
			if !ok || !strings.HasSuffix(line, "]") || !validContextName(name) {
				return nil, fmt.Errorf("line %d: %q: want [context NAME] with NAME of letters, digits, '.', '_' or '-'", n, line)
			}
			if cfg.find(name) != nil {
				return nil, fmt.Errorf("line %d: context %q defined twice", n, name)
			}
			cfg.Contexts = append(cfg.Contexts, Context{Name: name})
			cur = &cfg.Contexts[len(cfg.Contexts)-1]
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: %q: want KEY = VALUE", n, line)
		case cur == nil && key == "current":
			cfg.Current = value
		case cur == nil:
			return nil, fmt.Errorf("line %d: unknown key %q before the first [context NAME] (only current)", n, key)
		case cur.field(key) == nil:
			return nil, fmt.Errorf("line %d: unknown key %q in context %q (want %s)", n, key, cur.Name, strings.Join(contextKeys, ", "))
		default:
			*cur.field(key) = value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// find returns the named context, or nil.
func (c *Config) find(name string) *Context {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i]
		}
	}
	return nil
}

// remove deletes the named context and reports whether it existed.
func (c *Config) remove(name string) bool {
	i := slices.IndexFunc(c.Contexts, func(x Context) bool { return x.Name == name })
	if i < 0 {
		return false
	}
	c.Contexts = slices.Delete(c.Contexts, i, i+1)
	if c.Current == name {
		c.Current = ""
	}
	return true
}

// WriteTo writes the file format.
func (c *Config) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	b.WriteString("# telehandler contexts: telehandler context add|list|use|show|rm edits this file\n")
	if c.Current != "" {
		fmt.Fprintf(&b, "current = %s\n", c.Current)
	}
	for _, ctx := range c.Contexts {
		fmt.Fprintf(&b, "\n[context %s]\n", ctx.Name)
		for _, k := range contextKeys {
			if v := *ctx.field(k); v != "" {
				fmt.Fprintf(&b, "%s = %s\n", k, v)
			}
		}
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// Save writes the file at path (its directory created 0700) through a
// temporary file renamed over it, mode 0600.
func (c *Config) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".config-*")
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// validContextName accepts names that need no quoting in the file or in a
// shell: letters, digits, '.', '_' and '-', starting with a letter or digit.
func validContextName(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._-", r)) {
			return false
		}
		if !alnum && r > 127 {
			return false
		}
	}
	return true
}

// validValue reports whether v fits the format, one line per key.
func validValue(v string) bool { return !strings.ContainsAny(v, "\n\r") }
