package main

import (
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

func TestParseRetain(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "1d": 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseRetain(in); err != nil || got != want {
			t.Errorf("parseRetain(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0d", "-1h", "d", "7days", "1.5d", "99999999d"} {
		if _, err := parseRetain(in); err == nil {
			t.Errorf("parseRetain(%q) succeeded", in)
		}
	}
}

// TestCheckPositiveFlags: a count or time of 0 or less given to serve is
// refused with the flag's name, not silently taken for the default; left
// out, the default stands.
func TestCheckPositiveFlags(t *testing.T) {
	check := func(args ...string) error {
		var err error
		app := &cli.App{Name: "telehandler", Commands: []*cli.Command{{
			Name: "serve", Flags: serveCommand().Flags,
			Action: func(c *cli.Context) error { err = checkPositiveFlags(c); return nil },
		}}}
		if runErr := app.Run(append([]string{"telehandler", "serve"}, args...)); runErr != nil {
			t.Fatalf("%v: %v", args, runErr)
		}
		return err
	}
	if err := check(); err != nil {
		t.Errorf("no flags: %v", err)
	}
	if err := check("--max-jobs", "5", "--idle-timeout", "1s"); err != nil {
		t.Errorf("positive values: %v", err)
	}
	for _, args := range [][]string{
		{"--max-jobs", "0"}, {"--max-jobs-per-user", "0"}, {"--max-conns", "0"}, {"--max-conns-per-ip", "-1"},
		{"--max-streams-per-conn", "0"}, {"--max-watchers-per-user", "0"},
		{"--handshake-timeout", "0"}, {"--idle-timeout", "0s"}, {"--shutdown-timeout", "-1s"},
	} {
		if err := check(args...); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want an error naming %s", args, err, args[0])
		}
	}
	t.Setenv("TELEHANDLER_MAX_CONNS", "0")
	if err := check(); err == nil || !strings.Contains(err.Error(), "--max-conns") {
		t.Errorf("TELEHANDLER_MAX_CONNS=0: %v", err)
	}
}
