package sandbox

import "os"

// RunChild is the shim's entry point (placeholder until the shim lands).
func RunChild() {
	os.Exit(125)
}
