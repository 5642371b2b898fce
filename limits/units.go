package limits

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// errUnit is wrapped by every parse error of this file.
var errUnit = errors.New("invalid quantity")

// byteUnits are the suffixes ParseBytes accepts, lower-cased. Decimal SI
// units (KB, MB...) are powers of 1000, IEC units (KiB, MiB...) and the
// bare letters (K, M, G, T, as docker and ulimit use them) powers of 1024.
var byteUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	"p": 1 << 50, "pib": 1 << 50, "pb": 1e15,
	"e": 1 << 60, "eib": 1 << 60, "eb": 1e18,
}

// ParseBytes parses a size such as "512MiB", "100MB", "1.5G" or "4096".
// Units are case-insensitive: KiB...EiB and K, M, G, T, P, E are powers of
// 1024, KB...EB powers of 1000, no unit or B means bytes. A rate may end
// in "/s" ("100MiB/s"). The result is positive.
func ParseBytes(s string) (uint64, error) {
	num, unit := splitNumber(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	mult, ok := byteUnits[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("%w %q: unknown unit %q (use B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)", errUnit, s, unit)
	}
	return positive(s, num, mult)
}

// ParseCPU parses a CPU quota into thousandths of one CPU: "0.5" or "50%"
// is half of one CPU (500), "2" two CPUs (2000), "250m" 250 thousandths
// (as Kubernetes writes it). "0.5 CPU", as FormatCPU writes it, is taken
// too.
func ParseCPU(s string) (uint64, error) {
	num, unit := splitNumber(strings.TrimSpace(s))
	var mult float64
	switch strings.ToLower(unit) {
	case "", "cpu", "cpus":
		mult = 1000
	case "%":
		mult = 10
	case "m":
		mult = 1
	default:
		return 0, fmt.Errorf("%w %q: a CPU quota is a number of CPUs (0.5), a percentage of one CPU (50%%) or thousandths (500m)", errUnit, s)
	}
	return positive(s, num, mult)
}

// ParseCount parses a positive whole number such as "1024" or "10k"
// (k = 1000, m = million); a fraction ("2.5", "1.0005k") is refused.
func ParseCount(s string) (uint64, error) {
	num, unit := splitNumber(strings.TrimSpace(s))
	var mult float64
	switch strings.ToLower(unit) {
	case "":
		mult = 1
	case "k":
		mult = 1e3
	case "m":
		mult = 1e6
	default:
		return 0, fmt.Errorf("%w %q: expected a whole number such as 1000 or 10k", errUnit, s)
	}
	// 1.5k is 1500, but 2.5 processes are not rounded to some number.
	if f, err := strconv.ParseFloat(num, 64); err == nil && f*mult != math.Trunc(f*mult) {
		return 0, fmt.Errorf("%w %q: expected a whole number such as 1000 or 10k", errUnit, s)
	}
	return positive(s, num, mult)
}

// splitNumber splits "1.5GiB" into "1.5" and "GiB".
func splitNumber(s string) (num, unit string) {
	i := strings.IndexFunc(s, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r == '.' || r == '-' || r == '+')
	})
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// positive returns num*mult rounded to a whole number, which must be > 0
// and fit a uint64.
func positive(s, num string, mult float64) (uint64, error) {
	if num == "" {
		return 0, fmt.Errorf("%w %q: no number", errUnit, s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q: %q is not a number", errUnit, s, num)
	}
	v := math.Round(f * mult)
	switch {
	case math.IsNaN(v) || v < 0:
		return 0, fmt.Errorf("%w %q: must not be negative", errUnit, s)
	case v == 0:
		return 0, fmt.Errorf("%w %q: must be more than zero", errUnit, s)
	case v >= math.MaxUint64:
		return 0, fmt.Errorf("%w %q: too large", errUnit, s)
	}
	return uint64(v), nil
}

// FormatBytes writes n in the largest IEC unit that keeps it readable:
// "512MiB", "1.5GiB", "100B".
func FormatBytes(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, u := float64(n), 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	r := math.Round(v*100) / 100
	if r*math.Pow(1024, float64(u)) >= 0x1p64 {
		// Rounded up to 16EiB, which no uint64 holds: round down.
		r = math.Floor(v*100-1) / 100
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + units[u]
}

// FormatCPU writes a quota in thousandths of a CPU as CPUs: "0.1 CPU",
// "1 CPU", "2.5 CPUs".
func FormatCPU(milli uint64) string {
	unit := " CPU"
	if milli > 1000 {
		unit = " CPUs"
	}
	return strconv.FormatFloat(float64(milli)/1000, 'f', -1, 64) + unit
}

// FormatRate writes a rate in bytes per second: "100MiB/s".
func FormatRate(n uint64) string { return FormatBytes(n) + "/s" }

// FormatCount writes a whole number.
func FormatCount(n uint64) string { return strconv.FormatUint(n, 10) }
