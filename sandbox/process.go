package sandbox

import (
	"os"
	"time"
)

// Spec is what the shim needs to run the user's command. It travels to the
// shim as JSON on a pipe, never in argv or the environment.
type Spec struct {
	// Path is the command; without a slash it is looked up in PATH (from
	// Env, or the default PATH when Env has none).
	Path string `json:"path"`
	// Args are the arguments after the command (not including argv[0]).
	Args []string `json:"args,omitempty"`
	// Dir is the working directory ("" = the job's home, see view.go).
	Dir string `json:"dir,omitempty"`
	// Env is the whole environment of the command ("KEY=VALUE"); nothing of
	// the server's environment leaks in. nil = a minimal PATH; an empty Env
	// is an empty environment (so the JSON keeps "env":[] apart from null:
	// no omitempty). Either way HOME is the job's home unless Env sets it.
	Env []string `json:"env"`
	// UID and GID the command runs as; nil = stay root (with Docker's
	// default capabilities only, see jobCapabilities).
	UID *uint32 `json:"uid,omitempty"`
	GID *uint32 `json:"gid,omitempty"`
	// DynamicUser runs the command as a uid and gid of its own, allocated
	// from Config.UIDs while the job lives; UID and GID must be nil.
	DynamicUser bool `json:"dynamic_user,omitempty"`
	// Image names the root file system of the job, one of Config.Images;
	// "" = the host's, read-only.
	Image string `json:"image,omitempty"`
	// Hostname inside the UTS namespace ("" = "sandbox").
	Hostname string `json:"hostname,omitempty"`
	// TTY gives the command a pseudo-terminal of its own (pty_linux.go):
	// from a new devpts instance in its mount namespace, its controlling
	// terminal and its fds 0-2, TERM=xterm unless Env sets TERM. The
	// parent gets the master (Process.TTY). TTYRows and TTYCols are its
	// initial size (0 = the kernel's 0x0).
	TTY     bool   `json:"tty,omitempty"`
	TTYRows uint16 `json:"tty_rows,omitempty"`
	TTYCols uint16 `json:"tty_cols,omitempty"`
	// ResolvConf is the host path of a file the shim binds read-only over
	// /etc/resolv.conf in the job's mount namespace ("" = none). Start
	// sets it from the job's NetworkAttachment.
	ResolvConf string `json:"resolv_conf,omitempty"`
	// Init keeps the shim as a minimal init, PID 1 of the job: it starts
	// the command as its child, forwards the signals it gets to it, reaps
	// every zombie and exits with the command's status (128+N when signal
	// N killed it). Without it, the command itself is PID 1. See
	// init_linux.go.
	Init bool `json:"init,omitempty"`
}

// StartConfig is everything Start needs besides the command.
type StartConfig struct {
	// Name of the job's cgroup under the parent (for example the job id).
	Name string
	// Limits for the job's cgroup.
	Limits Limits
	// Stdout and Stderr receive the command's output. They are handed to
	// the shim as they are (typically the write ends of pipes); Start does
	// not close them. They may be the same file: the command's fd 1 and 2
	// are then one pipe, as after 2>&1.
	Stdout, Stderr *os.File
	// Stdin is the command's stdin (typically the read end of a pipe);
	// nil = /dev/null. Start does not close it. With Spec.TTY the terminal
	// replaces all three.
	Stdin *os.File
	// Network, when set, connects the job's network namespace (which has
	// only lo otherwise): Start calls it with the shim's pid once the
	// shim's namespaces exist and before it runs anything of the job, and
	// calls the attachment's Release once the job has ended (or its start
	// failed).
	Network func(pid int) (NetworkAttachment, error)
}

// NetworkAttachment is what StartConfig.Network did for a job.
type NetworkAttachment struct {
	// ResolvConf becomes Spec.ResolvConf.
	ResolvConf string
	// Release undoes the attachment; nil = nothing to undo.
	Release func() error
}

// ExitState is how a sandboxed process ended.
type ExitState struct {
	// ExitCode is the exit status when the process exited normally, -1 when
	// it was killed by a signal.
	ExitCode int
	// Signal is the signal that killed it, 0 if it exited.
	Signal int
	// OOMKilled is true when the kernel's OOM killer killed a process of
	// the job (its cgroup counted an oom_kill).
	OOMKilled bool
	// Stats are the final accounting, read just before the cgroup was
	// removed.
	Stats  Stats
	Exited time.Time
}
