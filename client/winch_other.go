//go:build !unix

package client

import "os"

// notifyWinch does nothing where there is no SIGWINCH: the initial size is
// sent, later changes are not.
func notifyWinch(chan<- os.Signal) {}
