package server

import (
	"fmt"
	"runtime"
	"strconv"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/limits"
	"github.com/drrev/telehandler/sandbox"
)

// limitField is one field of sandbox.Limits, named as in the API.
type limitField struct {
	name   string
	value  *uint64
	format func(uint64) string
}

// fieldsOf lists the fields of l in a fixed order.
func fieldsOf(l *sandbox.Limits) []limitField {
	return []limitField{
		{"cpu_milli", &l.CPUMilli, limits.FormatCPU},
		{"memory_bytes", &l.MemoryBytes, limits.FormatBytes},
		{"io_read_bps", &l.IOReadBPS, limits.FormatRate},
		{"io_write_bps", &l.IOWriteBPS, limits.FormatRate},
		{"io_read_iops", &l.IOReadIOPS, limits.FormatCount},
		{"io_write_iops", &l.IOWriteIOPS, limits.FormatCount},
		{"pids", &l.Pids, limits.FormatCount},
		{"network_bps", &l.NetworkBPS, limits.FormatRate},
	}
}

// DefaultMaxLimits are the maxima a server allows when its Config sets
// none: every CPU of the host, 16 GiB of memory, 10 GiB/s and a million
// IOPS of disk IO, 65536 processes, 1 GiB/s of network each way. They keep absurd requests out; an
// operator raises them with the serve flags.
func DefaultMaxLimits() sandbox.Limits {
	return sandbox.Limits{
		CPUMilli:    uint64(runtime.NumCPU()) * 1000,
		MemoryBytes: 16 << 30,
		IOReadBPS:   10 << 30,
		IOWriteBPS:  10 << 30,
		IOReadIOPS:  1_000_000,
		IOWriteIOPS: 1_000_000,
		Pids:        65536,
		NetworkBPS:  1 << 30,
	}
}

// JobDefaultLimits are the limits StartJob gives a job that asks for none,
// for Config.DefaultLimits configured (its zero fields take
// sandbox.DefaultLimits' values). The warm shim pool's cgroups are made
// with them, so that such a job's start rewrites none.
func JobDefaultLimits(configured sandbox.Limits) sandbox.Limits {
	return fillLimits(configured, sandbox.DefaultLimits())
}

// fillLimits sets every zero field of l from def.
func fillLimits(l, def sandbox.Limits) sandbox.Limits {
	lf, df := fieldsOf(&l), fieldsOf(&def)
	for i := range lf {
		if *lf[i].value == 0 {
			*lf[i].value = *df[i].value
		}
	}
	return l
}

// checkLimits returns an error naming the first field of l above max.
func checkLimits(l, max sandbox.Limits) error {
	lf, mf := fieldsOf(&l), fieldsOf(&max)
	for i := range lf {
		if v, m := *lf[i].value, *mf[i].value; v > m {
			return fmt.Errorf("limits.%s %s is above the server's maximum %s",
				lf[i].name, lf[i].show(v), lf[i].show(m))
		}
	}
	return nil
}

// resolveLimits turns a request's limits into the job's: zero fields take
// the server's defaults, no field may exceed the server's maxima, and the
// result must be limits the kernel accepts.
func resolveLimits(req *pb.Limits, def, max sandbox.Limits) (sandbox.Limits, error) {
	l := fillLimits(limitsFromProto(req), def)
	if err := checkLimits(l, max); err != nil {
		return sandbox.Limits{}, errorf(errInvalidArgument, "%v", err)
	}
	if err := l.Validate(); err != nil {
		return sandbox.Limits{}, err // wraps sandbox.ErrInvalidLimits
	}
	return l, nil
}

// show writes a value of the field as the API has it and, when that
// differs, as people write it: "4000 (4 CPUs)", "1024".
func (f limitField) show(v uint64) string {
	raw, human := strconv.FormatUint(v, 10), f.format(v)
	if raw == human {
		return raw
	}
	return raw + " (" + human + ")"
}
