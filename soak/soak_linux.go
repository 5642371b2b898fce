package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Margins for "back to the level before the load", measured after a
// garbage collection (the heap profile's gc=1) once every client is gone
// and every job ended:
//
//   - open fds: none. Every fd the server opens for a job (log, pipes,
//     cgroup and process fds) or a client (its connection) is closed when
//     the job ends or the client leaves.
//   - goroutines: none. Each job's goroutines (pipe readers, supervisor)
//     and each connection's (gRPC transport, keepalive) end with it; the
//     pprof request that counts them is there in both counts.
//   - RSS: rssMargin plus rssPerJob per job run. Ended jobs stay in the
//     server's memory (status, command line, the output log's offset index:
//     well under 1 KiB for these jobs; no retention yet), and Go returns
//     freed heap to the kernel lazily, so RSS after a load keeps some of the
//     heap's peak (a few 32 KiB follower buffers and gRPC's buffer pools for
//     each concurrent watcher). A leak of one buffer per job or watcher, the
//     failure this guards against, grows far past it within the run's
//     hundreds of jobs and watches.
const (
	rssMargin   = 24 << 20
	rssPerJob   = 4 << 10
	settleLimit = 30 * time.Second // how long fds and goroutines may take to come back
)

// soak is one run: a temporary directory with certificates and the state,
// one server at a time, and the tallies of what was checked.
type soak struct {
	cfg                                config
	dir, addr, pprof, parent, stateDir string
	srv                                *serverProc
	http                               *http.Client

	mu       sync.Mutex
	failures []string // guarded by mu

	jobs, stopped, merged, removed, spanning, watches, bytesChecked atomic.Int64
}

// serverProc is a running `telehandler serve`.
type serverProc struct {
	cmd    *exec.Cmd
	logs   syncBuffer
	ready  chan struct{}
	exited chan struct{}
	err    error // Wait's result, set before exited is closed
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// sample is the server's resource use at one moment.
type sample struct {
	rss        int64
	goroutines int
	fds        int
}

func (s sample) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d goroutines, %d fds", float64(s.rss)/(1<<20), s.goroutines, s.fds)
}

func run(cfg config) error {
	if os.Geteuid() != 0 {
		return errors.New("must run as root: the server creates namespaces and cgroups (sudo make soak)")
	}
	if cfg.clients < 1 || cfg.duration <= 0 {
		return errors.New("-clients and -duration must be positive")
	}
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (build it with make build)", err)
	}
	cfg.bin = bin
	dir, err := os.MkdirTemp("", "telehandler-soak-")
	if err != nil {
		return err
	}
	os.Chmod(dir, 0o755) // jobs run as nobody; keep the path traversable
	if cfg.keep {
		fmt.Printf("soak: keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	s := &soak{
		cfg:      cfg,
		dir:      dir,
		parent:   "telehandler-soak-" + hex.EncodeToString(suffix),
		stateDir: filepath.Join(dir, "state"),
		http:     &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
	if s.addr, err = freeAddr(); err != nil {
		return err
	}
	if s.pprof, err = freeAddr(); err != nil {
		return err
	}
	if out, err := exec.Command(bin, "certgen", "--out", filepath.Join(dir, "certs"),
		"--user", "alice", "--user", "bob", "--user", "admin:admin").CombinedOutput(); err != nil {
		return fmt.Errorf("certgen: %v\n%s", err, out)
	}
	defer s.cleanup()

	start := time.Now()
	var figures []string
	for phase := 1; phase <= 2; phase++ {
		if err := s.startServer(); err != nil {
			return err
		}
		before, err := s.warmUp()
		if err != nil {
			return err
		}
		jobsBefore := s.jobs.Load()
		s.load(cfg.duration / 2)
		after, err := s.settle(before, s.jobs.Load()-jobsBefore)
		if err != nil {
			return err
		}
		figures = append(figures, fmt.Sprintf("server %d: %s before, %s after", phase, before, after))
		if phase == 1 {
			s.restartWithWatchers()
		} else {
			s.stopServer(0)
		}
		if logs := s.srv.logs.String(); strings.Contains(logs, "level=ERROR") {
			s.fail("server %d logged errors:\n%s", phase, grepLines(logs, "level=ERROR"))
		}
	}

	fmt.Printf("soak: jobs %d (%d stopped, %d merged, %d removed, %d stopped by a server restart), watches %d, bytes checked %d (%.1f MiB), %d clients, %s | %s\n",
		s.jobs.Load(), s.stopped.Load(), s.merged.Load(), s.removed.Load(), s.spanning.Load(), s.watches.Load(),
		s.bytesChecked.Load(), float64(s.bytesChecked.Load())/(1<<20), cfg.clients,
		time.Since(start).Round(time.Second), strings.Join(figures, " | "))
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) > 0 {
		return fmt.Errorf("%d failures, the first: %s", len(s.failures), s.failures[0])
	}
	fmt.Println("soak: PASS")
	return nil
}

// fail records a failure and prints it at once.
func (s *soak) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, msg)
	if len(s.failures) <= 20 {
		fmt.Fprintf(os.Stderr, "soak: %s: %s\n", time.Now().UTC().Format("15:04:05"), msg)
	}
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startServer starts serve and waits until it serves.
func (s *soak) startServer() error {
	certs := filepath.Join(s.dir, "certs")
	p := &serverProc{ready: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(s.cfg.bin, "serve", "--listen", s.addr, "--state-dir", s.stateDir,
		"--ca", filepath.Join(certs, "ca.crt"), "--cert", filepath.Join(certs, "server.crt"), "--key", filepath.Join(certs, "server.key"),
		"--cgroup-parent", s.parent, "--pprof", s.pprof)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	s.srv = p
	go func() {
		sc := bufio.NewScanner(stderr)
		announced := false
		for sc.Scan() {
			p.logs.Write([]byte(sc.Text() + "\n"))
			if !announced && strings.Contains(sc.Text(), "msg=serving") {
				announced = true
				close(p.ready)
			}
		}
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-p.ready:
		return nil
	case <-p.exited:
		return fmt.Errorf("serve exited: %v\n%s", p.err, p.logs.String())
	case <-time.After(30 * time.Second):
		return fmt.Errorf("serve did not start within 30s\n%s", p.logs.String())
	}
}

// stopServer sends SIGTERM and checks a clean exit, that wantStopped jobs
// were logged as stopped by the shutdown, and that nothing is left.
func (s *soak) stopServer(wantStopped int) {
	p := s.srv
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		s.fail("serve still running 60s after SIGTERM; killing it")
		p.cmd.Process.Kill()
		<-p.exited
	}
	if p.err != nil {
		s.fail("serve after SIGTERM: %v, want exit 0", p.err)
	}
	if n := strings.Count(p.logs.String(), `msg="job stopped by server shutdown"`); n != wantStopped {
		s.fail("the server logged %d jobs stopped by its shutdown, want %d", n, wantStopped)
	}
	if dirs := s.cgroupDirs(); len(dirs) > 0 {
		s.fail("cgroups left after a clean shutdown: %v", dirs)
	}
	if _, err := os.Stat(s.lockFile()); !errors.Is(err, os.ErrNotExist) {
		s.fail("lock file %s after a clean shutdown: %v", s.lockFile(), err)
	}
}

func (s *soak) lockFile() string { return filepath.Join("/run/telehandler", s.parent+".lock") }

// cgroupDirs lists the parent cgroup's directories and any below them, in
// every hierarchy, deepest first.
func (s *soak) cgroupDirs() []string {
	parents, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", s.parent))
	parents = append(parents, filepath.Join("/sys/fs/cgroup", s.parent))
	var dirs []string
	for _, p := range parents {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			continue
		}
		children, _ := filepath.Glob(filepath.Join(p, "*"))
		for _, c := range children {
			if fi, err := os.Stat(c); err == nil && fi.IsDir() {
				dirs = append(dirs, c)
			}
		}
		dirs = append(dirs, p)
	}
	return dirs
}

// cleanup stops a server still running and removes what a failed run left
// of ours: the cgroups under our parent, the lock file.
func (s *soak) cleanup() {
	if s.srv != nil {
		select {
		case <-s.srv.exited:
		default:
			s.srv.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.srv.exited:
			case <-time.After(60 * time.Second):
				s.srv.cmd.Process.Kill()
				<-s.srv.exited
			}
		}
	}
	for _, d := range s.cgroupDirs() {
		syscall.Rmdir(d)
	}
	os.Remove(s.lockFile())
}

// measure collects garbage in the server, then samples its RSS, goroutines
// and open fds.
func (s *soak) measure() (sample, error) {
	if _, err := s.get("/debug/pprof/heap?gc=1"); err != nil {
		return sample{}, err
	}
	out, err := s.get("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return sample{}, err
	}
	var smp sample
	first, _, _ := strings.Cut(out, "\n")
	if _, err := fmt.Sscanf(first, "goroutine profile: total %d", &smp.goroutines); err != nil {
		return sample{}, fmt.Errorf("goroutine profile starts %q: %w", first, err)
	}
	pid := s.srv.cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return sample{}, err
	}
	smp.fds = len(fds)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return sample{}, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return sample{}, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			smp.rss = kb << 10
		}
	}
	return smp, nil
}

// get fetches a pprof page.
func (s *soak) get(path string) (string, error) {
	resp, err := s.http.Get("http://" + s.pprof + path)
	if err != nil {
		return "", fmt.Errorf("pprof: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("pprof %s: %s %v", path, resp.Status, err)
	}
	return string(b), nil
}

// warmUp runs one of each kind of iteration, so that what the server sets
// up once (TLS session state, gRPC and buffer pools, the cgroup parent) is
// in the level before the load, and measures that level.
func (s *soak) warmUp() (sample, error) {
	r := mrand.New(mrand.NewPCG(0, 0))
	ctx := context.Background()
	s.complete(ctx, "alice", r)
	s.merge(ctx, "bob", r)
	s.stop(ctx, "alice", r)
	time.Sleep(2 * time.Second)
	return s.measure()
}

// settle waits, once the load is over, until open fds and goroutines are
// back to their level before it (at most settleLimit), and checks RSS.
func (s *soak) settle(before sample, jobs int64) (sample, error) {
	deadline := time.Now().Add(settleLimit)
	for {
		after, err := s.measure()
		if err != nil {
			return sample{}, err
		}
		back := after.fds <= before.fds && after.goroutines <= before.goroutines
		if back || time.Now().After(deadline) {
			if !back {
				s.fail("open fds or goroutines did not come back within %v: %s before the load, %s after", settleLimit, before, after)
				// debug=2: the runtime's own traceback, with function names
				// even in the stripped binary.
				if out, err := s.get("/debug/pprof/goroutine?debug=2"); err == nil {
					fmt.Fprintf(os.Stderr, "soak: the server's goroutines (first 16 KiB):\n%.16384s\n", out)
				}
			}
			if limit := before.rss + rssMargin + jobs*rssPerJob; after.rss > limit {
				s.fail("server RSS %.1f MiB after the load, more than %.1f MiB (%.1f MiB before + %d MiB + %d jobs × %d KiB)",
					float64(after.rss)/(1<<20), float64(limit)/(1<<20), float64(before.rss)/(1<<20), rssMargin>>20, jobs, rssPerJob>>10)
			}
			return after, nil
		}
		time.Sleep(time.Second)
	}
}

// load runs the clients for d.
func (s *soak) load(d time.Duration) {
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range s.cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.client(i, deadline)
		}()
	}
	wg.Wait()
}

// client is one user's loop of iterations until deadline.
func (s *soak) client(id int, deadline time.Time) {
	user := []string{"alice", "bob"}[id%2]
	r := mrand.New(mrand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	ctx := context.Background()
	for time.Now().Before(deadline) {
		switch k := r.IntN(10); {
		case k < 5:
			s.complete(ctx, user, r)
		case k < 7:
			s.merge(ctx, user, r)
		case k < 9:
			s.stop(ctx, user, r)
		default:
			s.list(ctx, user)
			s.list(ctx, "admin")
		}
	}
}

// result is what one CLI run produced.
type result struct {
	stdout, stderr []byte
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr %q", r.code, clip(r.stdout), clip(r.stderr))
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// cliCmd is `telehandler args...` as user.
func (s *soak) cliCmd(ctx context.Context, user string, args ...string) *exec.Cmd {
	certs := filepath.Join(s.dir, "certs")
	cmd := exec.CommandContext(ctx, s.cfg.bin, args...)
	cmd.Env = append(os.Environ(),
		"TELEHANDLER_ADDR="+s.addr,
		"TELEHANDLER_CA="+filepath.Join(certs, "ca.crt"),
		"TELEHANDLER_CERT="+filepath.Join(certs, user+".crt"),
		"TELEHANDLER_KEY="+filepath.Join(certs, user+".key"))
	return cmd
}

// cli runs `telehandler args...` as user (at most two minutes).
func (s *soak) cli(ctx context.Context, user string, args ...string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := s.cliCmd(ctx, user, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return r, fmt.Errorf("telehandler %s: timed out: %v", strings.Join(args, " "), r)
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		return r, err
	}
	return r, nil
}

// want runs the CLI and records a failure unless it exits with code.
func (s *soak) want(ctx context.Context, code int, user string, args ...string) (result, bool) {
	r, err := s.cli(ctx, user, args...)
	if err != nil {
		s.fail("%s: %v", user, err)
		return r, false
	}
	if r.code != code {
		s.fail("%s: telehandler %s: %v, want exit %d", user, strings.Join(args, " "), r, code)
		return r, false
	}
	return r, true
}

// start starts a job and returns its name ("" after a failure).
func (s *soak) start(ctx context.Context, user string, args ...string) string {
	r, ok := s.want(ctx, 0, user, append([]string{"start", "--cpu", "1", "--"}, args...)...)
	if !ok {
		return ""
	}
	name := strings.TrimSpace(string(r.stdout))
	if !strings.HasPrefix(name, "jobs/") || len(r.stderr) > 0 {
		s.fail("%s: start printed %v", user, r)
		return ""
	}
	s.jobs.Add(1)
	return name
}

// seqOut is what `seq 1 n` prints.
func seqOut(n int) []byte {
	var b []byte
	for i := 1; i <= n; i++ {
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '\n')
	}
	return b
}

// checkStream compares a watched stream with what the job wrote, by
// SHA-256, and counts the bytes.
func (s *soak) checkStream(what string, got, want []byte) bool {
	if sha256.Sum256(got) != sha256.Sum256(want) {
		s.fail("%s: %d bytes (sha256 %x), want %d bytes (sha256 %x): bytes lost, duplicated or out of order",
			what, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
		return false
	}
	s.bytesChecked.Add(int64(len(got)))
	return true
}

// jobStatus is the part of `status -o json` the soak reads.
type jobStatus struct {
	Status struct {
		State           string
		ExitCode        int
		Stopped         bool
		OutputBytes     string
		OutputTruncated bool
	}
}

func (j jobStatus) outputBytes() int {
	n, _ := strconv.Atoi(j.Status.OutputBytes)
	return n
}

// status returns the job's status, or false after a failure.
func (s *soak) status(ctx context.Context, user, name string) (jobStatus, bool) {
	r, ok := s.want(ctx, 0, user, "status", "-o", "json", name)
	if !ok {
		return jobStatus{}, false
	}
	var j jobStatus
	if err := json.Unmarshal(r.stdout, &j); err != nil {
		s.fail("status -o json %s: %v", name, err)
		return jobStatus{}, false
	}
	return j, true
}

// complete runs a job that writes a random amount to stdout and stderr and
// exits 0 or 3, watches it with one or two watchers at once (from the
// first byte, while it runs), and checks both streams, the exit code and
// the status.
func (s *soak) complete(ctx context.Context, user string, r *mrand.Rand) {
	n, m, code := r.IntN(20000)+1, r.IntN(2000), []int{0, 3}[r.IntN(2)]
	if r.IntN(10) == 0 {
		n = 200000 // 1.3 MB: many chunks
	}
	name := s.start(ctx, user, "sh", "-c", fmt.Sprintf("seq 1 %d; seq 1 %d >&2; exit %d", n, m, code))
	if name == "" {
		return
	}
	wantOut, wantErr := seqOut(n), seqOut(m)
	var wg sync.WaitGroup
	for range 1 + r.IntN(2) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, ok := s.want(ctx, code, user, "watch", name)
			s.watches.Add(1)
			if ok {
				s.checkStream(name+" stdout", res.stdout, wantOut)
				s.checkStream(name+" stderr", res.stderr, wantErr)
			}
		}()
	}
	wg.Wait()
	st, ok := s.status(ctx, user, name)
	if !ok {
		return
	}
	wantState := map[int]string{0: "STATE_COMPLETED", 3: "STATE_FAILED"}[code]
	if st.Status.State != wantState || st.Status.ExitCode != code || st.outputBytes() != len(wantOut)+len(wantErr) || st.Status.OutputTruncated {
		s.fail("status of %s: %+v; want %s, exit %d, %d output bytes", name, st.Status, wantState, code, len(wantOut)+len(wantErr))
	}
	if r.IntN(2) == 0 {
		s.remove(ctx, user, name, false)
	}
}

// remove runs rm (--force: of a running job) and checks the job is gone.
func (s *soak) remove(ctx context.Context, user, name string, force bool) {
	args := []string{"rm", name}
	if force {
		args = []string{"rm", "--force", name}
	}
	if res, ok := s.want(ctx, 0, user, args...); ok && strings.TrimSpace(string(res.stdout)) != name {
		s.fail("rm %s printed %v", name, res)
	}
	s.removed.Add(1)
	if res, ok := s.want(ctx, 1, user, "status", name); ok && !strings.Contains(string(res.stderr), "not found") {
		s.fail("status of removed %s: %v, want not found", name, res)
	}
}

// merge runs start --watch --merge and checks the exact interleaving.
func (s *soak) merge(ctx context.Context, user string, r *mrand.Rand) {
	k := r.IntN(2000) + 1
	args := []string{"start", "--watch", "--merge", "--cpu", "1"}
	if r.IntN(2) == 0 {
		args = append(args, "--rm") // removed once its output reached us
		s.removed.Add(1)
	}
	res, ok := s.want(ctx, 0, user, append(args, "--", "sh", "-c",
		fmt.Sprintf(`for i in $(seq %d); do echo o$i; echo e$i >&2; done`, k))...)
	s.jobs.Add(1)
	s.merged.Add(1)
	s.watches.Add(1)
	if !ok {
		return
	}
	var want []byte
	for i := 1; i <= k; i++ {
		want = fmt.Appendf(want, "o%d\ne%d\n", i, i)
	}
	s.checkStream("start --watch --merge stdout", res.stdout, want)
	s.checkStream("start --watch --merge stderr", res.stderr, nil)
}

// bgWatcher is a `telehandler watch` running in the background.
type bgWatcher struct {
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error // Wait's result, set before done is closed
}

func (s *soak) startWatcher(ctx context.Context, user, name string) (*bgWatcher, error) {
	w := &bgWatcher{cmd: s.cliCmd(ctx, user, "watch", name), done: make(chan struct{})}
	w.cmd.Stdout, w.cmd.Stderr = &w.stdout, &w.stderr
	if err := w.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// wait returns the watcher's exit code, or -1 if it did not end in 60s.
func (w *bgWatcher) wait() int {
	select {
	case <-w.done:
		return w.cmd.ProcessState.ExitCode()
	case <-time.After(60 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
		return -1
	}
}

// waitOutput waits until the job logged size bytes (at most a minute).
func (s *soak) waitOutput(ctx context.Context, user, name string, size int) bool {
	deadline := time.Now().Add(time.Minute)
	for {
		st, ok := s.status(ctx, user, name)
		if !ok {
			return false
		}
		if st.outputBytes() >= size {
			return true
		}
		if time.Now().After(deadline) {
			s.fail("%s logged %d bytes in a minute, want %d", name, st.outputBytes(), size)
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop runs a job that writes and then sleeps, watches it, stops it (or
// removes it with rm --force) once its output is logged, and checks that
// the watcher got every byte and exits as for a stopped job.
func (s *soak) stop(ctx context.Context, user string, r *mrand.Rand) {
	n := r.IntN(5000) + 1
	name := s.start(ctx, user, "sh", "-c", fmt.Sprintf("seq 1 %d; exec sleep 1000", n))
	if name == "" {
		return
	}
	want := seqOut(n)
	w, err := s.startWatcher(ctx, user, name)
	if err != nil {
		s.fail("watch %s: %v", name, err)
		return
	}
	s.watches.Add(1)
	if !s.waitOutput(ctx, user, name, len(want)) {
		w.cmd.Process.Kill()
		w.wait()
		return
	}
	if r.IntN(3) == 0 {
		// Once the watcher follows the job (it has every byte so far):
		// removed while watched, it must still end as for a stop.
		for deadline := time.Now().Add(time.Minute); w.stdout.Len() < len(want) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		s.remove(ctx, user, name, true)
	} else if res, ok := s.want(ctx, 0, user, "stop", name); ok && string(res.stdout) != name+": FAILED (killed by SIGKILL, stopped)\n" {
		s.fail("stop %s printed %v", name, res)
	}
	s.stopped.Add(1)
	if code := w.wait(); code != 128+9 || w.stderr.Len() != 0 {
		s.fail("watch of stopped %s: exit %d, stderr %q; want 137 and nothing", name, code, w.stderr.String())
	}
	s.checkStream(name+" stdout (stopped)", []byte(w.stdout.String()), want)
}

// list lists the user's jobs.
func (s *soak) list(ctx context.Context, user string) {
	r, ok := s.want(ctx, 0, user, "list", "-o", "json")
	if !ok {
		return
	}
	var resp struct{ Jobs []json.RawMessage }
	if err := json.Unmarshal(r.stdout, &resp); err != nil {
		s.fail("list -o json as %s: %v", user, err)
	}
}

// restartWithWatchers stops the server with SIGTERM while watchers follow
// running jobs, checks that each watcher got every byte and was told the
// server stopped its job, then starts a new server on the same state
// directory and cgroup parent.
func (s *soak) restartWithWatchers() {
	ctx := context.Background()
	const n = 5000
	want := seqOut(n)
	type spanning struct {
		name string
		w    *bgWatcher
	}
	var jobs []spanning
	for _, user := range []string{"alice", "bob", "alice"} {
		name := s.start(ctx, user, "sh", "-c", fmt.Sprintf("seq 1 %d; exec sleep 1000", n))
		if name == "" {
			continue
		}
		w, err := s.startWatcher(ctx, user, name)
		if err != nil {
			s.fail("watch %s: %v", name, err)
			continue
		}
		s.watches.Add(1)
		jobs = append(jobs, spanning{name, w})
	}
	// Every watcher has the whole output: it follows the live job.
	deadline := time.Now().Add(time.Minute)
	for _, j := range jobs {
		for j.w.stdout.Len() < len(want) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	s.stopServer(len(jobs))
	for _, j := range jobs {
		code := j.w.wait()
		stderr := j.w.stderr.String()
		if code != 128+9 || !strings.Contains(stderr, "stopped by server shutdown") {
			s.fail("watch of %s across the shutdown: exit %d, stderr %q; want 137, stopped by server shutdown", j.name, code, stderr)
		}
		s.checkStream(j.name+" stdout (server shutdown)", []byte(j.w.stdout.String()), want)
		s.spanning.Add(1)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
