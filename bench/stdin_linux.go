package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// stdinThroughput pipes cfg.tputBytes of zeros into a job's stdin and
// compares with ssh: `head -c N /dev/zero | telehandler start -i --watch --
// wc -c` against `head -c N /dev/zero | ssh host wc -c`, alternating, each
// timed from the start of the pipeline to its end; wc's count must be N.
func (b *bench) stdinThroughput(ctx context.Context) error {
	n := b.cfg.tputBytes
	feed := fmt.Sprintf(`head -c %d /dev/zero | "$0" "$@"`, n)
	var tele, peer []float64
	for range b.cfg.tputRuns {
		if b.srv != nil {
			cli := b.srv.cli(ctx, b.bin, "start", "-i", "--watch", "--cpu", fmt.Sprintf("%dm", b.cfg.jobCPUMilli), "--", "wc", "-c")
			// sh -c FEED BIN ARGS...: $0 is the CLI, "$@" its arguments.
			cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", feed}, cli.Args...)...)
			cmd.Env = cli.Env
			r, err := pipeRate(cmd, n)
			if err != nil {
				return fmt.Errorf("telehandler start -i: %w", err)
			}
			tele = append(tele, r)
		}
		if b.ssh != nil {
			cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", feed, "ssh"}, b.ssh.command("wc -c", "-c", "aes128-gcm@openssh.com")...)...)
			r, err := pipeRate(cmd, n)
			if err != nil {
				return fmt.Errorf("ssh wc -c: %w", err)
			}
			peer = append(peer, r)
		}
	}
	b.rep.note("Stdin throughput runs, telehandler: %s; ssh: %s.", rates(tele), rates(peer))
	if b.srv == nil {
		return nil
	}
	tm := median(tele)
	metric := fmt.Sprintf("Stdin throughput, %s into `telehandler start -i --watch -- wc -c` (median of %d)", size(n), len(tele))
	if b.ssh == nil {
		b.rep.add(row{metric: metric, telehandler: mibps(tm), target: "report", result: info})
		return nil
	}
	pm := median(peer)
	b.rep.add(row{metric: metric, telehandler: mibps(tm), peer: "ssh aes128-gcm " + mibps(pm),
		ratio: ratio(tm, pm), target: "report", result: info})
	return nil
}

// pipeRate runs cmd, whose stdout must be the count n (wc -c), and returns
// bytes per second.
func pipeRate(cmd *exec.Cmd, n int64) (float64, error) {
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	d, err := elapsed(cmd.Run)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if got := strings.TrimSpace(out.String()); got != strconv.FormatInt(n, 10) {
		return 0, fmt.Errorf("wc -c counted %q bytes, want %d", got, n)
	}
	return float64(n) / d.Seconds(), nil
}
