//go:build !amd64 && !arm64

package sandbox

// seccompHelpers: no seccomp policy, hence no seccomp test, on this
// architecture.
var seccompHelpers = map[string]func() int{}
