package main

import (
	"fmt"
	"os"
)

// run is replaced by the urfave/cli application (client, server, certgen
// commands).
func run(args []string) int {
	fmt.Fprintln(os.Stderr, "telehandler: not implemented yet")
	return 2
}
