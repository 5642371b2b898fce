//go:build !unix

package server

import "syscall"

// allowedSignals is empty off Unix, where no job runs (the server needs
// Linux): the package builds so that the CLI does.
var allowedSignals = map[string]syscall.Signal{}
