//go:build !linux

package main

import "errors"

// lockCgroupParent is Linux-only, like serve itself.
func lockCgroupParent(dir, parent string) (release func(), err error) {
	return nil, errors.New("serve runs on Linux only")
}
