package sandbox

import (
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"
)

// The minimal init (Spec.Init). Without it the user's command is PID 1 of
// the job's PID namespace, and the kernel gives PID 1 only the signals it
// installed a handler for: a plain `sleep` ignores SIGTERM (so stop --grace
// waits the whole grace) and Ctrl-C, and nothing reaps the zombies of
// orphaned grandchildren. With Init the shim does not exec the command: it
// starts it as its child at the very last step of its setup, then stays as
// PID 1, forwards signals to it, reaps every zombie, and exits with the
// command's status. Everything the setup did (namespaces, cgroup, mounts,
// credentials, no_new_privs, whatever else runs before the exec) is done
// before the fork, so the command's environment is the one it would have
// without Init; only its pid (2, not 1) and parent differ.
//
// A Go process cannot fork without exec, so the init uses syscall.ForkExec,
// which reports an exec failure synchronously through its own close-on-exec
// pipe: the error goes back to Start on errorFD as for a plain exec (after
// the execMarker), and on success the init closes errorFD itself, which the
// parent reads as "the command runs".

// forwardedSignals are the signals the init passes on to the command: those
// a user may send with SignalJob (SIGKILL and SIGSTOP cannot be caught; a
// SIGKILL of the init ends the whole namespace), and the other
// asynchronous signals that mean something to a command. Not SIGCHLD (the
// init's own) nor SIGURG (the Go runtime's preemption signal).
var forwardedSignals = []os.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2,
	unix.SIGALRM, unix.SIGTERM, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN,
	unix.SIGTTOU, unix.SIGWINCH, unix.SIGPIPE, unix.SIGXCPU, unix.SIGXFSZ,
	unix.SIGVTALRM, unix.SIGPROF, unix.SIGPWR,
}

// initCgroupFiles maps the v1 tasks files the shim's exec thread joins to
// the cgroup.procs files of the same cgroups: an init outlives the exec,
// so its whole process (every thread of the Go runtime) must be in the
// job's cgroup, not only the thread that starts the command. Writing "0"
// to cgroup.procs moves the writer's whole thread group. It costs the
// kernel's thread group lock (~10 ms, see protocol.go), for init jobs only.
func initCgroupFiles(tasks []string) []string {
	procs := make([]string, len(tasks))
	for i, p := range tasks {
		procs[i] = filepath.Join(filepath.Dir(p), "cgroup.procs")
	}
	return procs
}

// runInit starts the command as the init's child and supervises it until
// it exits, then exits the shim with its status. It returns only when the
// command could not be started (ForkExec's errno, which classifyExec turns
// into the step error for Start). It runs on the shim's locked thread,
// after every other step: the child is forked from this thread and
// inherits its namespaces, cgroup, credentials and no_new_privs.
//
// With a terminal (tty: the shim's fds 0-2 are the job's terminal, its
// controlling terminal) the command gets a process group of its own, the
// terminal's foreground one: a ^C typed into the terminal then reaches the
// command once, from the terminal, and not a second time through the init.
func runInit(path string, argv, env []string, tty bool) error {
	// Caught before the command exists, so none sent in between is lost:
	// they wait in the channel until the command can get them.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, append([]os.Signal{unix.SIGCHLD}, forwardedSignals...)...)
	// The command usually runs as the same uid as the init: not dumpable,
	// the init cannot be ptraced nor its memory read by the command (the
	// command's own execve makes it dumpable again).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		signal.Stop(sigs)
		return shimErr("init: set non-dumpable", err)
	}
	// Pdeathsig as the command had it without init, where it inherits the
	// shim's (the init dying ends the namespace anyway).
	sys := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if tty {
		sys.Setpgid, sys.Foreground, sys.Ctty = true, true, 0
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   sys,
	})
	if err != nil {
		signal.Stop(sigs)
		return err
	}
	// The command runs: EOF on the error pipe tells Start so (the command
	// never had errorFD, it is close-on-exec).
	unix.Close(errorFD)
	// The init only waits from here on: give the memory of the setup back.
	debug.FreeOSMemory()
	os.Exit(superviseCommand(pid, sigs))
	return nil
}

// superviseCommand forwards every signal from sigs to the command (pid)
// and reaps zombies (the command's orphaned descendants are reparented to
// the init) until the command itself exited; it returns the exit status
// for the init: the command's, or 128+N when signal N killed it, as a
// shell (and docker's init) reports it. A signal cannot end PID 1 of a
// namespace from inside, so the init cannot die of the command's signal.
func superviseCommand(pid int, sigs <-chan os.Signal) int {
	for {
		// Reap everything that has ended (SIGCHLD notifications coalesce).
		for {
			var ws syscall.WaitStatus
			wpid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || wpid <= 0 {
				break
			}
			if wpid == pid {
				switch {
				case ws.Exited():
					return ws.ExitStatus()
				case ws.Signaled():
					return 128 + int(ws.Signal())
				}
			}
		}
		sig := <-sigs
		if sig == unix.SIGCHLD {
			continue
		}
		// The command is not reaped yet (a zombie keeps its pid), so the
		// pid cannot name another process.
		_ = syscall.Kill(pid, sig.(syscall.Signal))
	}
}
