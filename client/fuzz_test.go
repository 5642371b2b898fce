package client

import (
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets of the client's parsers and formatters. `make test` runs
// their seed corpora (testdata/fuzz/FuzzXxx) as ordinary tests; `make fuzz`
// fuzzes each for a while.

// FuzzParseQuantity feeds the limit flags' parsers (--memory and the IO
// rates, --cpu, --pids and the IOPS) anything. Each returns a positive
// value or an error wrapping errUnit, never a panic or a silent zero; and
// what the formatters write for a value (the defaults in --help) parses
// back to it: exactly for CPU and counts, to the formatter's two decimals
// for sizes.
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5G", "100MB/s", "0.5", "50%", "250m", "10k", "1e3", "0x10", "+1", "--1",
		"1.5.5", "16EiB", "18446744073709551615", "0.1 CPU", " 2 cpus ", "1e-400", "NaN", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range []struct {
			name   string
			parse  func(string) (uint64, error)
			format func(uint64) string
			exact  bool
		}{
			{"ParseBytes", ParseBytes, FormatBytes, false},
			{"ParseBytes (rate)", ParseBytes, func(n uint64) string { return FormatLimit("io-read-bps", n) }, false},
			{"ParseCPU", ParseCPU, FormatCPU, true},
			{"ParseCount", ParseCount, FormatCount, true},
		} {
			v, err := p.parse(s)
			if err != nil {
				if !errors.Is(err, errUnit) {
					t.Fatalf("%s(%q): %v does not wrap errUnit", p.name, s, err)
				}
				continue
			}
			if v == 0 {
				t.Fatalf("%s(%q) = 0 without an error", p.name, s)
			}
			shown := p.format(v)
			back, err := p.parse(shown)
			if err != nil {
				t.Fatalf("%s(%q) = %d, shown as %q, which does not parse: %v", p.name, s, v, shown, err)
			}
			if p.exact && back != v {
				t.Fatalf("%s(%q) = %d, shown as %q, which parses as %d", p.name, s, v, shown, back)
			}
			// Two decimals of the unit (at least 1 KiB when shown in KiB or
			// more) is at most 0.5% of the value off, plus float rounding.
			if diff := math.Abs(float64(back) - float64(v)); !p.exact && diff > float64(v)/200+1 {
				t.Fatalf("%s(%q) = %d, shown as %q, which parses as %d", p.name, s, v, shown, back)
			}
		}
	})
}

// FuzzSafeText: whatever the server sends, what safeText and shellQuote
// print holds no rune a terminal acts on and no invalid UTF-8, the text
// safeText leaves alone needed no escape, and distinct strings stay
// distinct (an escape cannot be forged with a backslash).
func FuzzSafeText(f *testing.F) {
	for _, s := range []string{"plain", "\x1b[2J", "\u202eexe.txt", "\xff", `\x1b`, "it's", "\u009b", "a\x7f", "\U000e0041"} {
		f.Add(s, `\`+s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, out := range []string{safeText(a), shellQuote(a, []string{b})} {
			if !utf8.ValidString(out) {
				t.Fatalf("escaped output %q is not UTF-8", out)
			}
			for _, r := range out {
				if unsafeRune(r) {
					t.Fatalf("escaped output %q holds %U", out, r)
				}
			}
		}
		if safeText(a) == a && (!utf8.ValidString(a) || strings.ContainsFunc(a, unsafeRune)) {
			t.Fatalf("safeText(%q) left it as it is", a)
		}
		if a != b && safeText(a) == safeText(b) {
			t.Fatalf("safeText(%q) = safeText(%q) = %q", a, b, safeText(a))
		}
		if a != b && shellQuote("x", []string{a}) == shellQuote("x", []string{b}) {
			t.Fatalf("shellQuote shows %q and %q alike: %s", a, b, shellQuote("x", []string{a}))
		}
	})
}
