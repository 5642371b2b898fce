package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"

	foremanv1alpha1 "github.com/drrev/telehandler/api/telehandler/foreman/v1alpha1"
)

// bench holds what every measurement needs.
type bench struct {
	cfg  config
	bin  string
	srv  *server
	ssh  *sshPeer  // nil with -no-peers
	runc *runcPeer // nil with -no-peers
	rep  *report
	c    foremanv1alpha1.ForemanClient // over one long-lived connection
}

func (b *bench) setClient(conn *grpc.ClientConn) { b.c = foremanv1alpha1.NewForemanClient(conn) }

// timed is one latency series: a function that runs one iteration.
type timed struct {
	s    *series
	runs int
	fn   func(ctx context.Context, i int) (time.Duration, error)
}

// elapsed times fn.
func elapsed(fn func() error) (time.Duration, error) {
	t := time.Now()
	err := fn()
	return time.Since(t), err
}

// startLatency measures StartJob, the CLI round trip and every peer. The
// series are interleaved, one iteration of each in turn, so that a burst
// of load from elsewhere on the machine hits all of them alike.
func (b *bench) startLatency(ctx context.Context) error {
	cfg := b.cfg
	startJob := &series{name: "`StartJob` until RUNNING (gRPC, long-lived mTLS connection)"}
	cli := &series{name: "`telehandler start --watch -- /bin/true` (new process, new TLS connection)"}
	fork := &series{name: "fork/exec `/bin/true` (Go os/exec, wait for exit)"}
	unshare := &series{name: "`unshare --pid --fork --mount-proc --net --uts /bin/true`"}
	runcS := &series{name: "`runc run` `/bin/true` (busybox bundle, memory + pids limit)"}
	sshS := &series{name: "`ssh root@127.0.0.1 /bin/true` (local sshd, ed25519)"}

	var all []timed
	if b.srv != nil {
		all = append(all, timed{startJob, cfg.startRuns, func(ctx context.Context, _ int) (time.Duration, error) {
			var name string
			d, err := elapsed(func() error {
				resp, err := b.c.StartJob(ctx, &foremanv1alpha1.StartJobRequest{Command: "/bin/true"})
				if err != nil {
					return err
				}
				name = resp.GetJob().GetName()
				if st := resp.GetJob().GetStatus().GetState(); st == foremanv1alpha1.State_STATE_FAILED {
					return fmt.Errorf("job %s failed: %v", name, resp.GetJob().GetStatus())
				}
				return nil
			})
			if err != nil {
				return 0, fmt.Errorf("StartJob: %w", err)
			}
			// Let the job end before the next one so that they do not pile up.
			if _, err := drain(ctx, b.c, name, nil); err != nil {
				return 0, err
			}
			return d, nil
		}}, timed{cli, cfg.cliRuns, func(ctx context.Context, _ int) (time.Duration, error) {
			cmd := b.srv.cli(ctx, b.bin, "start", "--watch", "--", "/bin/true")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			d, err := elapsed(cmd.Run)
			if err != nil {
				return 0, fmt.Errorf("telehandler start --watch: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
			}
			return d, nil
		}})
	}
	all = append(all,
		timed{fork, cfg.startRuns, func(ctx context.Context, _ int) (time.Duration, error) {
			return elapsed(exec.CommandContext(ctx, "/bin/true").Run)
		}},
		timed{unshare, cfg.startRuns, func(ctx context.Context, _ int) (time.Duration, error) {
			return elapsed(exec.CommandContext(ctx, "unshare", "--pid", "--fork", "--mount-proc", "--net", "--uts", "/bin/true").Run)
		}},
	)
	if b.runc != nil {
		all = append(all, timed{runcS, cfg.startRuns, func(ctx context.Context, i int) (time.Duration, error) {
			return elapsed(func() error { return b.runc.run(ctx, fmt.Sprintf("telehandler-bench-%d-%d", os.Getpid(), i)) })
		}})
	}
	if b.ssh != nil {
		all = append(all, timed{sshS, cfg.cliRuns, func(ctx context.Context, _ int) (time.Duration, error) {
			return elapsed(exec.CommandContext(ctx, "ssh", b.ssh.command("/bin/true")...).Run)
		}})
	}

	most := 0
	for _, t := range all {
		most = max(most, t.runs)
	}
	for i := range cfg.warmup + most {
		for _, t := range all {
			if i >= cfg.warmup+t.runs {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d, err := t.fn(ctx, i)
			if err != nil {
				return fmt.Errorf("%s: %w", t.s.name, err)
			}
			if i >= cfg.warmup {
				t.s.samples = append(t.s.samples, d)
			}
		}
	}
	for _, t := range all {
		b.rep.latency = append(b.rep.latency, *t.s)
	}
	if b.srv == nil {
		return nil
	}
	idleJob, idleRunc, err := b.idleStarts(ctx, all)
	if err != nil {
		return err
	}

	p50 := func(s *series) float64 { return float64(s.p50()) }
	b.rep.add(row{
		metric:      fmt.Sprintf("StartJob p50 (n=%d)", len(startJob.samples)),
		telehandler: ms(startJob.p50()), target: "<= 3 ms",
		result: check(startJob.p50() <= 3*time.Millisecond),
	})
	b.rep.add(row{
		metric:      fmt.Sprintf("StartJob p99 (n=%d)", len(startJob.samples)),
		telehandler: ms(startJob.p99()), result: info,
	})
	if b.runc != nil {
		b.rep.add(row{
			metric:      "StartJob p50 vs `runc run` p50",
			telehandler: ms(startJob.p50()), peer: "runc " + ms(runcS.p50()),
			ratio: ratio(p50(startJob), p50(runcS)), target: "<= 0.12x",
			result: check(p50(startJob) <= 0.12*p50(runcS)),
		})
		b.rep.add(row{
			metric:      "StartJob p99 vs `runc run` p99",
			telehandler: ms(startJob.p99()), peer: "runc " + ms(runcS.p99()),
			ratio: ratio(float64(startJob.p99()), float64(runcS.p99())), result: info,
		})
	} else {
		b.rep.add(row{metric: "StartJob p50 vs `runc run` p50", target: "<= 0.12x", result: skip})
	}
	if idleRunc != nil {
		b.rep.add(row{
			metric:      fmt.Sprintf("StartJob p50 vs `runc run` p50, each after 50 ms idle (n=%d)", len(idleJob.samples)),
			telehandler: ms(idleJob.p50()), peer: "runc " + ms(idleRunc.p50()),
			ratio: ratio(p50(idleJob), p50(idleRunc)), result: info,
		})
	}
	b.rep.add(row{
		metric:      "StartJob p50 vs `unshare` p50",
		telehandler: ms(startJob.p50()), peer: "unshare " + ms(unshare.p50()),
		ratio: ratio(p50(startJob), p50(unshare)), result: info,
	})
	b.rep.add(row{
		metric:      "StartJob p50 vs fork/exec p50",
		telehandler: ms(startJob.p50()), peer: "fork/exec " + ms(fork.p50()),
		ratio: ratio(p50(startJob), p50(fork)), result: info,
	})
	b.rep.add(row{
		metric:      fmt.Sprintf("CLI round trip `start --watch -- /bin/true` p50 (n=%d)", len(cli.samples)),
		telehandler: ms(cli.p50()), target: "<= 12 ms",
		result: check(cli.p50() <= 12*time.Millisecond),
	})
	if b.ssh != nil {
		r := ratio(p50(cli), p50(sshS))
		if p50(cli) > 0 {
			r += fmt.Sprintf(" (%.1fx faster)", p50(sshS)/p50(cli))
		}
		b.rep.add(row{
			metric:      fmt.Sprintf("CLI `start --watch` p50 vs `ssh /bin/true` p50 (n=%d)", len(cli.samples)),
			telehandler: ms(cli.p50()), peer: "ssh " + ms(sshS.p50()),
			ratio: r, result: info,
		})
	}
	return nil
}

// idleStarts measures StartJob and `runc run` again (cfg.cliRuns times
// each, alternating) with 50 ms of idleness before each start, as when one
// user starts one job: on cgroup v1 the first cgroup migration after a
// quiet moment waits for an RCU grace period, which back-to-back starts
// share. all[0] is the StartJob series; runc's is found by name.
func (b *bench) idleStarts(ctx context.Context, all []timed) (job, runc *series, err error) {
	if b.runc == nil {
		return nil, nil, nil
	}
	var runcT timed
	for _, t := range all {
		if strings.HasPrefix(t.s.name, "`runc run`") {
			runcT = t
		}
	}
	job = &series{name: "`StartJob` until RUNNING, after 50 ms idle"}
	runc = &series{name: "`runc run` `/bin/true`, after 50 ms idle"}
	pairs := []struct {
		s *series
		t timed
	}{{job, all[0]}, {runc, runcT}}
	for i := range b.cfg.cliRuns {
		for _, p := range pairs {
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			d, err := p.t.fn(ctx, 1_000_000+i)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", p.s.name, err)
			}
			p.s.samples = append(p.s.samples, d)
		}
	}
	b.rep.latency = append(b.rep.latency, *job, *runc)
	return job, runc, nil
}

// throughput measures one job writing cfg.tputBytes of zeros watched by one
// `telehandler watch JOB > /dev/null`, against ssh streaming the same.
// Each side is timed from the request to the last byte; runs alternate and
// the median rate is reported.
func (b *bench) throughput(ctx context.Context) error {
	n := b.cfg.tputBytes
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devNull.Close()
	headArgs := []string{"-c", strconv.FormatInt(n, 10), "/dev/zero"}

	var tele, peer []float64
	var serverCPU, watchCPU, sshCPU, sshdCPU time.Duration // summed over the runs
	for range b.cfg.tputRuns {
		if b.srv != nil {
			before := cpuTime(b.srv.pid())
			r, cli, err := b.watchRate(ctx, devNull, headArgs, n)
			if err != nil {
				return err
			}
			serverCPU += cpuTime(b.srv.pid()) - before
			watchCPU += cli
			tele = append(tele, r)
		}
		if b.ssh != nil {
			cmd := exec.CommandContext(ctx, "ssh", b.ssh.command("head "+strings.Join(headArgs, " "), "-c", "aes128-gcm@openssh.com")...)
			cmd.Stdout = devNull
			before := cpuTimeWithChildren(b.ssh.d.pid())
			d, err := elapsed(cmd.Run)
			if err != nil {
				return fmt.Errorf("ssh head: %w", err)
			}
			sshCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			// The connection's sshd processes count once sshd reaped them.
			_ = waitFor(ctx, nil, 5*time.Second, func() error {
				if len(childrenOf(b.ssh.d.pid())) > 0 {
					return errors.New("not yet")
				}
				return nil
			})
			sshdCPU += cpuTimeWithChildren(b.ssh.d.pid()) - before
			peer = append(peer, float64(n)/d.Seconds())
		}
	}
	perGiB := func(d time.Duration) string {
		gib := float64(n) * float64(b.cfg.tputRuns) / (1 << 30)
		return fmt.Sprintf("%.2f", d.Seconds()/gib)
	}
	b.rep.note("Throughput CPU seconds per GiB: telehandler server %s + `telehandler watch` %s = %s (the job's own not counted); ssh client %s + sshd %s = %s (sshd's includes the remote `head`, as its reaped child).",
		perGiB(serverCPU), perGiB(watchCPU), perGiB(serverCPU+watchCPU), perGiB(sshCPU), perGiB(sshdCPU), perGiB(sshCPU+sshdCPU))
	tm := median(tele)
	b.rep.note("Throughput runs, telehandler: %s; ssh: %s.", rates(tele), rates(peer))
	if b.srv == nil {
		return nil
	}
	gib := float64(n) * float64(len(tele)) / (1 << 30)
	cpuPerGiB := (serverCPU + watchCPU).Seconds() / gib
	cpuRow := row{
		metric:      "Output throughput: CPU seconds per GiB, server + `telehandler watch`",
		telehandler: fmt.Sprintf("%.2f s", cpuPerGiB), target: "<= 2.0 s", result: check(cpuPerGiB <= 2.0),
	}
	if b.ssh != nil {
		cpuRow.peer = fmt.Sprintf("ssh + sshd %.2f s", (sshCPU+sshdCPU).Seconds()/gib)
	}
	b.rep.add(cpuRow)
	metric := fmt.Sprintf("Output throughput, %s to one `telehandler watch > /dev/null` (median of %d)", size(n), len(tele))
	if b.ssh == nil {
		b.rep.add(row{metric: metric, telehandler: mibps(tm), target: ">= 1.0x ssh", result: skip})
		return nil
	}
	pm := median(peer)
	b.rep.add(row{
		metric: metric, telehandler: mibps(tm), peer: "ssh aes128-gcm " + mibps(pm),
		ratio: ratio(tm, pm), target: ">= 1.0x", result: check(tm >= pm),
	})
	return nil
}

// watchRate starts a job writing n bytes and times it, from the request,
// until `telehandler watch JOB > /dev/null` exits; it checks the job's output
// was complete and returns bytes per second.
func (b *bench) watchRate(ctx context.Context, devNull *os.File, headArgs []string, n int64) (rate float64, cliCPU time.Duration, err error) {
	var name string
	d, err := elapsed(func() error {
		resp, err := b.c.StartJob(ctx, &foremanv1alpha1.StartJobRequest{
			Command: "head", Args: headArgs,
			Limits: &foremanv1alpha1.Limits{CpuMilli: b.cfg.jobCPUMilli},
		})
		if err != nil {
			return fmt.Errorf("StartJob: %w", err)
		}
		name = resp.GetJob().GetName()
		cmd := b.srv.cli(ctx, b.bin, "watch", name)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = devNull, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("telehandler watch %s: %w: %s", name, err, bytes.TrimSpace(stderr.Bytes()))
		}
		cliCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	if err := b.expectOutput(ctx, name, n); err != nil {
		return 0, 0, err
	}
	return float64(n) / d.Seconds(), cliCPU, nil
}

// expectOutput checks that a job completed with exactly n bytes of output.
func (b *bench) expectOutput(ctx context.Context, name string, n int64) error {
	resp, err := b.c.GetJobStatus(ctx, &foremanv1alpha1.GetJobStatusRequest{Name: name})
	if err != nil {
		return fmt.Errorf("status %s: %w", name, err)
	}
	st := resp.GetJob().GetStatus()
	if st.GetState() != foremanv1alpha1.State_STATE_COMPLETED || st.GetOutputBytes() != n || st.GetOutputTruncated() {
		return fmt.Errorf("job %s: state %v, %d output bytes (want %d), truncated %v",
			name, st.GetState(), st.GetOutputBytes(), n, st.GetOutputTruncated())
	}
	return nil
}

// fanout starts one job printing a seeded pseudo-random file and has
// cfg.watchers gRPC streams, each on its own connection, read all of it
// at once; each stream's bytes are checked against the file's SHA-256.
func (b *bench) fanout(ctx context.Context) error {
	n, watchers := b.cfg.fanoutBytes, b.cfg.watchers
	data, want, err := writeSeededFile(filepath.Join(filepath.Dir(b.srv.certs), "shared", "data"), n)
	if err != nil {
		return err
	}

	conns := make([]*grpc.ClientConn, watchers)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		if conns[i], err = b.srv.dial(); err != nil {
			return err
		}
		// Handshake now, not during the measurement.
		if _, err := grpc_health_v1.NewHealthClient(conns[i]).Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
	}

	pid := b.srv.pid()
	base := rssBytes(pid)
	if err := resetHWM(pid); err != nil {
		return fmt.Errorf("reset VmHWM: %w", err)
	}
	peakRSS := base
	sampleDone := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sampleDone:
				return
			case <-t.C:
				peakRSS = max(peakRSS, rssBytes(pid))
			}
		}
	}()

	type result struct {
		n   int64
		sum [sha256.Size]byte
		err error
	}
	results := make([]result, watchers)
	t0 := time.Now()
	resp, err := b.c.StartJob(ctx, &foremanv1alpha1.StartJobRequest{
		Command: "cat", Args: []string{data},
		Limits: &foremanv1alpha1.Limits{CpuMilli: b.cfg.jobCPUMilli},
	})
	if err != nil {
		close(sampleDone)
		sampler.Wait()
		return fmt.Errorf("StartJob: %w", err)
	}
	name := resp.GetJob().GetName()
	var wg sync.WaitGroup
	for i := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			c := foremanv1alpha1.NewForemanClient(conns[i])
			got, err := drain(ctx, c, name, func(p []byte) { h.Write(p) })
			results[i] = result{n: got, err: err}
			h.Sum(results[i].sum[:0])
		}()
	}
	wg.Wait()
	took := time.Since(t0)
	close(sampleDone)
	sampler.Wait()
	peak := max(peakRSS, hwmBytes(pid))
	growth := peak - base

	ok := 0
	var errs []error
	for i, r := range results {
		switch {
		case r.err != nil:
			errs = append(errs, fmt.Errorf("watcher %d: %w", i, r.err))
		case r.n != n || r.sum != want:
			errs = append(errs, fmt.Errorf("watcher %d: %d bytes, sha256 %x (want %d, %x)", i, r.n, r.sum[:6], n, want[:6]))
		default:
			ok++
		}
	}
	if err := b.expectOutput(ctx, name, n); err != nil {
		errs = append(errs, err)
	}
	agg := float64(n) * float64(watchers) / took.Seconds()
	b.rep.note("Fan-out: %d watchers (one TLS connection each) × %s in %s; server RSS %s before, peak %s.",
		watchers, size(n), took.Round(time.Millisecond), size(base), size(peak))
	b.rep.add(row{
		metric:      fmt.Sprintf("Fan-out: %d watchers × %s, every byte checked (sha256)", watchers, size(n)),
		telehandler: fmt.Sprintf("%d/%d complete", ok, watchers), target: "all",
		result: check(ok == watchers && len(errs) == 0), correctness: true,
	})
	b.rep.add(row{
		metric:      "Fan-out aggregate throughput (job start to last byte at the last watcher)",
		telehandler: mibps(agg), result: info,
	})
	b.rep.add(row{
		metric:      "Fan-out server RSS growth (peak VmHWM/VmRSS − before)",
		telehandler: size(growth), target: "< 64 MiB", result: check(growth < 64<<20),
	})
	return errors.Join(errs...)
}

// writeSeededFile writes n pseudo-random bytes (fixed seed) to dir/fanout.bin,
// readable by a job running as any user, and returns its path and SHA-256.
func writeSeededFile(dir string, n int64) (string, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", sum, err
	}
	path := filepath.Join(dir, "fanout.bin")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return "", sum, err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{'t', 'e', 'l', 'e', 'h', 'a', 'n', 'd', 'l', 'e', 'r'})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := n; left > 0; {
		p := buf[:min(int64(len(buf)), left)]
		_, _ = rng.Read(p)
		h.Write(p)
		if _, err := f.Write(p); err != nil {
			return "", sum, err
		}
		left -= int64(len(p))
	}
	h.Sum(sum[:0])
	return path, sum, f.Close()
}

// scale starts cfg.scaleJobs `sleep 60` jobs from cfg.scaleWorkers
// goroutines at once, checks that they all run, stops them all, and checks
// that no cgroup or process of theirs is left.
func (b *bench) scale(ctx context.Context) error {
	n, workers := b.cfg.scaleJobs, b.cfg.scaleWorkers
	pid := b.srv.pid()
	base := rssBytes(pid)
	names := make([]string, n)
	errs := make([]error, n)
	parallel := func(fn func(i int)) time.Duration {
		next := make(chan int)
		var wg sync.WaitGroup
		t := time.Now()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					fn(i)
				}
			}()
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		return time.Since(t)
	}

	cpu0 := cpuTime(pid)
	took := parallel(func(i int) {
		resp, err := b.c.StartJob(ctx, &foremanv1alpha1.StartJobRequest{Command: "sleep", Args: []string{"60"}})
		if err != nil {
			errs[i] = err
			return
		}
		names[i] = resp.GetJob().GetName()
	})
	// Stop whatever started, also when the rest failed.
	defer func() {
		for _, name := range names {
			if name != "" {
				_, _ = b.c.StopJob(context.Background(), &foremanv1alpha1.StopJobRequest{Name: name})
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("StartJob: %w", err)
	}
	rate := float64(n) / took.Seconds()
	startCPU := cpuTime(pid) - cpu0
	after := rssBytes(pid)

	// ListJobs answers in pages: follow them all.
	running := 0
	for token := ""; ; {
		list, err := b.c.ListJobs(ctx, &foremanv1alpha1.ListJobsRequest{PageToken: token})
		if err != nil {
			return fmt.Errorf("ListJobs: %w", err)
		}
		for _, j := range list.GetJobs() {
			if slices.Contains(names, j.GetName()) && j.GetStatus().GetState() == foremanv1alpha1.State_STATE_RUNNING {
				running++
			}
		}
		if token = list.GetNextPageToken(); token == "" {
			break
		}
	}
	inCgroups := len(slices.DeleteFunc(pidsInCgroup(b.srv.cgroupParent), waitingWarmShim))

	stopTook := parallel(func(i int) {
		_, errs[i] = b.c.StopJob(ctx, &foremanv1alpha1.StopJobRequest{Name: names[i]})
	})
	stopErr := errors.Join(errs...)
	// StopJob returns once the job's processes are gone; the server removes
	// the cgroup as the job ends. Give that up to 10 s to show up.
	var leftCgroups, leftPids, leftKids int
	settle := time.Now()
	_ = waitFor(ctx, nil, 10*time.Second, func() error {
		leftCgroups, leftPids, leftKids = jobsLeft(b.srv.cgroupParent, pid)
		if leftCgroups+leftPids+leftKids > 0 {
			return errors.New("not yet")
		}
		return nil
	})

	b.rep.note("Scale: %d jobs started in %s by %d concurrent callers (server CPU %.2f ms per start, its shims not counted); %d running at once (%d processes in their cgroups); stopped in %s; cleanup settled %s after the last StopJob.",
		n, took.Round(time.Millisecond), workers, float64(startCPU.Microseconds())/1000/float64(n), running, inCgroups, stopTook.Round(time.Millisecond), time.Since(settle).Round(time.Millisecond))
	b.rep.add(row{
		metric:      fmt.Sprintf("Scale: %d concurrent `sleep 60` jobs running", n),
		telehandler: fmt.Sprintf("%d/%d", running, n), target: "all", result: check(running == n), correctness: true,
	})
	b.rep.add(row{
		metric:      fmt.Sprintf("Scale: start rate (%d concurrent callers)", workers),
		telehandler: fmt.Sprintf("%.0f jobs/s", rate), target: ">= 300/s", result: check(rate >= 300),
	})
	b.rep.add(row{
		metric:      "Scale: server RSS per running job",
		telehandler: size((after - base) / int64(n)), result: info,
	})
	b.rep.add(row{
		metric:      fmt.Sprintf("Scale: stop all %d (StopJob, concurrent)", n),
		telehandler: fmt.Sprintf("%.0f jobs/s", float64(n)/stopTook.Seconds()), result: check(stopErr == nil), correctness: true,
	})
	b.rep.add(row{
		metric:      "Scale: left after stop (job cgroups / processes in them / server children)",
		telehandler: fmt.Sprintf("%d / %d / %d", leftCgroups, leftPids, leftKids), target: "0 / 0 / 0",
		result: check(leftCgroups+leftPids+leftKids == 0), correctness: true,
	})
	if stopErr != nil {
		return fmt.Errorf("StopJob: %w", stopErr)
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func rates(v []float64) string {
	if len(v) == 0 {
		return "-"
	}
	out := ""
	for i, r := range v {
		if i > 0 {
			out += ", "
		}
		out += mibps(r)
	}
	return out
}

// cliScale runs cfg.cliJobs `telehandler start -- sleep 60` CLI processes,
// cfg.cliProcs at a time (each a new process with its own TLS connection,
// as scripts start jobs), then stops the jobs and checks that nothing of
// theirs is left.
func (b *bench) cliScale(ctx context.Context) error {
	n, procs := b.cfg.cliJobs, b.cfg.cliProcs
	names := make([]string, n)
	errs := make([]error, n)
	var (
		mu  sync.Mutex
		cpu time.Duration // user+system of the CLI processes
	)
	srvCPU := cpuTime(b.srv.pid())
	next := make(chan int)
	var wg sync.WaitGroup
	t := time.Now()
	for range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cmd := b.srv.cli(ctx, b.bin, "start", "--", "sleep", "60")
				out, err := cmd.Output()
				if cmd.ProcessState != nil {
					mu.Lock()
					cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
					mu.Unlock()
				}
				if err != nil {
					errs[i] = fmt.Errorf("telehandler start: %w", err)
					continue
				}
				names[i] = strings.TrimSpace(string(out))
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	took := time.Since(t)
	srvCPU = cpuTime(b.srv.pid()) - srvCPU
	defer func() {
		for _, name := range names {
			if name != "" {
				_, _ = b.c.StopJob(context.Background(), &foremanv1alpha1.StopJobRequest{Name: name})
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.rep.add(row{
		metric:      fmt.Sprintf("CLI scale: %d `telehandler start` from %d parallel CLI processes", n, procs),
		telehandler: fmt.Sprintf("%s (%.0f jobs/s)", took.Round(time.Millisecond), float64(n)/took.Seconds()),
		target:      fmt.Sprintf("<= %s", (1200 * time.Millisecond * time.Duration(n) / 200).Round(time.Millisecond)),
		result:      check(took <= 1200*time.Millisecond*time.Duration(n)/200),
	})
	b.rep.note("CLI scale: CPU per `telehandler start`: %s in the CLI process, %s in the server (its shims not counted).",
		ms(cpu/time.Duration(n)), ms(srvCPU/time.Duration(n)))
	for i, name := range names {
		_, errs[i] = b.c.StopJob(ctx, &foremanv1alpha1.StopJobRequest{Name: name})
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("StopJob: %w", err)
	}
	var left int
	_ = waitFor(ctx, nil, 10*time.Second, func() error {
		cgroups, pids, _ := jobsLeft(b.srv.cgroupParent, 0)
		if left = cgroups + pids; left > 0 {
			return errors.New("not yet")
		}
		return nil
	})
	b.rep.add(row{
		metric:      "CLI scale: left after stop (job cgroups and processes)",
		telehandler: strconv.Itoa(left), target: "0", result: check(left == 0), correctness: true,
	})
	return nil
}
