package server

import (
	"strconv"
	"strings"
	"syscall"
)

// allowedSignalList is allowedSignals' names in signal number order, for
// messages.
const allowedSignalList = "HUP INT QUIT KILL USR1 USR2 ALRM TERM CONT STOP TSTP TTIN TTOU WINCH"

// parseSignal reads a SignalJob signal: a name with or without "SIG" in
// any case ("TERM", "sigterm") or a number ("15"), from allowedSignals.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		for _, sig := range allowedSignals {
			if int(sig) == n {
				return sig, nil
			}
		}
		return 0, errorf(errInvalidArgument, "signal %d is not one a job may be sent; use one of %s", n, allowedSignalList)
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig, ok := allowedSignals[name]; ok {
		return sig, nil
	}
	if s == "" {
		return 0, errorf(errInvalidArgument, "no signal given; use one of %s", allowedSignalList)
	}
	return 0, errorf(errInvalidArgument, "signal %q is not one a job may be sent; use one of %s (a name or its number)", clip(s), allowedSignalList)
}

// signalName is "SIGTERM" for SIGTERM.
func signalName(sig syscall.Signal) string {
	for name, s := range allowedSignals {
		if s == sig {
			return "SIG" + name
		}
	}
	return "signal " + strconv.Itoa(int(sig))
}
