package limits

import (
	"errors"
	"math"
	"testing"
)

// Fuzz target of the limits' quantity parsers. `make test` runs its seed
// corpus (testdata/fuzz/FuzzParseQuantity) as an ordinary test; `make fuzz`
// fuzzes it for a while.

// FuzzParseQuantity feeds every kind of limit quantity (sizes, rates, CPU,
// counts) anything. Each parser returns a positive value or an error
// wrapping errUnit, never a panic or a silent zero; and what the formatter
// writes for a value (in --help defaults, status, the server's messages)
// parses back to it: exactly for CPU and counts, to the formatter's two
// decimals for sizes and rates.
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5G", "100MB/s", "0.5", "50%", "250m", "10k", "1e3", "0x10", "+1", "--1",
		"1.5.5", "16EiB", "18446744073709551615", "0.1 CPU", " 2.5 CPUs ", "1e-400", "NaN", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, k := range []struct {
			name  string
			kind  kind
			exact bool
		}{
			{"cpu", cpuKind, true},
			{"bytes", bytesKind, false},
			{"rate", rateKind, false},
			{"count", countKind, true},
		} {
			v, err := k.kind.parse(s)
			if err != nil {
				if !errors.Is(err, errUnit) {
					t.Fatalf("%s %q: %v does not wrap errUnit", k.name, s, err)
				}
				continue
			}
			if v == 0 {
				t.Fatalf("%s %q parses as 0 without an error", k.name, s)
			}
			shown := k.kind.format(v)
			back, err := k.kind.parse(shown)
			if err != nil {
				t.Fatalf("%s %q = %d, shown as %q, which does not parse: %v", k.name, s, v, shown, err)
			}
			if k.exact && back != v {
				t.Fatalf("%s %q = %d, shown as %q, which parses as %d", k.name, s, v, shown, back)
			}
			// Two decimals of the unit (KiB or more past 1023 bytes) is
			// at most 0.5% of the value off, plus float rounding.
			if diff := math.Abs(float64(back) - float64(v)); !k.exact && diff > float64(v)/200+1 {
				t.Fatalf("%s %q = %d, shown as %q, which parses as %d", k.name, s, v, shown, back)
			}
		}
	})
}
