//go:build !amd64 && !arm64

package sandbox

import (
	"fmt"
	"runtime"
)

// defaultSeccompPolicy has no policy for this architecture: the server
// refuses to start unless the operator turns the filter off.
func defaultSeccompPolicy(string) (seccompPolicy, error) {
	return seccompPolicy{}, fmt.Errorf("no seccomp policy for %s: run serve --seccomp=off to accept jobs without the filter", runtime.GOARCH)
}
