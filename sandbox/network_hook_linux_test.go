package sandbox

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// TestNetworkHook: StartConfig.Network runs with the waiting shim's pid
// (its own network namespace, not the server's) before the command; the
// job's /etc/resolv.conf is the attachment's file, read-only; Release runs
// once when the job ends, and once when the start fails after the
// attachment. The hook here touches no network (the real one is
// package network's, tested in the VM), so this runs on any root host.
func TestNetworkHook(t *testing.T) {
	ts := newTestSandbox(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	resolv := filepath.Join(dir, "resolv.conf")
	content := "# " + jobName(t) + "\nnameserver 203.0.113.53\n" // marked: this test's own
	if err := os.WriteFile(resolv, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var released, attached atomic.Int32
	var shimNS atomic.Value
	hook := func(pid int) (NetworkAttachment, error) {
		attached.Add(1)
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
		if err != nil {
			return NetworkAttachment{}, err
		}
		shimNS.Store(ns)
		return NetworkAttachment{ResolvConf: resolv, Release: func() error { released.Add(1); return nil }}, nil
	}
	start := func(spec Spec) (*testJob, error) {
		return ts.startWith(t, spec, StartConfig{Name: jobName(t), Limits: DefaultLimits(), Network: hook})
	}

	j, err := start(sh("cat /etc/resolv.conf; if (echo x >/etc/resolv.conf) 2>/dev/null; then echo WRITABLE; fi"))
	if err != nil {
		t.Fatal(err)
	}
	if ns := shimNS.Load(); ns == nil || ns == hostNS {
		t.Errorf("the hook saw network namespace %v, the server's is %s: want the job's own", ns, hostNS)
	}
	state, out := j.wait(t)
	if state.ExitCode != 0 || out != content {
		t.Errorf("job: exit %d, output %q; want the attachment's resolv.conf, read-only", state.ExitCode, out)
	}
	if got, _ := os.ReadFile("/etc/resolv.conf"); string(got) == content {
		t.Error("the host's /etc/resolv.conf changed")
	}
	if n := released.Load(); n != 1 {
		t.Errorf("Release ran %d times after the job ended, want 1", n)
	}

	// A start that fails after the attachment releases it.
	if _, err := start(Spec{Path: "/no/such/command"}); !errors.Is(err, ErrExec) {
		t.Fatalf("start of a missing command: %v, want ErrExec", err)
	}
	if n := released.Load(); n != 2 {
		t.Errorf("Release ran %d times in all after a failed start, want 2", n)
	}
	// A failing hook fails the start, and nothing of the job is left.
	_, err = ts.startWith(t, sh("true"), StartConfig{Name: jobName(t), Limits: DefaultLimits(),
		Network: func(int) (NetworkAttachment, error) { return NetworkAttachment{}, errors.New("no network today") }})
	if !errors.Is(err, ErrShim) || !strings.Contains(err.Error(), "no network today") {
		t.Errorf("start with a failing hook: %v, want ErrShim with the hook's error", err)
	}
	if n := attached.Load(); n != 2 {
		t.Errorf("the hook ran %d times, want 2", n)
	}
}

// startWith is testSandbox.start with a StartConfig of the test's (its
// Stdout and Stderr are set here).
func (ts *testSandbox) startWith(t *testing.T, spec Spec, cfg StartConfig) (*testJob, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cfg.Stdout, cfg.Stderr = w, w
	p, err := ts.Start(spec, cfg)
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	j := &testJob{Process: p, name: cfg.Name, outDone: make(chan struct{})}
	go func() {
		var buf bytes.Buffer
		_, _ = io.Copy(&buf, r)
		r.Close()
		j.out = buf.String()
		close(j.outDone)
	}()
	t.Cleanup(func() {
		p.Kill()
		<-p.Done()
	})
	return j, nil
}
