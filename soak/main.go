// Command soak puts the real telehandler binary under a bounded, mixed load
// for about two minutes and fails on anything a user would notice or an
// operator would regret: several clients (the CLI, as users run it) start,
// watch, status, list, stop and remove jobs in a loop, with a server restart in the
// middle (SIGTERM while watchers follow running jobs, then a new server on
// the same state directory and cgroup parent). It fails on:
//
//   - any CLI call that fails or answers other than expected;
//   - any byte lost or duplicated in a watch: every watched stream is
//     compared by SHA-256 with what the job wrote (two watchers of one job
//     at times, stdout and stderr apart, and --merge in the exact order);
//   - server RSS, goroutines (from the hidden --pprof endpoint) or open fds
//     that do not come back, once the load stopped, to their level before it
//     (see the margins in soak_linux.go);
//   - an ERROR line in the server's log, a server that does not exit 0 on
//     SIGTERM, or a parent cgroup or lock file left after it.
//
// Jobs are removed too (rm, rm --force of a watched running job, start
// --watch --rm). It prints one summary line of figures.
//
// Run it as root through `make soak`, which builds the static binary first:
//
//	go run ./soak -bin ./telehandler
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// config is one soak run.
type config struct {
	bin      string        // the static telehandler binary
	clients  int           // concurrent client loops
	duration time.Duration // load time in all, split over the two servers
	keep     bool          // keep the temporary directory (logs)
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "./telehandler", "telehandler binary to soak")
	flag.IntVar(&cfg.clients, "clients", 4, "concurrent clients")
	flag.DurationVar(&cfg.duration, "duration", 90*time.Second, "load time in all (half before the server restart, half after)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory with the server logs")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "soak: FAIL: %v\n", err)
		os.Exit(1)
	}
}
