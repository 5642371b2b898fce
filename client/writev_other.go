//go:build !unix

package client

import "os"

// writevFile writes bufs to f one after the other.
func writevFile(f *os.File, bufs [][]byte) error { return writeEach(f, bufs) }
