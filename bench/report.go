package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// series is one latency measurement: a sample per run.
type series struct {
	name    string
	samples []time.Duration
}

// quantile returns the nearest-rank q-quantile (0 < q <= 1) of the samples.
func (s series) quantile(q float64) time.Duration {
	if len(s.samples) == 0 {
		return 0
	}
	sorted := slices.Clone(s.samples)
	slices.Sort(sorted)
	rank := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

func (s series) p50() time.Duration { return s.quantile(0.50) }
func (s series) p99() time.Duration { return s.quantile(0.99) }

func (s series) mean() time.Duration {
	if len(s.samples) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s.samples {
		sum += d
	}
	return sum / time.Duration(len(s.samples))
}

// verdict is the outcome of one row of the results table.
type verdict string

const (
	pass verdict = "PASS"
	fail verdict = "FAIL"
	info verdict = "info"
	skip verdict = "skipped"
)

// row is one line of the main table: a figure of Telehandler's, the peer it
// is compared with, their ratio and the target.
type row struct {
	metric, telehandler, peer, ratio, target string
	result                                   verdict
	correctness                              bool // a FAIL here is a bug, not a slow run
}

// report collects everything a run prints and writes.
type report struct {
	header  []string
	latency []series
	details []string // extra lines (sizes, per-run figures)
	rows    []row
}

func (r *report) add(x row) { r.rows = append(r.rows, x) }

func (r *report) note(format string, args ...any) {
	r.details = append(r.details, fmt.Sprintf(format, args...))
}

// failed reports whether any row failed: correctness only, or any target.
func (r *report) failed(anyTarget bool) bool {
	for _, x := range r.rows {
		if x.result == fail && (anyTarget || x.correctness) {
			return true
		}
	}
	return false
}

func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("# Telehandler benchmarks\n\n")
	for _, h := range r.header {
		fmt.Fprintf(&b, "%s  \n", h)
	}
	b.WriteString("\n| metric | telehandler | peer | ratio | target | result |\n|---|---|---|---|---|---|\n")
	for _, x := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n",
			x.metric, dash(x.telehandler), dash(x.peer), dash(x.ratio), dash(x.target), x.result)
	}
	if len(r.latency) > 0 {
		b.WriteString("\n## Start latency, every series\n\n| what | runs | p50 | p99 | mean |\n|---|---|---|---|---|\n")
		for _, s := range r.latency {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s |\n", s.name, len(s.samples), ms(s.p50()), ms(s.p99()), ms(s.mean()))
		}
	}
	if len(r.details) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, d := range r.details {
			fmt.Fprintf(&b, "- %s\n", d)
		}
	}
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ms formats a duration in milliseconds with three significant digits.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

// mibps formats a rate in MiB/s.
func mibps(bytesPerSec float64) string {
	return fmt.Sprintf("%.0f MiB/s", bytesPerSec/(1<<20))
}

// size formats a byte count in binary units.
func size(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// ratio formats a/b as "0.12x".
func ratio(a, b float64) string {
	if b == 0 {
		return ""
	}
	return fmt.Sprintf("%.3gx", a/b)
}

// check is pass when ok, else fail.
func check(ok bool) verdict {
	if ok {
		return pass
	}
	return fail
}
