package sandbox

// The seccomp filter every job runs under (unless the operator turned it
// off: serve --seccomp=off, Config.DisableSeccomp). The policy, which calls
// are allowed and why the others are refused, is in seccomp_policy_linux.go;
// this file turns a policy into a classic BPF program and installs it.
//
// The server compiles the program once (New) and sends it to every shim in
// its spec (shimSpec.Seccomp); the shim installs it as its very last step,
// on the thread that then calls execve, after no_new_privs. A filter is
// per thread and survives execve, which ends every other thread of the
// shim: the user's command and everything it forks run under it from their
// first instruction, and the shim's remaining steps (writing execMarker,
// execve, reporting an exec error, exiting) are all calls the filter allows.
// With Spec.Init the shim stays as the job's init and its Go runtime's
// threads outlive the exec: it installs the filter on all of them
// (SECCOMP_FILTER_FLAG_TSYNC), and the init's own calls (fork+exec, wait4,
// kill, sigaction, prctl) are allowed too (init_linux.go).
//
// The program, for a call with number nr from architecture arch:
//
//	arch is not the native one (i386 on amd64, arm32 on arm64)        -> kill the process
//	nr is -1 (a tracer skipping the call: no call runs)               -> allow
//	nr is an x32 number on amd64                                      -> kill the process
//	nr > the highest number the policy names                          -> ENOSYS (a call newer than the policy)
//	otherwise a binary search over nr's ranges, each ending in an answer:
//	  allow, EPERM, ENOSYS, or a check of one argument (clone, personality, socket)
//
// Numbers the policy does not name (below the highest it names) are refused
// with EPERM, as in Docker's default profile. Calls newer than the policy
// answer ENOSYS, as runc does for a profile: that is what an older kernel
// would say, and what libc and Go runtimes fall back on.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Answers of the filter (SECCOMP_RET_* values).
const (
	seccompAllow  = unix.SECCOMP_RET_ALLOW
	seccompEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	seccompENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	seccompKill   = unix.SECCOMP_RET_KILL_PROCESS
)

// seccompSkippedNr is call number -1: no call (see compile).
const seccompSkippedNr = 0xffffffff

// Offsets in struct seccomp_data, the filter's input: int nr; u32 arch;
// u64 instruction_pointer; u64 args[6]. Loads read native-endian words; on
// amd64 and arm64, little-endian, an argument's low half comes first.
const (
	seccompDataNr   = 0
	seccompDataArch = 4
	seccompDataArgs = 16
)

// seccompPolicy is what a filter answers for each system call of one
// architecture.
type seccompPolicy struct {
	// arch is the AUDIT_ARCH_* value of the native ABI; every other
	// architecture is killed.
	arch uint32
	// foreignBit, when not 0, marks numbers of another ABI that shares
	// arch (__X32_SYSCALL_BIT on amd64): they are killed too.
	foreignBit uint32
	// rules are the answers for the calls the policy names; an unnamed
	// number below the highest named one is refused with EPERM, one above
	// it answers ENOSYS.
	rules map[uint32]seccompRule
}

// seccompRule is the answer for one system call: ret, unless check is set.
type seccompRule struct {
	ret   uint32
	check *argCheck
}

// argCheck answers by the low 32 bits of one argument: match when they
// equal one of values or have one of bits set, otherwise otherwise.
//
// Only the low 32 bits are compared, because the kernel reads only those
// for every argument checked here (socket's family and personality's
// persona are int/unsigned int; legacy clone truncates its flags to 32
// bits). Comparing all 64 would let garbage in the high half slip a value
// past the check that the kernel then sees as the refused one.
type argCheck struct {
	arg              int
	values           []uint32
	bits             uint32
	match, otherwise uint32
}

// maxNamed is the highest call number the policy names.
func (p seccompPolicy) maxNamed() uint32 {
	var m uint32
	for nr := range p.rules {
		m = max(m, nr)
	}
	return m
}

// rule is the policy's rule for call nr, named or not; top is maxNamed.
func (p seccompPolicy) rule(nr, top uint32) seccompRule {
	if r, ok := p.rules[nr]; ok {
		return r
	}
	if nr > top {
		return seccompRule{ret: seccompENOSYS}
	}
	return seccompRule{ret: seccompEPERM}
}

// nrRange is a run of call numbers with the same rule, from lo up to the
// next range's lo.
type nrRange struct {
	lo   uint32
	rule seccompRule
}

// compile turns the policy into a BPF program.
func (p seccompPolicy) compile() ([]bpf.Instruction, error) {
	if p.arch == 0 || len(p.rules) == 0 {
		return nil, errors.New("seccomp policy without architecture or rules")
	}
	top := p.maxNamed()
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: seccompDataArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: p.arch, SkipTrue: 1},
		bpf.RetConstant{Val: seccompKill},
		bpf.LoadAbsolute{Off: seccompDataNr, Size: 4},
		// -1 is how a tracer (strace --inject, a debugger) skips the call
		// it stopped: no call runs, and the kernel keeps the result the
		// tracer set. Without this it would kill the job as an x32 number.
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: seccompSkippedNr, SkipFalse: 1},
		bpf.RetConstant{Val: seccompAllow},
	}
	if p.foreignBit != 0 {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: p.foreignBit, SkipFalse: 1},
			bpf.RetConstant{Val: seccompKill})
	}
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: top, SkipFalse: 1},
		bpf.RetConstant{Val: seccompENOSYS})

	// Runs of numbers with the same fixed answer become one range; a
	// checked call is a range of its own.
	var ranges []nrRange
	for nr := uint32(0); nr <= top; nr++ {
		r := p.rule(nr, top)
		if n := len(ranges); n > 0 && r.check == nil && ranges[n-1].rule.check == nil && ranges[n-1].rule.ret == r.ret {
			continue
		}
		ranges = append(ranges, nrRange{lo: nr, rule: r})
	}
	return append(prog, p.search(ranges)...), nil
}

// search is a binary search over ranges (sorted, contiguous) for the call
// number in A. Every path of the block it returns ends in a return, so
// blocks are simply concatenated: no jump leaves its block.
func (p seccompPolicy) search(ranges []nrRange) []bpf.Instruction {
	if len(ranges) == 1 {
		return p.answer(ranges[0].rule)
	}
	mid := len(ranges) / 2
	below, above := p.search(ranges[:mid]), p.search(ranges[mid:])
	pivot := ranges[mid].lo
	var block []bpf.Instruction
	if len(below) <= 255 {
		// nr >= pivot: skip the block below.
		block = append(block, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: pivot, SkipTrue: uint8(len(below))})
	} else {
		// Too far for a conditional jump: jump over an unconditional one.
		block = append(block,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: pivot, SkipFalse: 1},
			bpf.Jump{Skip: uint32(len(below))})
	}
	block = append(block, below...)
	return append(block, above...)
}

// answer is the block that returns rule's answer.
func (p seccompPolicy) answer(r seccompRule) []bpf.Instruction {
	c := r.check
	if c == nil {
		return []bpf.Instruction{bpf.RetConstant{Val: r.ret}}
	}
	// load arg; one test per value (and for bits) jumping to "ret match";
	// ret otherwise; ret match.
	tests := len(c.values)
	if c.bits != 0 {
		tests++
	}
	block := []bpf.Instruction{bpf.LoadAbsolute{Off: seccompDataArgs + 8*uint32(c.arg), Size: 4}}
	for i, v := range c.values {
		block = append(block, bpf.JumpIf{Cond: bpf.JumpEqual, Val: v, SkipTrue: uint8(tests - i)})
	}
	if c.bits != 0 {
		block = append(block, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: c.bits, SkipTrue: 1})
	}
	return append(block, bpf.RetConstant{Val: c.otherwise}, bpf.RetConstant{Val: c.match})
}

// seccompProgram compiles the policy for this machine into the wire form
// the shim installs (shimSpec.Seccomp): struct sock_filter records in
// native byte order. The policy comes from the running kernel's release
// (the ptrace family is allowed from Linux 4.8 on).
func seccompProgram() ([]byte, error) {
	// EINVAL: a kernel built without seccomp.
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("seccomp filter: this kernel has no seccomp (prctl PR_GET_SECCOMP: %w): serve --seccomp=off runs jobs without the filter", err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("seccomp filter: uname: %w", err)
	}
	p, err := defaultSeccompPolicy(unix.ByteSliceToString(uts.Release[:]))
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	insns, err := p.compile()
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	return encodeSeccomp(insns)
}

// sockFilterSize is sizeof(struct sock_filter).
const sockFilterSize = 8

// maxSeccompInsns is the kernel's limit on one filter (BPF_MAXINSNS).
const maxSeccompInsns = 4096

// encodeSeccomp assembles insns into struct sock_filter records.
func encodeSeccomp(insns []bpf.Instruction) ([]byte, error) {
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return nil, fmt.Errorf("seccomp filter: %w", err)
	}
	if len(raw) > maxSeccompInsns {
		return nil, fmt.Errorf("seccomp filter: %d instructions, the kernel takes at most %d", len(raw), maxSeccompInsns)
	}
	out := make([]byte, 0, len(raw)*sockFilterSize)
	for _, r := range raw {
		out = binary.NativeEndian.AppendUint16(out, r.Op)
		out = append(out, r.Jt, r.Jf)
		out = binary.NativeEndian.AppendUint32(out, r.K)
	}
	return out, nil
}

// decodeSeccomp is encodeSeccomp's inverse, in the shim.
func decodeSeccomp(prog []byte) ([]unix.SockFilter, error) {
	if len(prog) == 0 || len(prog)%sockFilterSize != 0 || len(prog)/sockFilterSize > maxSeccompInsns {
		return nil, fmt.Errorf("seccomp program of %d bytes: not 1 to %d records of %d bytes", len(prog), maxSeccompInsns, sockFilterSize)
	}
	filter := make([]unix.SockFilter, 0, len(prog)/sockFilterSize)
	for b := prog; len(b) > 0; b = b[sockFilterSize:] {
		filter = append(filter, unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:]),
		})
	}
	return filter, nil
}

// installSeccomp installs prog (shimSpec.Seccomp; empty = none) on the
// calling thread, or with allThreads on every thread of the shim. It needs
// no_new_privs (or CAP_SYS_ADMIN). Called by the shim last before execve:
// see the file comment.
func installSeccomp(prog []byte, allThreads bool) error {
	if len(prog) == 0 {
		return nil
	}
	filter, err := decodeSeccomp(prog)
	if err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// Without init only this thread runs the command, and the others end
	// at execve: no SECCOMP_FILTER_FLAG_TSYNC. An init (Spec.Init) outlives
	// the exec: TSYNC filters every one of its threads too (and gives them
	// no_new_privs); it returns the id of a thread it could not sync.
	var flags uintptr
	if allThreads {
		flags = unix.SECCOMP_FILTER_FLAG_TSYNC
	}
	tid, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if errno != 0 {
		return errno
	}
	if tid != 0 {
		return fmt.Errorf("thread %d could not take the filter", tid)
	}
	return nil
}
