//go:build unix

package server

import "syscall"

// allowedSignals are the signals SignalJob sends, by name without "SIG":
// the ones meant for a process's owner to send (job control, reload,
// terminate), not the ones that report faults (SEGV, BUS, ...), which a job
// would misread.
var allowedSignals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"KILL": syscall.SIGKILL, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"ALRM": syscall.SIGALRM, "TERM": syscall.SIGTERM, "CONT": syscall.SIGCONT,
	"STOP": syscall.SIGSTOP, "TSTP": syscall.SIGTSTP, "TTIN": syscall.SIGTTIN,
	"TTOU": syscall.SIGTTOU, "WINCH": syscall.SIGWINCH,
}
