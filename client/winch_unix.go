//go:build unix

package client

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyWinch relays the terminal's window-size changes (SIGWINCH) to c.
func notifyWinch(c chan<- os.Signal) { signal.Notify(c, syscall.SIGWINCH) }
