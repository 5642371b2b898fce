package limits

import (
	"errors"
	"testing"
)

func TestParseBytes(t *testing.T) {
	good := map[string]uint64{
		"4096": 4096, "100B": 100, "512MiB": 512 << 20, "512mib": 512 << 20, "512M": 512 << 20,
		"100MB": 100e6, "1.5GiB": 3 << 29, "2G": 2 << 30, "1TB": 1e12, "64KiB": 64 << 10,
		"100MiB/s": 100 << 20, " 10 MiB ": 10 << 20, "1PiB": 1 << 50, "8EiB": 8 << 60,
	}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "-5MiB", "0", "0MiB", "1.2.3", "12 parsecs", "1e30TiB", "16EiB", "NaN", "0.0001B"} {
		if got, err := ParseBytes(in); !errors.Is(err, errUnit) {
			t.Errorf("ParseBytes(%q) = %d, %v; want an error", in, got, err)
		}
	}
}

func TestParseCPU(t *testing.T) {
	good := map[string]uint64{"0.5": 500, "50%": 500, "2": 2000, "250m": 250, "10%": 100, "1.25": 1250, "0.1": 100}
	for in, want := range good {
		if got, err := ParseCPU(in); err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-0.5", "0", "0%", "half", "5 cores", "%"} {
		if got, err := ParseCPU(in); !errors.Is(err, errUnit) {
			t.Errorf("ParseCPU(%q) = %d, %v; want an error", in, got, err)
		}
	}
}

func TestParseCount(t *testing.T) {
	good := map[string]uint64{"1024": 1024, "10k": 10000, "1m": 1e6, "1.5k": 1500, "2.0": 2}
	for in, want := range good {
		if got, err := ParseCount(in); err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "0", "ten", "5x", "2.5", "0.4", "1.0005k"} {
		if got, err := ParseCount(in); !errors.Is(err, errUnit) {
			t.Errorf("ParseCount(%q) = %d, %v; want an error", in, got, err)
		}
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[uint64]string{100: "100B", 512 << 20: "512MiB", 3 << 29: "1.5GiB", 1023: "1023B"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := FormatCPU(100); got != "0.1 CPU" {
		t.Errorf("FormatCPU(100) = %q", got)
	}
}
