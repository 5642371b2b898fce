//go:build !linux

package main

import (
	"errors"
	"runtime"
)

func run(config) error {
	return errors.New("the soak test runs on Linux only (this is " + runtime.GOOS + "): the server needs namespaces and cgroups")
}
