package limits

import (
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestFlags: the same flags, with a prefix, parse every limit from the
// command line or the environment, and show a default in --help.
func TestFlags(t *testing.T) {
	t.Setenv("TELEHANDLER_MAX_PIDS", "10k")
	def := Values{CPUMilli: 100, MemoryBytes: 512 << 20, IOReadBPS: 100 << 20}
	var got Values
	var help strings.Builder
	app := &cli.App{Name: "x", Writer: &help, Commands: []*cli.Command{{
		Name:  "serve",
		Flags: Flags("max-", "most: %s", &def),
		Action: func(c *cli.Context) error {
			var err error
			got, err = FromFlags(c, "max-")
			return err
		},
	}}}
	if err := app.Run([]string{"x", "serve", "--max-cpu", "1.5", "--max-memory", "1GiB", "--max-io-write-bps", "20MB", "--max-io-read-iops", "500"}); err != nil {
		t.Fatal(err)
	}
	want := Values{CPUMilli: 1500, MemoryBytes: 1 << 30, Pids: 10000, IOWriteBPS: 20e6, IOReadIOPS: 500}
	if got != want {
		t.Errorf("FromFlags = %+v, want %+v", got, want)
	}
	err := app.Run([]string{"x", "serve", "--max-memory", "lots"})
	if err == nil || !strings.Contains(err.Error(), "--max-memory") {
		t.Errorf("a bad value: %v", err)
	}
	app.Run([]string{"x", "serve", "--help"})
	for _, s := range []string{"--max-cpu", "(default: 0.1 CPU)", "(default: 512MiB)", "(default: 100MiB/s)", "TELEHANDLER_MAX_IO_READ_BPS"} {
		if !strings.Contains(help.String(), s) {
			t.Errorf("--help lacks %q:\n%s", s, help.String())
		}
	}
	for milli, want := range map[uint64]string{100: "0.1 CPU", 1000: "1 CPU", 2500: "2.5 CPUs"} {
		if got := FormatCPU(milli); got != want {
			t.Errorf("FormatCPU(%d) = %q, want %q", milli, got, want)
		}
	}
	if got := FormatRate(100 << 20); got != "100MiB/s" {
		t.Errorf("FormatRate = %q", got)
	}
}
