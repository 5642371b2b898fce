// Command bench measures Telehandler against the tools people would
// otherwise use, side by side in one run on the same machine: job start
// latency (gRPC StartJob and the CLI round trip against fork/exec, unshare,
// runc and ssh), output throughput against ssh, fan-out to many watchers, and
// hundreds of concurrent jobs. It starts its own `telehandler serve`, sshd
// and runc bundle on loopback with throwaway certificates, keys and
// configuration under a temporary directory, prints a markdown table and
// writes it to a file, and removes every process and cgroup it started, also
// when a step fails.
//
// Run it as root through `make bench` (or `make bench-smoke` for a quick
// pass), which builds the static binary and installs the peers first:
//
//	go run ./bench -bin ./telehandler -out bench/results/latest.md
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// config is what one run measures and where. Zero sizes or counts skip the
// step they size.
type config struct {
	bin       string // the static telehandler binary
	out       string // markdown results file
	quick     bool   // smoke mode: small sizes
	keep      bool   // keep the temporary directory (logs) after the run
	strict    bool   // exit non-zero when a performance target is missed
	noPeers   bool   // skip the ssh and runc peers
	onlyPeers bool   // measure only the peers (no telehandler)
	steps     string // comma-separated steps to run ("" = all)

	startRuns    int   // StartJob, fork/exec, unshare and runc iterations
	cliRuns      int   // CLI round trips and ssh round trips
	warmup       int   // untimed iterations before each latency series
	tputBytes    int64 // output written by the throughput job
	tputRuns     int   // throughput repetitions (median reported)
	watchers     int   // fan-out watchers
	fanoutBytes  int64 // output of the fan-out job
	scaleJobs    int   // concurrent sleep jobs
	scaleWorkers int   // goroutines calling StartJob concurrently
	cliJobs      int   // `telehandler start` processes in the CLI scale step
	cliProcs     int   // of them running at once
	jobCPUMilli  uint64
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "./telehandler", "telehandler binary to benchmark")
	flag.StringVar(&cfg.out, "out", "bench/results/latest.md", "write the markdown results here")
	flag.BoolVar(&cfg.quick, "quick", false, "smoke mode: few iterations and small sizes (CI)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory with logs and configs")
	flag.BoolVar(&cfg.strict, "strict", false, "exit 1 when a performance target is missed (correctness failures always exit 1)")
	flag.BoolVar(&cfg.noPeers, "no-peers", false, "skip the ssh and runc peers")
	flag.BoolVar(&cfg.onlyPeers, "only-peers", false, "measure only the peers, without telehandler (to check the setup)")
	flag.StringVar(&cfg.steps, "steps", "", "comma-separated steps to run: start,throughput,stdin,fanout,scale,cliscale (default all)")
	flag.IntVar(&cfg.startRuns, "start-runs", 0, "start latency iterations (default 200, quick 20)")
	flag.IntVar(&cfg.cliRuns, "cli-runs", 0, "CLI and ssh round trips (default 50, quick 10)")
	flag.Int64Var(&cfg.tputBytes, "throughput-bytes", 0, "bytes the throughput job writes (default 1 GiB, quick 64 MiB)")
	flag.IntVar(&cfg.tputRuns, "throughput-runs", 0, "throughput repetitions, alternating telehandler and ssh, median reported (default 5, quick 1)")
	flag.IntVar(&cfg.watchers, "watchers", 0, "fan-out watchers (default 100, quick 10)")
	flag.Int64Var(&cfg.fanoutBytes, "fanout-bytes", 0, "bytes of the fan-out job (default 256 MiB, quick 16 MiB)")
	flag.IntVar(&cfg.scaleJobs, "jobs", 0, "concurrent sleep jobs (default 500, quick 50)")
	flag.IntVar(&cfg.scaleWorkers, "workers", 8, "goroutines calling StartJob concurrently in the scale test")
	flag.IntVar(&cfg.cliJobs, "cli-jobs", 0, "`telehandler start -- sleep 60` processes in the CLI scale step (default 200, quick 20)")
	flag.IntVar(&cfg.cliProcs, "cli-procs", 4, "CLI processes running at once in the CLI scale step")
	flag.Uint64Var(&cfg.jobCPUMilli, "job-cpu-milli", 2000, "CPU limit (thousandths of a CPU) of the throughput and fan-out jobs")
	flag.Parse()
	cfg.fillDefaults()

	start := time.Now()
	code, err := run(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	fmt.Fprintf(os.Stderr, "bench: finished in %s\n", time.Since(start).Round(100*time.Millisecond))
	os.Exit(code)
}

func (c *config) fillDefaults() {
	def := func(v *int, full, quick int) {
		if *v == 0 {
			*v = full
			if c.quick {
				*v = quick
			}
		}
	}
	def64 := func(v *int64, full, quick int64) {
		if *v == 0 {
			*v = full
			if c.quick {
				*v = quick
			}
		}
	}
	def(&c.startRuns, 200, 20)
	def(&c.cliRuns, 50, 10)
	def(&c.tputRuns, 5, 1)
	def(&c.watchers, 100, 10)
	def(&c.scaleJobs, 500, 50)
	def(&c.cliJobs, 200, 20)
	def64(&c.tputBytes, 1<<30, 64<<20)
	def64(&c.fanoutBytes, 256<<20, 16<<20)
	c.warmup = 5
	if c.quick {
		c.warmup = 2
	}
}
