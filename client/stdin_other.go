//go:build !linux

package client

import "os"

// stdinHasData is Linux-only; elsewhere no warning is given.
func stdinHasData(*os.File) bool { return false }
