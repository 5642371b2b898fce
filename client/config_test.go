package client

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig(strings.NewReader(`# comment
current = prod

[context prod]
addr = worker1.example.com:7443
  ca=/c/ca.crt
cert = /c/alice.crt
key = /c/alice.key

[context dev]
ca = /d/ca.crt
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Current != "prod" || len(cfg.Contexts) != 2 {
		t.Fatalf("parsed %+v", cfg)
	}
	want := Context{Name: "prod", Addr: "worker1.example.com:7443", CA: "/c/ca.crt", Cert: "/c/alice.crt", Key: "/c/alice.key"}
	if *cfg.find("prod") != want || cfg.find("dev").CA != "/d/ca.crt" || cfg.find("nope") != nil {
		t.Errorf("contexts %+v", cfg.Contexts)
	}
	// What WriteTo writes reads back the same.
	var b bytes.Buffer
	cfg.WriteTo(&b)
	again, err := ParseConfig(&b)
	if err != nil || again.Current != cfg.Current || len(again.Contexts) != 2 || again.Contexts[0] != cfg.Contexts[0] || again.Contexts[1] != cfg.Contexts[1] {
		t.Errorf("round trip: %+v, %v\n%s", again, err, b.String())
	}
	if !cfg.remove("prod") || cfg.Current != "" || cfg.remove("prod") {
		t.Errorf("remove: %+v", cfg)
	}

	for bad, want := range map[string]string{
		"addr = x\n":                         "line 1: unknown key \"addr\" before",
		"[context a]\nport = 1\n":            "line 2: unknown key \"port\"",
		"[context a]\naddr\n":                "line 2",
		"[ctx a]\n":                          "[context NAME]",
		"[context a b]\n":                    "[context NAME]",
		"[context a]\n[context a]\n":         "defined twice",
		"[context a\n":                       "line 1",
		"\n\n[context -a]\n":                 "line 3",
		"[context a]\nca = x\n[context ../]": "line 3",
	} {
		if _, err := ParseConfig(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseConfig(%q): %v, want an error with %q", bad, err, want)
		}
	}
}

func TestConfigPathAndSave(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	path, err := ConfigPath()
	if err != nil || path != filepath.Join(dir, "telehandler", "config") {
		t.Fatalf("ConfigPath = %q, %v", path, err)
	}
	t.Setenv("XDG_CONFIG_HOME", "relative/ignored")
	t.Setenv("HOME", dir)
	if path, _ := ConfigPath(); path != filepath.Join(dir, ".config", "telehandler", "config") {
		t.Errorf("ConfigPath with a relative XDG_CONFIG_HOME = %q", path)
	}
	cfg, err := LoadConfig(filepath.Join(dir, "missing"))
	if err != nil || len(cfg.Contexts) != 0 {
		t.Errorf("missing file: %+v, %v", cfg, err)
	}
	cfg.Contexts = []Context{{Name: "a", Addr: "h:1"}}
	cfg.Current = "a"
	p := filepath.Join(dir, "sub", "config")
	if err := cfg.Save(p); err != nil {
		t.Fatal(err)
	}
	got, err := LoadConfig(p)
	if err != nil || got.Current != "a" || got.Contexts[0].Addr != "h:1" {
		t.Errorf("saved and loaded %+v, %v", got, err)
	}
}

// TestResolveConn: a flag before or after the command beats the
// TELEHANDLER_* variable, which beats the context, which beats the default.
func TestResolveConn(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	for _, k := range []string{"TELEHANDLER_ADDR", "TELEHANDLER_CA", "TELEHANDLER_CERT", "TELEHANDLER_KEY", "TELEHANDLER_CONTEXT", "TELEHANDLER_TIMEOUT"} {
		t.Setenv(k, "")
	}
	path, _ := ConfigPath()
	cfg := &Config{Current: "one", Contexts: []Context{
		{Name: "one", Addr: "one:1", CA: "/one/ca", Cert: "/one/cert", Key: "/one/key"},
		{Name: "two", Addr: "two:2", CA: "/two/ca"},
	}}
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	resolve := func(args ...string) *connParams {
		t.Helper()
		var got *connParams
		app := &cli.App{Name: "telehandler", Flags: ConnFlags(), Commands: []*cli.Command{{
			Name: "cmd", Flags: ConnFlags(),
			Action: func(c *cli.Context) error {
				var err error
				got, err = resolveConn(c)
				return err
			},
		}}}
		if err := app.Run(append([]string{"telehandler"}, args...)); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return got
	}
	p := resolve("cmd")
	if p.context != "one" || p.values["addr"] != "one:1" || p.sources["cert"] != "context one" || p.timeout != DefaultTimeout {
		t.Errorf("current context: %+v", p)
	}
	p = resolve("--context", "two", "cmd")
	if p.values["addr"] != "two:2" || p.values["cert"] != "" || p.values["ca"] != "/two/ca" {
		t.Errorf("--context two: %+v", p)
	}
	t.Setenv("TELEHANDLER_CONTEXT", "two")
	if p = resolve("cmd"); p.context != "two" {
		t.Errorf("TELEHANDLER_CONTEXT: %+v", p)
	}
	if p = resolve("cmd", "--context", "one"); p.context != "one" {
		t.Errorf("--context beats TELEHANDLER_CONTEXT: %+v", p)
	}
	t.Setenv("TELEHANDLER_ADDR", "env:3")
	if p = resolve("cmd"); p.values["addr"] != "env:3" || p.sources["addr"] != "TELEHANDLER_ADDR" {
		t.Errorf("TELEHANDLER_ADDR beats the context: %+v", p)
	}
	if p = resolve("--addr", "global:4", "cmd"); p.values["addr"] != "global:4" {
		t.Errorf("a global --addr beats TELEHANDLER_ADDR: %+v", p)
	}
	if p = resolve("--addr", "global:4", "cmd", "--addr", "local:5", "--timeout", "2s"); p.values["addr"] != "local:5" || p.timeout.Seconds() != 2 {
		t.Errorf("the command's --addr beats the global one: %+v", p)
	}
	t.Setenv("TELEHANDLER_CONTEXT", "missing")
	var err error
	app := &cli.App{Name: "telehandler", Commands: []*cli.Command{{Name: "cmd", Flags: ConnFlags(),
		Action: func(c *cli.Context) error { _, err = resolveConn(c); return nil }}}}
	app.Run([]string{"telehandler", "cmd"})
	if err == nil || !strings.Contains(err.Error(), `context "missing"`) {
		t.Errorf("a missing context: %v", err)
	}
}

// TestResolveConnWarnsOverriddenContext: a context named with --context or
// TELEHANDLER_CONTEXT whose settings TELEHANDLER_* variables override (the
// README's shell, alice's variables exported, then --context bob) says so
// on stderr instead of running silently as someone else; the current
// context, or a variable equal to the context's value, says nothing.
func TestResolveConnWarnsOverriddenContext(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, k := range []string{"TELEHANDLER_ADDR", "TELEHANDLER_CA", "TELEHANDLER_CERT", "TELEHANDLER_KEY", "TELEHANDLER_CONTEXT", "TELEHANDLER_TIMEOUT"} {
		t.Setenv(k, "")
	}
	path, _ := ConfigPath()
	cfg := &Config{Current: "bob", Contexts: []Context{
		{Name: "bob", Addr: "h:1", CA: "/c/ca.crt", Cert: "/c/bob.crt", Key: "/c/bob.key"},
	}}
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	warned := func(args ...string) string {
		t.Helper()
		var stderr bytes.Buffer
		app := &cli.App{Name: "telehandler", Flags: ConnFlags(), ErrWriter: &stderr, Commands: []*cli.Command{{
			Name: "cmd", Flags: ConnFlags(),
			Action: func(c *cli.Context) error { _, err := resolveConn(c); return err },
		}}}
		if err := app.Run(append([]string{"telehandler"}, args...)); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return stderr.String()
	}
	t.Setenv("TELEHANDLER_CA", "/c/ca.crt") // the same as the context's
	t.Setenv("TELEHANDLER_CERT", "/c/alice.crt")
	t.Setenv("TELEHANDLER_KEY", "/c/alice.key")
	if got := warned("cmd"); got != "" {
		t.Errorf("the current context overridden: warned %q", got)
	}
	got := warned("--context", "bob", "cmd")
	if !strings.Contains(got, "context bob (--context) is overridden by TELEHANDLER_CERT TELEHANDLER_KEY") || strings.Contains(got, "TELEHANDLER_CA") {
		t.Errorf("--context bob under alice's variables: warned %q", got)
	}
	t.Setenv("TELEHANDLER_CONTEXT", "bob")
	if got := warned("cmd"); !strings.Contains(got, "(TELEHANDLER_CONTEXT)") {
		t.Errorf("TELEHANDLER_CONTEXT=bob under alice's variables: warned %q", got)
	}
	if got := warned("cmd", "--cert", "/c/carol.crt", "--key", "/c/carol.key"); got != "" {
		t.Errorf("flags override the context: warned %q", got)
	}
}
