// Command telehandler runs Linux processes as sandboxed, resource-limited
// jobs and serves them over a gRPC API protected by mutual TLS. The same
// binary is the server (serve), the CLI (start, stop, status, watch, list),
// the certificate tool (certgen) and the per-job namespace shim (__child).
package main

import (
	"os"
)

func main() {
	// The shim role is dispatched before anything else: no flag parsing,
	// logging or goroutines may run in it before it execs the job.
	if len(os.Args) > 1 && os.Args[1] == "__child" {
		childMain()
	}
	os.Exit(run(os.Args))
}
