package jobrunner

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/drrev/telehandler/sandbox"
)

// State is where a job is in its life. The zero value is not a state.
type State int

// The states of a job. A job is RUNNING from a successful Start until its
// command exited and all its output was collected; then it is COMPLETED
// (exit status 0, not stopped and no OOM kill) or FAILED (anything else:
// non-zero exit, killed by a signal, stopped by request, or an OOM kill of
// any of its processes, even when the command itself exits 0). A command
// that cannot start is an error from Start, not a job.
const (
	StateRunning State = iota + 1
	StateCompleted
	StateFailed
)

func (s State) String() string {
	switch s {
	case StateRunning:
		return "RUNNING"
	case StateCompleted:
		return "COMPLETED"
	case StateFailed:
		return "FAILED"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// EndReason says why a job ended when its own exit status is not the whole
// story. The zero value, ReasonNone, is a job that runs or ended on its own.
type EndReason int

// The reasons a job ended.
const (
	ReasonNone EndReason = iota
	// ReasonStopped: Stop ended the job (Status.Stopped is set too).
	ReasonStopped
	// ReasonServerLost: the server stopped while the job ran (a crash, kill
	// -9, a reboot) and the job died with it; a restarted Runner found its
	// record still RUNNING. Its output up to then is kept.
	ReasonServerLost
	// ReasonServerShutdown: Shutdown stopped the job (Status.Stopped is set
	// too): the server was shutting down.
	ReasonServerShutdown
)

func (r EndReason) String() string {
	switch r {
	case ReasonNone:
		return ""
	case ReasonStopped:
		return "stopped"
	case ReasonServerLost:
		return "server_lost"
	case ReasonServerShutdown:
		return "server_shutdown"
	default:
		return fmt.Sprintf("EndReason(%d)", int(r))
	}
}

// Status is a snapshot of a job. It shares nothing with the job: callers
// may keep and change it.
type Status struct {
	// ID is the job's random, unguessable id (26 lowercase base32 chars).
	ID string
	// Owner is who started the job, as the caller named them.
	Owner string
	// Name is the job's optional name, unique among its owner's jobs.
	Name string
	// Init is true when the command runs under the sandbox's minimal init.
	Init bool
	// Command, Args and Dir are as requested (the environment is not
	// reported: it may hold secrets), except that a command line longer
	// than MaxKeptCommandLine is cut (CommandTruncated).
	Command string
	Args    []string
	Dir     string
	// CommandTruncated says Command and Args were cut to keep them; the
	// job ran with its full command line.
	CommandTruncated bool
	// Limits are the job's cgroup limits (zero field = no limit).
	Limits sandbox.Limits
	// Network is true for a job on the job network.
	Network bool
	State   State
	// ExitCode is the command's exit status; -1 while running or when a
	// signal killed it.
	ExitCode int
	// Signal is the signal that killed the command, 0 if it exited or runs.
	Signal int
	// Stopped is true once Stop was called on the running job.
	Stopped bool
	// Reason says why the job ended beyond its exit status.
	Reason EndReason
	// OOMKilled is true when the kernel's OOM killer killed a process of
	// the job.
	OOMKilled bool
	// Started is when Start launched the command; Ended when the command
	// exited (zero while running).
	Started, Ended time.Time
	// Stats are read live from the job's cgroup while it runs (but zero in
	// the status Start returns: the job only just started) and are the
	// final accounting once it ended.
	Stats sandbox.Stats
	// OutputBytes is the size of the output log (stdout and stderr
	// together); OutputTruncated says output was dropped, OutputTruncation
	// why (the cap, or a failed write), OutputDropped how many bytes.
	OutputBytes      int64
	OutputTruncated  bool
	OutputTruncation Truncation
	OutputDropped    int64
	// OutputError is the last error writing the log, without the file's
	// path ("no space left on device"); "" if no write failed.
	OutputError string
	// Stdin and TTY are as requested: the job reads input written with
	// AttachInput, on a pipe or on its terminal.
	Stdin, TTY bool
}

// Running reports whether the job is still running.
func (s Status) Running() bool { return s.State == StateRunning }

// job is one started command. Fields above mu are set by Start and never
// change.
type job struct {
	id      string
	owner   string
	name    string
	init    bool
	command string
	args    []string
	dir     string
	cmdCut  bool // command and args were cut (Status.CommandTruncated)
	limits  sandbox.Limits
	network bool
	started time.Time
	// proc is nil for a job loaded from the record of an earlier run.
	proc *sandbox.Process
	// lost is set on a job loaded from an earlier run that was still
	// running when that run ended (ReasonServerLost).
	lost bool
	log  *OutputLog
	// input is the writing end of the job's stdin or terminal; nil when
	// it was started without.
	input *jobInput
	// done is closed by the job's supervisor once the terminal status is
	// recorded and the output log finished.
	done chan struct{}
	// writeFailed and writeResumed make the runner log the first failed
	// write of the job's output, and the first success after one, once.
	writeFailed, writeResumed sync.Once

	// mu guards the fields below.
	mu sync.Mutex
	// exited is set as soon as the command exited (before its output is
	// fully collected); Stop no longer marks the job stopped after that.
	exited bool
	// stopped is set by Stop (or Shutdown) on a job whose command had not
	// exited yet; stopReason is ReasonStopped or ReasonServerShutdown.
	stopped    bool
	stopReason EndReason
	// ended is set, with exit and endedAt, just before done is closed.
	ended   bool
	exit    sandbox.ExitState
	endedAt time.Time
}

// status returns a snapshot of the job. While the job runs its stats are
// read from the cgroup (outside j.mu).
func (j *job) status() Status { return j.snapshot(true) }

// snapshot is status; with liveStats false a running job's stats are left
// zero instead of read from its cgroup (a dozen files on cgroup v1): for
// what does not show them (its record) or a job that only just started.
func (j *job) snapshot(liveStats bool) Status {
	st := Status{
		ID:       j.id,
		Owner:    j.owner,
		Name:     j.name,
		Init:     j.init,
		Command:  j.command,
		Args:     slices.Clone(j.args),
		Dir:      j.dir,
		Limits:   j.limits,
		Network:  j.network,
		Started:  j.started,
		ExitCode: -1,

		CommandTruncated: j.cmdCut,
	}
	j.mu.Lock()
	st.Stopped = j.stopped
	switch {
	case j.lost:
		st.Reason = ReasonServerLost
	case j.stopped:
		st.Reason = cmp.Or(j.stopReason, ReasonStopped)
	}
	ended, exit, endedAt := j.ended, j.exit, j.endedAt
	j.mu.Unlock()

	if !ended {
		st.State = StateRunning
		if liveStats {
			if stats, err := j.proc.Stats(); err == nil {
				st.Stats = stats
			}
		}
	} else {
		st.ExitCode = exit.ExitCode
		st.Signal = exit.Signal
		st.OOMKilled = exit.OOMKilled
		st.Stats = exit.Stats
		st.Ended = endedAt
		st.State = endState(exit, st.Stopped, j.lost)
	}
	if j.input != nil {
		st.Stdin, st.TTY = true, j.input.tty
	}
	st.OutputBytes = j.log.Size()
	st.OutputTruncation = j.log.Truncation()
	st.OutputTruncated = st.OutputTruncation != NotTruncated
	st.OutputDropped = j.log.Dropped()
	st.OutputError = j.log.ErrCause()
	return st
}

// MaxKeptCommandLine is the most bytes of a job's command line (command,
// and each argument with a separator) kept for its status, list and
// record; the job itself runs with all of it.
const MaxKeptCommandLine = 4 << 10

// cutMarker ends the last word of a command line that was cut.
const cutMarker = "..."

// cutCommandLine returns cmd and args within MaxKeptCommandLine bytes: the
// words that fit, the first one that does not cut short and ending in
// cutMarker, and true when anything was cut. Words are cut at a UTF-8
// character boundary.
func cutCommandLine(cmd string, args []string) (string, []string, bool) {
	total := len(cmd)
	for _, a := range args {
		total += 1 + len(a)
	}
	if total <= MaxKeptCommandLine {
		return cmd, slices.Clone(args), false
	}
	budget := MaxKeptCommandLine - len(cutMarker)
	if len(cmd) >= budget {
		return cutUTF8(cmd, budget) + cutMarker, nil, true
	}
	budget -= len(cmd)
	var kept []string
	for _, a := range args {
		if 1+len(a) <= budget {
			kept = append(kept, a)
			budget -= 1 + len(a)
			continue
		}
		kept = append(kept, cutUTF8(a, max(budget-1, 0))+cutMarker)
		break
	}
	return cmd, kept, true
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// split a UTF-8 character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// endState is the state of a job that ended: COMPLETED for exit 0 without
// an OOM kill, a stop or the server's loss; FAILED otherwise.
func endState(exit sandbox.ExitState, stopped, lost bool) State {
	if exit.ExitCode == 0 && exit.Signal == 0 && !exit.OOMKilled && !stopped && !lost {
		return StateCompleted
	}
	return StateFailed
}

// StartRequest is what to run. Zero fields: no arguments, the minimal
// environment (PATH, and HOME the job's home), the job's home as working
// directory (see sandbox.Spec), no limits of any kind (start from
// sandbox.DefaultLimits for the defaults), run as root, the host's files.
type StartRequest struct {
	// Owner is recorded in the job's status; jobrunner gives it no meaning
	// beyond scoping names.
	Owner string
	// Name is optional ("" = none); see ValidateName. It is unique among
	// the jobs of one Owner that the Runner holds.
	Name string
	// Init runs the command under the sandbox's minimal init (sandbox.Spec.Init).
	Init bool
	// Command is the program; without a slash it is looked up in PATH.
	Command string
	// Args are the arguments after the command.
	Args []string
	// Env is the command's whole environment, "KEY=VALUE" entries.
	Env []string
	// Dir is the working directory.
	Dir string
	// Limits are the job's cgroup limits; a zero field means no limit.
	Limits sandbox.Limits
	// UID and GID the command runs as; nil stays root (unless DynamicUser).
	UID, GID *uint32
	// Quota bounds the jobs running at once (zero = no bound).
	Quota Quota
	// MergeOutput gives the command one pipe for stdout and stderr (as
	// 2>&1 does): all its output is Stdout, in the exact order written.
	// Otherwise the two streams are two pipes, read by two goroutines, and
	// their interleaving in the log is the order the reads happened to
	// commit, not always the order the job wrote.
	MergeOutput bool
	// Stdin gives the job a stdin pipe fed through AttachInput (else its
	// stdin is /dev/null). TTY gives it a terminal instead (stdin, stdout
	// and stderr; its output is logged as Stdout), sized TTYRows x TTYCols;
	// TTY implies Stdin.
	Stdin   bool
	TTY     bool
	TTYRows uint16
	TTYCols uint16
	// DynamicUser runs the command as a uid of its own
	// (sandbox.Spec.DynamicUser); UID and GID must be nil.
	DynamicUser bool
	// Image is the job's root file system (sandbox.Spec.Image).
	Image string
	// Network connects the job to the runner's job network (egress only,
	// Limits.NetworkBPS each way); without it the job has only lo.
	Network bool
}

// validate checks what the sandbox would choke on or misread. Every error
// wraps ErrInvalidRequest.
func (r StartRequest) validate() error {
	if r.Command == "" {
		return fmt.Errorf("%w: empty command", ErrInvalidRequest)
	}
	if strings.IndexByte(r.Command, 0) >= 0 {
		return fmt.Errorf("%w: command contains a NUL byte", ErrInvalidRequest)
	}
	if strings.IndexByte(r.Dir, 0) >= 0 {
		return fmt.Errorf("%w: working directory contains a NUL byte", ErrInvalidRequest)
	}
	for i, a := range r.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("%w: argument %d contains a NUL byte", ErrInvalidRequest, i+1)
		}
	}
	for i, e := range r.Env {
		if strings.IndexByte(e, 0) >= 0 {
			return fmt.Errorf("%w: environment entry %d contains a NUL byte", ErrInvalidRequest, i+1)
		}
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("%w: environment entry %d is not KEY=VALUE", ErrInvalidRequest, i+1)
		}
	}
	if err := r.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if r.DynamicUser && (r.UID != nil || r.GID != nil) {
		return fmt.Errorf("%w: a dynamic user has no fixed uid or gid", ErrInvalidRequest)
	}
	if r.Name != "" {
		if err := ValidateName(r.Name); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
		}
	}
	return nil
}

// MaxNameLen is the longest job name.
const MaxNameLen = 63

// ValidateName checks a job name: 1 to MaxNameLen characters of
// [A-Za-z0-9_.-], starting with a letter or a digit, and not shaped like a
// job id (26 characters of [a-z2-7]), which it would be taken for. The
// first character rules out "-" (a flag to a CLI), "." and ".." and "_".
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("job name %q must be 1 to %d characters", clipName(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("job name %q must start with a letter or a digit", clipName(name))
		}
		if !alnum && c != '_' && c != '.' && c != '-' {
			return fmt.Errorf("job name %q may only hold letters, digits, '_', '.' and '-'", clipName(name))
		}
	}
	if looksLikeID(name) {
		return fmt.Errorf("job name %q looks like a job id; choose another", name)
	}
	return nil
}

// clipName shortens a name for an error message.
func clipName(s string) string {
	if len(s) <= MaxNameLen+1 {
		return s
	}
	return s[:MaxNameLen] + "..."
}
