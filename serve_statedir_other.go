//go:build !linux

package main

import "errors"

// checkStateDir is Linux-only, like serve itself.
func checkStateDir(dir string) error { return errors.New("serve runs on Linux only") }
