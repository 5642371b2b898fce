package server

import (
	"encoding/json"
	"errors"
	"math"
	"path"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
	"github.com/drrev/telehandler/sandbox"
)

// Fuzz targets of the server's request checks. `make test` runs their seed
// corpora (testdata/fuzz/FuzzXxx) as ordinary tests; `make fuzz` fuzzes
// each for a while.

// execve's own limits (fs/exec.c), which validateStart must keep requests
// within so that a request it accepts never fails at exec for its size.
const (
	// kernelMaxArgStrlen is MAX_ARG_STRLEN: one argv or envp string with its
	// terminating NUL.
	kernelMaxArgStrlen = 32 * 4096
	// kernelArgLimit is what argv and envp (strings, NULs and one pointer
	// each) may take with the usual 8 MiB stack limit: a quarter of it.
	kernelArgLimit = 8 << 20 / 4
)

// FuzzValidateStart feeds validateStart requests as the server receives
// them: encoded and decoded by protobuf first (a request gRPC cannot decode,
// such as one with invalid UTF-8, never reaches it). A request it accepts
// must be one every later stage takes as it is: execve (no NUL, no string
// or total over the kernel's limits), the shim's environment rule
// (KEY=VALUE), an absolute directory, and the JSON spec that carries it to
// the shim, which must deliver every string unchanged. A request it refuses
// is an InvalidArgument with a message of bounded size.
//
// argv and envv hold the arguments and environment entries separated by
// "\x1e" (so that the fuzzer can vary their number).
func FuzzValidateStart(f *testing.F) {
	f.Add("sh", "-c\x1eecho hi", "PATH=/bin\x1eHOME=/", "/tmp")
	f.Add("/bin/true", "", "", "")
	f.Add("", "x", "", "")
	f.Add("sh", "a\x00b", "", "")
	f.Add("sh", "", "=v", "")
	f.Add("sh", "", "NOEQUALS", "")
	f.Add("sh", "", "K=", "relative/dir")
	f.Add("printf", "\x1b[2J\u202e", "A=\u00e9", "/")
	f.Fuzz(func(t *testing.T, command, argv, envv, dir string) {
		req := &pb.StartJobRequest{Command: command, WorkingDir: dir}
		if argv != "" {
			req.Args = strings.Split(argv, "\x1e")
		}
		if envv != "" {
			req.Env = strings.Split(envv, "\x1e")
		}
		wire, err := proto.Marshal(req)
		if err != nil {
			return // gRPC's client could not send it either
		}
		got := &pb.StartJobRequest{}
		if err := proto.Unmarshal(wire, got); err != nil {
			return // refused by gRPC before the server sees it
		}
		checkValidateStart(t, got)
	})
}

// checkValidateStart checks validateStart's verdict on req.
func checkValidateStart(t *testing.T, req *pb.StartJobRequest) {
	err := validateStart(req)
	if err != nil {
		if !errors.Is(err, errInvalidArgument) {
			t.Fatalf("validateStart: %v is not InvalidArgument", err)
		}
		if len(err.Error()) > 512 {
			t.Fatalf("validateStart echoes %d bytes back: %.100q...", len(err.Error()), err.Error())
		}
		return
	}
	if req.GetCommand() == "" {
		t.Fatal("validateStart accepted an empty command")
	}
	argv := append([]string{req.GetCommand()}, req.GetArgs()...)
	total := 0
	for _, s := range append(append(argv, req.GetEnv()...), req.GetWorkingDir()) {
		if strings.IndexByte(s, 0) >= 0 {
			t.Fatalf("validateStart accepted a NUL byte in %q, which execve or chdir cannot take", s)
		}
		if len(s)+1 > kernelMaxArgStrlen {
			t.Fatalf("validateStart accepted a %d-byte string: execve refuses one over %d bytes with its NUL (E2BIG)", len(s), kernelMaxArgStrlen)
		}
	}
	for _, s := range append(argv, req.GetEnv()...) {
		total += len(s) + 1 + 8
	}
	if total > kernelArgLimit {
		t.Fatalf("validateStart accepted %d bytes of argv and envp, over execve's %d", total, kernelArgLimit)
	}
	for _, e := range req.GetEnv() {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			t.Fatalf("validateStart accepted the environment entry %q", e)
		}
	}
	if d := req.GetWorkingDir(); d != "" && !path.IsAbs(d) {
		t.Fatalf("validateStart accepted the relative working_dir %q", d)
	}
	// The spec travels to the shim as JSON: every string arrives as sent.
	spec := sandbox.Spec{Path: req.GetCommand(), Args: req.GetArgs(), Env: req.GetEnv(), Dir: req.GetWorkingDir()}
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatalf("encode spec: %v", err)
	}
	var back sandbox.Spec
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("decode spec %s: %v", data, err)
	}
	if !reflect.DeepEqual(back, spec) {
		t.Fatalf("the spec reaches the shim as %+v, sent %+v", back, spec)
	}
}

// TestValidateStartSizes puts the size limits to the same checks at their
// edges, which the fuzzer would take long to reach.
func TestValidateStartSizes(t *testing.T) {
	for _, n := range []int{maxStringBytes - 1, maxStringBytes, maxStringBytes + 1, kernelMaxArgStrlen - 1, kernelMaxArgStrlen} {
		s := strings.Repeat("a", n)
		checkValidateStart(t, &pb.StartJobRequest{Command: "echo", Args: []string{s}})
		checkValidateStart(t, &pb.StartJobRequest{Command: "env", Env: []string{"K=" + s[2:]}})
		checkValidateStart(t, &pb.StartJobRequest{Command: s})
	}
	big := make([]string, 9)
	for i := range big {
		big[i] = strings.Repeat("b", maxStringBytes-1)
	}
	checkValidateStart(t, &pb.StartJobRequest{Command: "echo", Args: big})
	checkValidateStart(t, &pb.StartJobRequest{Command: "echo", Args: make([]string, maxArgs), Env: slicesRepeat("K=v", maxEnv)})
	if err := validateStart(&pb.StartJobRequest{Command: "echo", Args: []string{strings.Repeat("a", kernelMaxArgStrlen-1)}}); err != nil {
		t.Errorf("the longest argument execve takes is refused: %v", err)
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// FuzzParseJobName: parseJobRef accepts exactly the references of 1 to
// maxIDLen of [A-Za-z0-9_.-], with or without "jobs/" (then it is an id or
// an id prefix only), and jobName inverts it on the jobs/ form; a refusal
// is an InvalidArgument that echoes at most a clipped name.
func FuzzParseJobName(f *testing.F) {
	for _, s := range []string{"jobs/abc", "jobs/", "abc", "jobs/a/b", "jobs/..", "JOBS/x", "jobs/é", "jobs/a\x00",
		"web.1", "-x", "jobs/" + strings.Repeat("z", maxIDLen), "jobs/" + strings.Repeat("z", maxIDLen+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ref, err := parseJobRef(name)
		rest, hasPrefix := strings.CutPrefix(name, namePrefix)
		if err != nil {
			if !errors.Is(err, errInvalidArgument) {
				t.Fatalf("parseJobRef(%q): %v is not InvalidArgument", name, err)
			}
			if len(err.Error()) > 512 {
				t.Fatalf("parseJobRef echoes %d bytes", len(err.Error()))
			}
			// A reference made of the allowed characters would have been
			// taken.
			if validID(rest) {
				t.Fatalf("parseJobRef(%q) refused a well-formed reference: %v", name, err)
			}
			return
		}
		if !validID(ref.s) || ref.idOnly != hasPrefix || ref.s != rest {
			t.Fatalf("parseJobRef(%q) = %+v", name, ref)
		}
		if hasPrefix && jobName(ref.s) != name {
			t.Fatalf("jobName(parseJobRef(%q)) = %q", name, jobName(ref.s))
		}
	})
}

// validID reports whether id is made of the characters a job reference
// may hold (an id's, and '.' of names).
func validID(id string) bool {
	if len(id) == 0 || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// FuzzResolveLimits: the limits a request asks for become a job's limits
// only within the server's maxima and the kernel's bounds (Validate), every
// field set (no field is left unlimited by a zero), and they survive the
// trip to the API and back. Two sets of maxima: the defaults, and an
// operator's "anything goes" (every maximum at its largest), where only
// Validate stands between a request and the cgroup files.
func FuzzResolveLimits(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), uint64(0), false)
	f.Add(uint64(500), uint64(512<<20), uint64(100<<20), uint64(100<<20), uint64(1000), uint64(1000), uint64(1024), false)
	f.Add(uint64(1), uint64(1), uint64(1), uint64(1), uint64(1), uint64(1), uint64(1), true)
	f.Add(uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64),
		uint64(math.MaxUint64), uint64(math.MaxUint64), uint64(math.MaxUint64), true)
	f.Add(uint64(9), uint64(4<<20-1), uint64(0), uint64(0), uint64(0), uint64(0), uint64(4<<20+1), true)
	f.Fuzz(func(t *testing.T, cpu, mem, rbps, wbps, riops, wiops, pids uint64, unbounded bool) {
		def := sandbox.Limits{CPUMilli: 100, MemoryBytes: 512 << 20, IOReadBPS: 100 << 20, IOWriteBPS: 100 << 20,
			IOReadIOPS: 1000, IOWriteIOPS: 1000, Pids: 1024, NetworkBPS: 10 << 20}
		max := DefaultMaxLimits()
		if unbounded {
			for _, fl := range fieldsOf(&max) {
				*fl.value = math.MaxUint64
			}
		}
		req := &pb.Limits{CpuMilli: cpu, MemoryBytes: mem, IoReadBps: rbps, IoWriteBps: wbps,
			IoReadIops: riops, IoWriteIops: wiops, Pids: pids}
		l, err := resolveLimits(req, def, max)
		if err != nil {
			if !errors.Is(err, errInvalidArgument) && !errors.Is(err, sandbox.ErrInvalidLimits) {
				t.Fatalf("resolveLimits: %v is neither InvalidArgument nor ErrInvalidLimits", err)
			}
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("resolveLimits accepted limits the sandbox refuses: %v", err)
		}
		lf, mf, rf := fieldsOf(&l), fieldsOf(&max), fieldsOf(new(limitsFromProto(req)))
		for i := range lf {
			v := *lf[i].value
			switch {
			case v == 0:
				t.Fatalf("%s is left 0 (unlimited)", lf[i].name)
			case v > *mf[i].value:
				t.Fatalf("%s %d is above the maximum %d", lf[i].name, v, *mf[i].value)
			case *rf[i].value != 0 && v != *rf[i].value:
				t.Fatalf("%s: asked %d, got %d", lf[i].name, *rf[i].value, v)
			}
		}
		if back := limitsFromProto(limitsToProto(l)); back != l {
			t.Fatalf("limits %+v come back from the API as %+v", l, back)
		}
	})
}
