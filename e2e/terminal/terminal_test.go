//go:build linux

// Package terminal drives `telehandler start -it` and `attach` through a
// real terminal: Debian's tmux runs the CLI in a pane, types into it
// (send-keys) and reads the screen (capture-pane). scripts/test-deps.sh
// installs tmux (make test runs it). Not run inside the cgroup v2 VM
// (scripts/test-cgroupv2.sh leaves this package out): the guest has no
// tmux, and nothing here depends on the cgroup layout.
package terminal

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireRootAndTmux skips without root or tmux, except under CI, where
// both must be there (CI runs as root, and make test installs tmux).
func requireRootAndTmux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the server runs on Linux only")
	}
	if testing.Short() {
		t.Skip("e2e: not in -short mode")
	}
	_, err := exec.LookPath("tmux")
	switch {
	case os.Geteuid() == 0 && err == nil:
		return
	case os.Getenv("CI") != "":
		t.Fatalf("must run as root with tmux under CI (root: %v, tmux: %v); make test installs tmux with scripts/test-deps.sh", os.Geteuid() == 0, err)
	case err != nil:
		t.Skip("needs tmux (bash scripts/test-deps.sh installs it)")
	}
	t.Skip("needs root (the server creates namespaces and cgroups); CI runs as root")
}

// serve builds telehandler, makes certificates for alice and admin, and runs
// the server until the test ends. It returns the binary and the
// environment of alice's CLI.
func serve(t *testing.T) (bin string, env []string) {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin = filepath.Join(dir, "telehandler")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	build := exec.Command(goBin, "build", "-o", bin, "github.com/drrev/telehandler")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(bin, "certgen", "--out", certs, "--user", "alice", "--user", "admin:admin").CombinedOutput(); err != nil {
		t.Fatalf("certgen: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	parent := "telehandler-test-" + hex.EncodeToString(suffix)
	srv := exec.Command(bin, "serve", "--listen", addr, "--state-dir", filepath.Join(dir, "state"),
		"--ca", filepath.Join(certs, "ca.crt"), "--cert", filepath.Join(certs, "server.crt"), "--key", filepath.Join(certs, "server.key"),
		"--cgroup-parent", parent)
	stderr, _ := srv.StderrPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var logs bytes.Buffer
	ready, exited := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "msg=serving") {
				once.Do(func() { close(ready) })
			}
		}
		srv.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Error("serve still running 30s after SIGTERM; killing it")
			srv.Process.Kill()
			<-exited
		}
		removeCgroupParent(t, parent)
		// The server's lock file of its parent (serve's lockDir); no
		// error when a server that cleans up after itself removed it.
		os.Remove(filepath.Join("/run/telehandler", parent+".lock"))
		if t.Failed() {
			mu.Lock()
			t.Logf("server log:\n%s", logs.String())
			mu.Unlock()
		}
	})
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("serve exited:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start within 30s")
	}
	user := func(name string) []string {
		return []string{
			"TELEHANDLER_ADDR=" + addr,
			"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
			"TELEHANDLER_CERT=" + filepath.Join(certs, name+".crt"),
			"TELEHANDLER_KEY=" + filepath.Join(certs, name+".key"),
			// TLS sessions in the test's directory, not in /root/.cache.
			"XDG_CACHE_HOME=" + filepath.Join(filepath.Dir(certs), "cache"),
		}
	}
	return bin, user("alice")
}

// removeCgroupParent removes the server's (empty by then) cgroup parent in
// every hierarchy.
func removeCgroupParent(t *testing.T, parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
	seen := map[string]bool{}
	for _, d := range dirs {
		real, err := filepath.EvalSymlinks(d)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		if err := syscall.Rmdir(real); err != nil {
			t.Errorf("remove cgroup parent %s: %v", real, err)
		}
	}
}

// tmux is a tmux server of our own (its own socket, no config file).
type tmux struct {
	t    *testing.T
	sock string
	env  []string
}

func (m *tmux) run(args ...string) string {
	m.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-L", m.sock, "-f", "/dev/null"}, args...)...)
	cmd.Env = m.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		m.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// line types text and Enter into pane target.
func (m *tmux) line(target, text string) {
	m.t.Helper()
	m.run("send-keys", "-t", target, "-l", text)
	m.run("send-keys", "-t", target, "Enter")
}

// screen is what pane target shows.
func (m *tmux) screen(target string) string {
	m.t.Helper()
	return m.run("capture-pane", "-p", "-J", "-t", target)
}

// waitFor waits until pane target shows a match of re and returns the
// first match's groups; it fails after 30 s, showing the screen.
func (m *tmux) waitFor(target, re string) []string {
	m.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := m.screen(target)
		if g := rx.FindStringSubmatch(s); g != nil {
			return g
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("pane %s never showed %q; it shows:\n%s", target, re, s)
		}
		time.Sleep(50 * time.Millisecond) // polling the screen for a condition, bounded
	}
}

// waitProc waits until a process runs argv (the host sees the job's
// processes), failing after 30 s.
func waitProc(t *testing.T, argv ...string) {
	t.Helper()
	want := strings.Join(argv, "\x00") + "\x00"
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && string(b) == want {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // polling for a condition, bounded
	}
	t.Fatalf("no process %q within 30s", argv)
}

// children are the pids of pid's children.
func children(t *testing.T, pid string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%s/task/%s/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// TestTerminal: start -it -- sh in a real terminal: commands typed and
// their output on the screen, the initial size and a resize seen by stty,
// Ctrl-C, Ctrl-Z and Ctrl-D reaching the job's foreground process, detach
// (Ctrl-P Ctrl-Q) leaving the job running and the terminal restored,
// attach from another CLI (a third one is refused), the job's exit code as
// the CLI's, and the terminal restored after SIGTERM to the CLI.
func TestTerminal(t *testing.T) {
	requireRootAndTmux(t)
	bin, cliEnv := serve(t)
	suffix := make([]byte, 4)
	rand.Read(suffix)
	m := &tmux{t: t, sock: "telehandler-test-" + hex.EncodeToString(suffix),
		env: append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/root", "TERM=xterm", "TH=" + bin}, cliEnv...)}
	m.run("new-session", "-d", "-s", "main", "-x", "100", "-y", "30", "/bin/sh")
	t.Cleanup(func() {
		exec.Command("tmux", "-L", m.sock, "-f", "/dev/null", "kill-server").Run()
	})
	const pane = "main:0"
	m.line(pane, `PS1='host> '; clear`)
	m.waitFor(pane, `(?m)^host> $`)

	m.line(pane, `$TH start -it -- sh`)
	m.line(pane, `echo hello-$((6*7)) size-$(stty size) $(tty)`)
	m.waitFor(pane, `hello-42 size-30 100 /dev/pts/0`)

	m.run("resize-window", "-t", "main", "-x", "120", "-y", "40")
	m.line(pane, `echo resized-$(stty size | tr ' ' x)`)
	m.waitFor(pane, `resized-40x120`)

	// Ctrl-C ends the job's sleep, not the CLI.
	m.line(pane, `sleep 101`)
	waitProc(t, "sleep", "101") // a ^C before would only end the line
	m.run("send-keys", "-t", pane, "C-c")
	m.line(pane, `echo after-int-$?`)
	m.waitFor(pane, `after-int-130`)
	// Ctrl-D is EOF for the job's cat.
	m.line(pane, `cat; echo cat-done-$?`)
	m.line(pane, `typed`)
	m.run("send-keys", "-t", pane, "C-d")
	m.waitFor(pane, `cat-done-0`)
	// Ctrl-Z stops the job's foreground process (the job's shell has job
	// control on its own terminal).
	m.line(pane, `sleep 202`)
	waitProc(t, "sleep", "202")
	m.run("send-keys", "-t", pane, "C-z")
	m.waitFor(pane, `(?i)stopped`)
	m.line(pane, `kill -9 %1; echo killed-$((1+1))`)
	m.waitFor(pane, `killed-2`)

	// Detach: the job keeps running, our terminal is cooked again.
	m.run("send-keys", "-t", pane, "C-p", "C-q")
	job := m.waitFor(pane, `detached from (jobs/[a-z0-9]{26}), which keeps running`)[1]
	m.line(pane, `clear; echo cooked-$(stty -a | grep -c -- -icanon)`)
	m.waitFor(pane, `cooked-0`)

	// Attach again; a second attach (the admin's, in another window) is
	// refused and told who holds the input.
	m.line(pane, `$TH attach `+job)
	m.line(pane, `echo back-$((2+3))`)
	m.waitFor(pane, `back-5`)
	m.run("new-window", "-d", "-t", "main:1", "/bin/sh")
	m.line("main:1", fmt.Sprintf(`TELEHANDLER_CERT=${TELEHANDLER_CERT%%alice.crt}admin.crt TELEHANDLER_KEY=${TELEHANDLER_KEY%%alice.key}admin.key $TH attach %s; echo second-$?`, job))
	m.waitFor("main:1", `held by another writer \(alice\)(.|\n)*second-1`)

	// The job's exit code is the CLI's.
	m.line(pane, `exit 7`)
	m.waitFor(pane, `(?m)^host> $`) // typed earlier, the line would go to the job
	m.line(pane, `echo cli-exit-$?`)
	m.waitFor(pane, `cli-exit-7`)

	// The terminal's output is the job's log: watch replays it, as
	// stdout, and exits with the job's code.
	watch := exec.Command(bin, "watch", job)
	watch.Env = m.env
	var wout, werr bytes.Buffer
	watch.Stdout, watch.Stderr = &wout, &werr
	err := watch.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || !strings.Contains(wout.String(), "hello-42 size-30 100 /dev/pts/0\r\n") || werr.Len() != 0 {
		t.Errorf("watch of the terminal job: %v, stdout %q, stderr %q; want exit 7 and the session replayed on stdout", err, wout.String(), werr.String())
	}

	// A terminal job that ends at once: its exit code.
	m.line(pane, `$TH start -it -- sh -c 'exit 4'; echo quick-exit-$?`)
	m.waitFor(pane, `quick-exit-4`)

	// SIGTERM to the CLI restores the terminal.
	m.line(pane, `$TH start -it -- sh`)
	m.line(pane, `echo inside-$((3+4))`)
	m.waitFor(pane, `inside-7`)
	hostSh := strings.TrimSpace(m.run("display-message", "-p", "-t", pane, "#{pane_pid}"))
	cli := children(t, hostSh)
	if len(cli) != 1 {
		t.Fatalf("the pane's shell has children %v, want the CLI alone", cli)
	}
	var pid int
	fmt.Sscan(cli[0], &pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	m.waitFor(pane, `(?m)^host> $`)
	m.line(pane, `clear; echo cooked-after-term-$(stty -a | grep -c -- -icanon)`)
	m.waitFor(pane, `cooked-after-term-0`)
}
