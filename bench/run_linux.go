package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// run sets everything up, measures, prints and writes the table, and
// cleans up. The exit code is 1 when a correctness check failed (or, with
// -strict, a target was missed).
func run(cfg config) (int, error) {
	if os.Geteuid() != 0 {
		return 2, errors.New("must run as root (telehandler serve, runc and sshd need it)")
	}
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return 2, err
	}
	if _, err := os.Stat(bin); err != nil && !cfg.onlyPeers {
		return 2, fmt.Errorf("telehandler binary: %w (run `make build` first)", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	e, err := newEnv()
	if err != nil {
		return 2, err
	}
	defer e.close(cfg.keep)

	started := time.Now()
	parent := fmt.Sprintf("telehandler-bench-%d", os.Getpid())
	rep := &report{}
	rep.header = []string{
		fmt.Sprintf("Run %s, mode %s, %s.", started.UTC().Format("2006-01-02 15:04 MST"), mode(cfg), hostLine()),
		fmt.Sprintf("Reproduce: `%s` (as root).", reproduce(cfg)),
	}

	// Output past the cap would be dropped: leave room for every job's
	// output, the cap is per job.
	var srv *server
	if !cfg.onlyPeers {
		srv, err = startServer(ctx, e, bin, parent, 2*max(cfg.tputBytes, cfg.fanoutBytes)+(1<<20))
		if err != nil {
			return 2, err
		}
		logf("telehandler serve pid %d on %s, cgroup parent %s, temp dir %s", srv.pid(), srv.addr, parent, e.dir)
	}

	var ssh *sshPeer
	var runc *runcPeer
	if !cfg.noPeers {
		if ssh, err = startSSHD(ctx, e); err != nil {
			return 2, err
		}
		if runc, err = setupRunc(ctx, e, parent+"-runc"); err != nil {
			return 2, err
		}
	}

	b := &bench{cfg: cfg, bin: bin, srv: srv, ssh: ssh, runc: runc, rep: rep}
	type step struct {
		name, key string
		fn        func(context.Context) error
	}
	steps := []step{{"start latency", "start", b.startLatency}, {"output throughput", "throughput", b.throughput}}
	if srv != nil {
		conn, err := srv.dial()
		if err != nil {
			return 2, err
		}
		defer conn.Close()
		b.setClient(conn)
		steps = append(steps, step{"stdin throughput", "stdin", b.stdinThroughput})
		steps = append(steps, step{"fan-out", "fanout", b.fanout}, step{"scale", "scale", b.scale}, step{"CLI scale", "cliscale", b.cliScale})
	}
	if cfg.steps != "" {
		want := strings.Split(cfg.steps, ",")
		steps = slices.DeleteFunc(steps, func(s step) bool { return !slices.Contains(want, s.key) })
	}
	var errs []error
	for _, s := range steps {
		if ctx.Err() != nil {
			break
		}
		logf("%s...", s.name)
		t := time.Now()
		if err := s.fn(ctx); err != nil {
			logf("%s: %v", s.name, err)
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
			rep.add(row{metric: s.name, telehandler: "error: " + oneLine(err), result: fail, correctness: true})
		}
		logf("%s done in %s", s.name, time.Since(t).Round(10*time.Millisecond))
	}
	rep.note("Whole run (setup, measurements) took %s before cleanup.", time.Since(started).Round(100*time.Millisecond))

	md := rep.markdown()
	fmt.Print(md)
	if ctx.Err() != nil {
		return 130, errors.New("interrupted: results not written")
	}
	if cfg.out != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.out), 0o755); err != nil {
			errs = append(errs, err)
		} else if err := os.WriteFile(cfg.out, []byte(md), 0o644); err != nil {
			errs = append(errs, err)
		} else {
			logf("table written to %s", cfg.out)
		}
	}
	if rep.failed(cfg.strict) {
		return 1, errors.Join(append(errs, errors.New("a check failed (see the table)"))...)
	}
	return 0, errors.Join(errs...)
}

func mode(cfg config) string {
	if cfg.quick {
		return "smoke (`-quick`)"
	}
	return "full"
}

func reproduce(cfg config) string {
	if cfg.quick {
		return "make bench-smoke"
	}
	return "make bench"
}

// hostLine describes the machine: cores, kernel and cgroup layout.
func hostLine() string {
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	var rel []byte
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		rel = append(rel, byte(c))
	}
	layout := "cgroup v1 (hybrid)"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		layout = "cgroup v2"
	}
	out, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	return fmt.Sprintf("%d CPUs, Linux %s, %s, %s, commit %s", runtime.NumCPU(), rel, layout, runtime.Version(), strings.TrimSpace(string(out)))
}

func oneLine(err error) string {
	return strings.ReplaceAll(strings.ReplaceAll(err.Error(), "\n", " "), "|", "/")
}
