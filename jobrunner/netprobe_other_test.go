//go:build !linux

package jobrunner

import "fmt"

func probeRawOp(op, arg string) (string, error) {
	return "", fmt.Errorf("unknown probe operation %q", op)
}
