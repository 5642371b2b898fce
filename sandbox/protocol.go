package sandbox

// The contract between the parent (Sandbox.Start) and the shim (RunChild).
//
// The parent runs the shim as
//
//	argv: [Config.Exe, "__child"]   (nothing else: no flags, no spec)
//	env:  GOMAXPROCS=1              (the job's environment travels in the Spec)
//	fd 0: StartConfig.Stdin, or /dev/null
//	fd 1, 2: StartConfig.Stdout, StartConfig.Stderr, as given
//	fd 3: specFD, read end of the spec pipe
//	fd 4: errorFD, write end of the error pipe
//	fd 5: ttyFD, only with Spec.TTY: one end of a unix socketpair; the
//	      shim sends the master of the job's terminal on it (SCM_RIGHTS,
//	      pty_linux.go) before execMarker, and exec closes it
//
// in new PID, mount, network, UTS and IPC namespaces, with the parent-death
// signal SIGKILL. (The shim adds a cgroup namespace itself once it is in the
// job's cgroup; one made at clone time would be rooted at the server's.)
// Every other fd of the parent is close-on-exec and never reaches the shim.
// How the shim enters its cgroup is the cgroup's answer (Cgroup.Join).
//
// The sequence, and who closes what:
//
//  1. The parent starts the shim. On cgroup v2 the shim is born inside the
//     job's cgroup (clone3 CLONE_INTO_CGROUP), which the parent created
//     first. On v1 the parent starts the shim first and creates the cgroup
//     while the shim's Go runtime boots. The parent closes its copies of the
//     shim's ends (spec read end, error write end) right after the start.
//  2. The shim reads fd 3 to EOF before it does anything else: the blocked
//     read is its "continue" signal. The parent writes once the cgroup
//     exists; on v1 with a Cgroup of this package the spec carries the
//     cgroup's tasks files (shimSpec.CgroupTasks), on v1 with another
//     Cgroups implementation the parent first moves the shim with
//     Cgroup.Add.
//  3. The parent writes the shimSpec as one JSON document on fd 3 and
//     closes its write end; the shim closes fd 3 once it has read EOF. With
//     CgroupTasks, the shim then writes "0" to each (the thread that will
//     exec the command moves itself into the job's cgroup in every
//     hierarchy) before anything else. The kernel skips its global
//     threadgroup lock for a thread moving itself; the parent writing a pid
//     to cgroup.procs takes it, and after a quiet moment that waits for an
//     RCU grace period (~10 ms). The shim's other Go runtime threads stay
//     where they were and end at execve. Either way not one instruction of
//     the user's command runs outside the cgroup.
//  4. The shim sets the sandbox up and execs the user's command. Before exec
//     it marks every fd >= 3 close-on-exec, fd 4 included, and writes the
//     one byte execMarker on fd 4. A successful exec closes the error pipe:
//     the parent reads execMarker then EOF and knows the command is running
//     (the shim's pid is now the command's pid).
//     With Spec.Init the shim does not exec: at the same point it starts
//     the command with fork+exec (syscall.ForkExec reports an exec error
//     synchronously), closes errorFD itself once the command runs, and
//     stays as the job's PID 1 (init_linux.go). On v1 it joins the cgroup
//     with its whole process (cgroup.procs), as it outlives the exec.
//  5. On any failure the shim writes one JSON childError on fd 4 (after
//     execMarker if execve itself failed) and exits with childFailedExit.
//     The parent reads it, reaps the shim, removes the cgroup and returns
//     the error (ErrExec or ErrShim) from Start. EOF without execMarker means
//     the shim died before it could try (a Go runtime crash, an OOM kill in
//     a tiny cgroup, a wrong Config.Exe): ErrShim too. The shim's own
//     failures never become the job's exit status.
//
// A warm shim (pool_linux.go) is the same shim started before its job:
//
//	argv: [Config.Exe, "__child", "warm"]
//	fd 0, 1, 2: /dev/null until the job's come
//	fd 3: specFD, read end of a pipe: one warmSpec, then EOF
//	fd 4: errorFD, as above
//	fd 5: warmFD, one end of a unix stream socketpair (a warm shim has no
//	      terminal, so fd 5 is never also ttyFD)
//
// Its cgroup is made with the pool's limits (but no CPU quota). On v2 it is
// cloned in; on v1 the warmSpec lists the tasks files its thread writes
// itself into first thing after reading it, as in step 3 (for an Init job
// the parent moves the whole process with Cgroup.Add before it sends the
// job: the view hides the host's cgroup files from the shim). It reads the
// warmSpec to EOF, joins, enters a cgroup namespace, builds the view, brings
// lo up, limits its bounding set, sets the default hostname, becomes the
// dynamic user the view was built for (HomeUID, HomeGID; a fresh session
// keyring, the user keyring cleared; non-dumpable from the switch until the
// exec), writes warmReady on warmFD and blocks reading warmFD. The job then
// comes as one byte (which of warmStdin, warmStdout and warmStderr follow) with
// those files (SCM_RIGHTS; they become fds 0-2), then the shimSpec to EOF
// (the parent shuts its end down for writing). The parent has rewritten the
// cgroup's limits that differ from the pool's before it sends it: nothing of
// the job runs under the pool's limits. The shim checks that the job is its
// user's, then enters the job's directory and goes on as in step 4 (fds,
// no_new_privs, the seccomp filter from the warmSpec, the exec marker).
// EOF on warmFD before a job, or any failure, is reported on errorFD as
// above; a warm shim the pool recycles is killed. Its parent-death signal
// kills it when the server dies while it waits.
//
// The parent reads at most maxChildErrorSize bytes from fd 4, and waits for
// the spec write and for EOF on fd 4 at most Config.StartTimeout: a shim
// still silent then is killed, reaped and reported as ErrShim.
//
// The shim's environment holds only GOMAXPROCS=1: on v2 the shim's Go
// runtime starts in the job's cgroup, and one P keeps its threads (counted by
// pids.max) and memory to a minimum (on v1 only the thread that execs joins).
// The job's environment is the Spec's.
const (
	// specFD is the read end of the spec pipe in the shim. Parent writes the
	// JSON Spec and closes; shim reads to EOF and closes.
	specFD = 3
	// errorFD is the write end of the error pipe in the shim. The shim
	// writes execMarker right before execve and at most one JSON childError
	// on failure; exec success closes it (close-on-exec). The parent reads
	// to EOF.
	errorFD = 4
	// ttyFD is the shim's end of the socketpair the terminal's master
	// travels on (Spec.TTY only). Shim sends one message carrying the
	// master and closes its copy; the parent receives it after the exec
	// (the message waits in the socket) and closes its end.
	ttyFD = 5
	// warmFD is a warm shim's end of its socketpair (warm shims only: they
	// have no terminal). Shim writes warmReady once its view is built,
	// then reads the job (stdio files and shimSpec) to EOF and closes it.
	warmFD = 5

	// warmArg is argv[2] of a warm shim.
	warmArg = "warm"
	// warmReady is the byte a warm shim writes on warmFD when it is ready.
	warmReady = 'R'
	// warmStdin, warmStdout and warmStderr are the bits of the first byte
	// of a job on warmFD: which of fds 0-2 come with it.
	warmStdin  = 1 << 0
	warmStdout = 1 << 1
	warmStderr = 1 << 2

	// childArg is argv[1] of the shim: the role dispatched before anything
	// else by main (and by TestMain in tests).
	childArg = "__child"

	// childFailedExit is the shim's exit status after it reported a failure
	// on errorFD. It is never reported as the job's status.
	childFailedExit = 125

	// execMarker is written by the shim on errorFD right before execve.
	execMarker = 'X'

	// maxChildErrorSize bounds what the parent reads from the error pipe.
	maxChildErrorSize = 64 << 10

	// defaultHostname is the UTS name of a job when Spec.Hostname is "".
	defaultHostname = "sandbox"
	// defaultPath is PATH when the job's environment has none.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Kinds of childError: which sentinel the parent wraps it in.
const (
	// kindExec: the user's command could not be started (ErrExec).
	kindExec = "exec"
	// kindShim: the sandbox could not be set up (ErrShim).
	kindShim = "shim"
)

// childError is what the shim writes on errorFD when it fails.
type childError struct {
	// Kind is kindExec or kindShim.
	Kind string `json:"kind"`
	// Stage names the step that failed ("read spec", "mount /proc", "chdir",
	// "exec", ...).
	Stage string `json:"stage"`
	// Errno is the raw errno when the failure was a system call, else 0.
	Errno int `json:"errno,omitempty"`
	// Message is a human-readable description naming the command or
	// directory involved.
	Message string `json:"message"`
}

// shimSpec is the document the parent writes on specFD: the job's Spec and,
// on cgroup v1, the tasks files the shim's thread writes itself into.
type shimSpec struct {
	Spec
	// CgroupTasks are the host paths of the job cgroup's tasks file in
	// every v1 hierarchy; empty on v2 or when the parent moved the shim.
	CgroupTasks []string `json:"cgroup_tasks,omitempty"`
	// Seccomp is the seccomp filter the shim installs last before execve
	// (struct sock_filter records in native byte order, compiled once by
	// New); empty = no filter (Config.DisableSeccomp, serve --seccomp=off).
	Seccomp []byte `json:"seccomp,omitempty"`
	// View is how the shim builds the job's file system view (view.go),
	// after it entered the cgroup (so that the job's tmpfs pages are
	// charged to the job) and before it drops privileges.
	View view `json:"view"`
}

// warmSpec is what a warm shim reads on specFD before its job: the view,
// built before the job is known (the uid of its home is the pool's pick).
type warmSpec struct {
	View view `json:"view"`
	// CgroupTasks are as shimSpec's: the warm shim's thread joins first
	// thing (v1; empty on v2, or when the parent moved the shim).
	CgroupTasks []string `json:"cgroup_tasks,omitempty"`
	// Seccomp is as shimSpec's, which for a warm shim is empty: decoded
	// here, before the job comes.
	Seccomp []byte `json:"seccomp,omitempty"`
}
