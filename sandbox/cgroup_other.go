//go:build !linux

package sandbox

import "fmt"

// NewCgroups fails: cgroups exist only on Linux.
func NewCgroups(cfg CgroupConfig) (Cgroups, error) {
	return nil, fmt.Errorf("%w: cgroups need Linux", ErrNoController)
}
