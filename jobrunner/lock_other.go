//go:build !linux

package jobrunner

// lockStateDir does nothing off Linux, where no job runs.
func lockStateDir(string) (func(), error) { return func() {}, nil }
