// Package limits is the one home of a job's resource limits on the command
// line and in messages: their names, how their quantities are written
// ("512MiB", "50%", "10k") and printed, and the flags that set them, which
// start (--cpu, --memory, ...) and serve (--default-cpu, --max-cpu, ...)
// share. It knows neither the API nor the sandbox: client converts Values
// to the API's Limits, serve to the sandbox's.
package limits

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// Values are a job's eight limits in the kernel's units: thousandths of a
// CPU, bytes, bytes per second, operations per second, processes. A zero
// field is "not set" (the server's default applies).
type Values struct {
	CPUMilli    uint64
	MemoryBytes uint64
	Pids        uint64
	IOReadBPS   uint64
	IOWriteBPS  uint64
	IOReadIOPS  uint64
	IOWriteIOPS uint64
	NetworkBPS  uint64
}

// kind is how a limit's quantity is written.
type kind struct {
	parse  func(string) (uint64, error)
	format func(uint64) string
}

var (
	cpuKind   = kind{ParseCPU, FormatCPU}
	bytesKind = kind{ParseBytes, FormatBytes}
	rateKind  = kind{ParseBytes, FormatRate}
	countKind = kind{ParseCount, FormatCount}
)

// field is one limit: its flag name, its help and where it lives in Values.
type field struct {
	name  string
	usage string
	kind  kind
	value func(*Values) *uint64
}

// fields lists the limits in the order of --help.
var fields = []field{
	{"cpu", "CPU quota, as 0.5 or 50% (half of one CPU), 2 (two CPUs), 250m (thousandths)", cpuKind,
		func(v *Values) *uint64 { return &v.CPUMilli }},
	{"memory", "memory limit, as 512MiB, 1GiB, 100MB, 64M (K, M, G = KiB, MiB, GiB)", bytesKind,
		func(v *Values) *uint64 { return &v.MemoryBytes }},
	{"pids", "number of processes and threads", countKind,
		func(v *Values) *uint64 { return &v.Pids }},
	{"io-read-bps", "disk read rate on every disk, as 100MiB (per second)", rateKind,
		func(v *Values) *uint64 { return &v.IOReadBPS }},
	{"io-write-bps", "disk write rate on every disk, as 100MiB (per second)", rateKind,
		func(v *Values) *uint64 { return &v.IOWriteBPS }},
	{"io-read-iops", "disk read operations per second on every disk", countKind,
		func(v *Values) *uint64 { return &v.IOReadIOPS }},
	{"io-write-iops", "disk write operations per second on every disk", countKind,
		func(v *Values) *uint64 { return &v.IOWriteIOPS }},
	{"network-bps", "bandwidth of a networked job (start --network), each way, as 10MiB (per second)", rateKind,
		func(v *Values) *uint64 { return &v.NetworkBPS }},
}

// envName turns a flag name into its TELEHANDLER_* variable.
func envName(flag string) string {
	return "TELEHANDLER_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Flags returns one flag per limit, named prefix+limit (for example
// "max-memory") and read from TELEHANDLER_<PREFIX><LIMIT> too. usage is a
// format with one %s, the limit's description; def, when not nil, is shown
// as the default value.
func Flags(prefix, usage string, def *Values) []cli.Flag {
	var flags []cli.Flag
	for _, f := range fields {
		fl := &cli.StringFlag{
			Name:    prefix + f.name,
			Usage:   fmt.Sprintf(usage, f.usage),
			EnvVars: []string{envName(prefix + f.name)},
		}
		if def != nil {
			fl.DefaultText = f.kind.format(*f.value(def))
		}
		flags = append(flags, fl)
	}
	return flags
}

// FromFlags reads the limit flags named with prefix that are set (on the
// command line or in the environment); unset flags leave their field zero.
func FromFlags(c *cli.Context, prefix string) (Values, error) {
	var v Values
	for _, f := range fields {
		name := prefix + f.name
		if !c.IsSet(name) {
			continue
		}
		n, err := f.kind.parse(c.String(name))
		if err != nil {
			return Values{}, fmt.Errorf("--%s: %w", name, err)
		}
		*f.value(&v) = n
	}
	return v, nil
}
