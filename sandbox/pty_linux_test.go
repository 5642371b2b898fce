package sandbox

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readTTY reads the master until EIO (every process of the job closed the
// terminal) or the deadline.
func readTTY(t *testing.T, master *os.File) string {
	t.Helper()
	_ = master.SetReadDeadline(time.Now().Add(jobTimeout))
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if errors.Is(err, syscall.EIO) || errors.Is(err, io.EOF) {
			return out.String()
		}
		if err != nil {
			t.Fatalf("read tty: %v (so far %q)", err, out.String())
		}
	}
}

// controllingTTY is tty_nr of this process (/proc/self/stat, field 7).
func controllingTTY(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return fields[4] // state ppid pgrp session tty_nr
}

// TestStdinPipe: StartConfig.Stdin is the command's stdin, byte for byte,
// EOF included.
func TestStdinPipe(t *testing.T) {
	ts := newTestSandbox(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ts.Start(Spec{Path: "cat"}, StartConfig{Name: jobName(t), Limits: DefaultLimits(), Stdin: r, Stdout: outW, Stderr: outW})
	r.Close()
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	want := strings.Repeat("stdin\x00\xff\n", 10000)
	go func() {
		io.WriteString(w, want)
		w.Close()
	}()
	got, err := io.ReadAll(outR)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("cat returned %d bytes, want the %d written", len(got), len(want))
	}
	if st := p.Wait(); st.ExitCode != 0 {
		t.Errorf("cat ended %+v, want exit 0 (it saw EOF)", st)
	}
}

// TestTTY: with Spec.TTY the command runs on a terminal of a devpts
// instance of its own, as its controlling terminal, sized as asked, owned by
// the job's user, with TERM set; the parent holds the master.
func TestTTY(t *testing.T) {
	ts := newTestSandbox(t)
	nobody := uint32(65534)
	spec := sh(`tty; stty size; echo "TERM=$TERM"; ls /dev/pts; stat -c 'owner=%u' "$(tty)"; ` +
		`grep -q " /dev/pts .*max=64" /proc/self/mountinfo && echo max-ok; read line; echo "got:$line"; exit 7`)
	spec.UID, spec.GID = &nobody, &nobody
	spec.TTY, spec.TTYRows, spec.TTYCols = true, 33, 101
	ctty := controllingTTY(t)
	p, err := ts.Start(spec, StartConfig{Name: jobName(t), Limits: DefaultLimits()})
	if err != nil {
		t.Fatal(err)
	}
	// Holding the master does not make it our controlling terminal.
	if got := controllingTTY(t); got != ctty {
		t.Errorf("the parent's controlling terminal changed from %s to %s", ctty, got)
	}
	t.Cleanup(func() { p.Kill() })
	master := p.TTY()
	if master == nil {
		t.Fatal("no TTY for a Spec.TTY job")
	}
	defer master.Close()
	if _, err := master.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	out := readTTY(t, master)
	for _, want := range []string{"/dev/pts/0\r\n", "33 101\r\n", "TERM=xterm\r\n", "owner=65534\r\n", "max-ok\r\n", "got:hello\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output %q lacks %q", out, want)
		}
	}
	// A fresh instance: the job sees its own terminal only (and ptmx).
	if strings.Contains(out, "\r\n1\r\n") {
		t.Errorf("the job sees other terminals in /dev/pts: %q", out)
	}
	if st := p.Wait(); st.ExitCode != 7 {
		t.Errorf("job ended %+v, want exit 7", st)
	}
}

// TestTTYResizeAndSignals: SetWindowSize reaches the job (SIGWINCH and the
// new size), and ^C typed into the terminal interrupts the job's
// foreground process, not the server.
func TestTTYResizeAndSignals(t *testing.T) {
	ts := newTestSandbox(t)
	spec := sh(`trap 'stty size; echo winched' WINCH; echo ready; ` +
		`i=0; while [ $i -lt 100 ]; do read line; [ "$line" = go ] && break; i=$((i+1)); done; ` +
		`echo sleeping; sleep 100; echo "sleep ended $?"; exit 5`)
	spec.TTY = true
	p, err := ts.Start(spec, StartConfig{Name: jobName(t), Limits: DefaultLimits()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill() })
	master := p.TTY()
	defer master.Close()
	_ = master.SetReadDeadline(time.Now().Add(jobTimeout))
	var out bytes.Buffer
	waitFor := func(s string) {
		t.Helper()
		buf := make([]byte, 1024)
		for !strings.Contains(out.String(), s) {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				select {
				case <-p.Done():
					t.Fatalf("waiting for %q: %v; output %q; the job ended %+v", s, err, out.String(), p.Wait())
				case <-time.After(time.Second):
				}
				t.Fatalf("waiting for %q: %v; output %q", s, err, out.String())
			}
		}
	}
	waitFor("ready")
	if err := SetWindowSize(master, 40, 120); err != nil {
		t.Fatal(err)
	}
	master.Write([]byte("\n")) // the trap runs once read returns
	waitFor("winched")
	if !strings.Contains(out.String(), "40 120") {
		t.Errorf("after the resize the job saw %q, want 40 120", out.String())
	}
	master.Write([]byte("go\n"))
	waitFor("sleeping")
	// (The loop reads again whatever read returns: the WINCH trap may
	// interrupt a read, which then fails; 100 reads bound it should the
	// terminal end.)
	// ^C: SIGINT to the foreground process group. Until sleep runs, that
	// is sh alone, PID 1 of the job, which ignores it (no handler), so ^C
	// is typed again every 100 ms until the job ends: the first one that
	// finds sleep in the foreground ends it. (A ^C typed while sh still
	// read its input would flush "go" from the line and leave the loop
	// waiting, hence "sleeping" first.)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			master.Write([]byte{3})
			select {
			case <-stop:
				return
			case <-p.Done():
				return
			case <-tick.C:
			}
		}
	}()
	rest := readTTY(t, master)
	st := p.Wait()
	// sleep, in the terminal's foreground process group, dies of SIGINT;
	// sh, PID 1 of the job, has no handler and is not killed: it goes on
	// (exit 5), or, as dash does, exits 130 itself for a child that died
	// of SIGINT. Without the ^C sleep would run 100 s.
	if !(st.ExitCode == 5 && strings.Contains(rest, "sleep ended 130")) && st.ExitCode != 130 {
		t.Errorf("after ^C the job ended %+v with output %q, want exit 5 after sleep ended 130, or 130", st, rest)
	}
}

// TestSetWindowSizeClosed: a terminal closed under a resize (the job just
// ended) is os.ErrClosed, which the input path turns into "input closed",
// not an Internal error.
func TestSetWindowSizeClosed(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := SetWindowSize(f, 24, 80); !errors.Is(err, os.ErrClosed) {
		t.Errorf("SetWindowSize of a closed file: %v, want os.ErrClosed", err)
	}
}
