package client

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// limitFlag is one resource limit flag, named the same for start (--cpu),
// and for serve's defaults (--default-cpu) and maxima (--max-cpu).
type limitFlag struct {
	name  string
	usage string
	parse func(string) (uint64, error)
	field func(*pb.Limits) *uint64
}

func limitFlagList() []limitFlag {
	return []limitFlag{
		{"cpu", "CPU quota, as 0.5 or 50% (half of one CPU), 2 (two CPUs), 250m (thousandths)", ParseCPU,
			func(l *pb.Limits) *uint64 { return &l.CpuMilli }},
		{"memory", "memory limit, as 512MiB, 1GiB, 100MB, 64M (K, M, G = KiB, MiB, GiB)", ParseBytes,
			func(l *pb.Limits) *uint64 { return &l.MemoryBytes }},
		{"pids", "number of processes and threads", ParseCount,
			func(l *pb.Limits) *uint64 { return &l.Pids }},
		{"io-read-bps", "disk read rate on every disk, as 100MiB (per second)", ParseBytes,
			func(l *pb.Limits) *uint64 { return &l.IoReadBps }},
		{"io-write-bps", "disk write rate on every disk, as 100MiB (per second)", ParseBytes,
			func(l *pb.Limits) *uint64 { return &l.IoWriteBps }},
		{"io-read-iops", "disk read operations per second on every disk", ParseCount,
			func(l *pb.Limits) *uint64 { return &l.IoReadIops }},
		{"io-write-iops", "disk write operations per second on every disk", ParseCount,
			func(l *pb.Limits) *uint64 { return &l.IoWriteIops }},
	}
}

// envName turns a flag name into its TELEHANDLER_* variable.
func envName(flag string) string {
	return "TELEHANDLER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// LimitFlags returns one string flag per limit, named prefix+limit (for
// example "max-memory") and read from TELEHANDLER_<PREFIX><LIMIT> too.
// usage is a format with one %s, the limit's description; def, when not
// nil, is shown as the default value.
func LimitFlags(prefix, usage string, def *pb.Limits, format func(name string, v uint64) string) []cli.Flag {
	var flags []cli.Flag
	for _, lf := range limitFlagList() {
		f := &cli.StringFlag{
			Name:    prefix + lf.name,
			Usage:   fmt.Sprintf(usage, lf.usage),
			EnvVars: []string{envName(prefix + lf.name)},
		}
		if def != nil && format != nil {
			f.DefaultText = format(lf.name, *lf.field(def))
		}
		flags = append(flags, f)
	}
	return flags
}

// FormatLimit writes the value of the limit called name for --help.
func FormatLimit(name string, v uint64) string {
	switch name {
	case "cpu":
		return FormatCPU(v)
	case "memory":
		return FormatBytes(v)
	case "io-read-bps", "io-write-bps":
		return FormatBytes(v) + "/s"
	}
	return FormatCount(v)
}

// ParseLimitFlags reads the limit flags named with prefix that are set;
// unset flags leave their field zero.
func ParseLimitFlags(c *cli.Context, prefix string) (*pb.Limits, error) {
	l := &pb.Limits{}
	for _, lf := range limitFlagList() {
		name := prefix + lf.name
		if !c.IsSet(name) {
			continue
		}
		v, err := lf.parse(c.String(name))
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
		*lf.field(l) = v
	}
	return l, nil
}
