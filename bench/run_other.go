//go:build !linux

package main

import "errors"

func run(config) (int, error) {
	return 2, errors.New("the benchmarks need Linux (namespaces, cgroups) and root")
}
