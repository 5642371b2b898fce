//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deployment is certgen + serve with users alice, bob and admin (admin).
type deployment struct {
	srv                *server
	alice, bob, admin  env
	bin, dir, certsDir string
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	requireRoot(t)
	if testing.Short() {
		t.Skip("e2e: not in -short mode")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := buildBinary(t, dir)
	certs := filepath.Join(dir, "certs")
	env{t: t, bin: bin}.run("certgen", "--out", certs, "--user", "alice", "--user", "bob", "--user", "admin:admin").want(t, "certgen", 0)
	addr := freeAddr(t)
	d := &deployment{srv: startServer(t, bin, dir, addr), bin: bin, dir: dir, certsDir: certs}
	as := func(user string) env {
		return env{t: t, bin: bin, vars: []string{
			"TELEHANDLER_ADDR=" + addr,
			"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
			"TELEHANDLER_CERT=" + filepath.Join(certs, user+".crt"),
			"TELEHANDLER_KEY=" + filepath.Join(certs, user+".key"),
		}}
	}
	d.alice, d.bob, d.admin = as("alice"), as("bob"), as("admin")
	return d
}

// command is `telehandler args...` with stdin and stdout as given; stderr
// is collected.
func (e env) command(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(os.Environ(), e.vars...)
	cmd.Stdin, cmd.Stdout = stdin, stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// lockedBuffer is a bytes.Buffer that a command writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// exitCode is the exit status of a finished command (0 for a nil error).
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	ee, ok := err.(*exec.ExitError)
	if !ok {
		t.Fatalf("run: %v", err)
	}
	return ee.ExitCode()
}

// countingReader yields n pseudo-random bytes (seeded), hashing and
// counting what was read.
type countingReader struct {
	src  *rand.ChaCha8
	left int64 // -1 = endless
	read atomic.Int64
	hash hash.Hash // nil = not hashed
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.left > 0 && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, _ := r.src.Read(p)
	if r.hash != nil {
		r.hash.Write(p[:n])
	}
	if r.left > 0 {
		r.left -= int64(n)
	}
	r.read.Add(int64(n))
	return n, nil
}

// vmRSS is a process's resident memory in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestInteractiveStdin: start -i streams stdin to the job byte-exact with
// EOF, under flow control, and only the owner or an admin may write to a
// job's input.
func TestInteractiveStdin(t *testing.T) {
	d := newDeployment(t)
	alice, bob, admin := d.alice, d.bob, d.admin

	t.Run("100 MiB of random data through cat, byte-exact, EOF delivered", func(t *testing.T) {
		alice.t = t
		const size = 100 << 20
		in := &countingReader{src: rand.NewChaCha8([32]byte{1}), left: size, hash: sha256.New()}
		out := sha256.New()
		var n countingWriter
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd, stderr := alice.command(ctx, in, io.MultiWriter(out, &n), "start", "-i", "--watch", "--cpu", "1", "--", "cat")
		err := cmd.Run()
		// cat exits 0 only once it read EOF: the exit code says EOF came.
		if code := exitCode(t, err); code != 0 {
			t.Fatalf("start -i --watch -- cat: exit %d, stderr %q", code, stderr)
		}
		sent := hex.EncodeToString(in.hash.Sum(nil))
		got := hex.EncodeToString(out.Sum(nil))
		if in.read.Load() != size || n.n != size || got != sent {
			t.Errorf("sent %d bytes (sha256 %s), cat returned %d (sha256 %s)", in.read.Load(), sent, n.n, got)
		}
	})

	t.Run("echo hi | start -i --watch -- cat; tar through start -i", func(t *testing.T) {
		alice.t = t
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out bytes.Buffer
		cmd, stderr := alice.command(ctx, strings.NewReader("hi\n"), &out, "start", "-i", "--watch", "--", "cat")
		if err := cmd.Run(); err != nil || out.String() != "hi\n" {
			t.Errorf("echo hi | start -i --watch -- cat: %v, stdout %q, stderr %q", err, out.String(), stderr)
		}
		// A job that ends without reading: its exit code, no input error.
		for range 3 {
			out.Reset()
			cmd, stderr = alice.command(ctx, strings.NewReader(strings.Repeat("unread\n", 1000)), &out, "start", "-i", "--watch", "--", "sh", "-c", "exit 3")
			if code := exitCode(t, cmd.Run()); code != 3 || stderr.String() != "" {
				t.Errorf("start -i --watch of a job that exits at once: exit %d, stderr %q; want 3 and nothing", code, stderr)
			}
		}
		// Without -i the job's stdin is /dev/null, and the CLI says so
		// when its own stdin is a pipe with data.
		out.Reset()
		r, w, _ := os.Pipe()
		w.WriteString("lost\n")
		cmd, stderr = alice.command(ctx, r, &out, "start", "--watch", "--", "cat")
		err := cmd.Run()
		r.Close()
		w.Close()
		if err != nil || out.String() != "" || !strings.Contains(stderr.String(), "use start -i") {
			t.Errorf("echo lost | start --watch -- cat: %v, stdout %q, stderr %q; want nothing and a warning", err, out.String(), stderr)
		}

		// start -i without --watch prints the name, feeds stdin to EOF.
		src := filepath.Join(d.dir, "src")
		os.MkdirAll(src, 0o755)
		payload := bytes.Repeat([]byte("tar through telehandler\n"), 50000)
		os.WriteFile(filepath.Join(src, "f"), payload, 0o644)
		tarCmd := exec.Command("tar", "c", "-C", src, "f")
		tarOut, _ := tarCmd.StdoutPipe()
		tarCmd.Start()
		out.Reset()
		cmd, stderr = alice.command(ctx, tarOut, &out, "start", "-i", "--", "sh", "-c", "tar xO f | sha256sum")
		err = cmd.Run()
		tarCmd.Wait()
		if err != nil || !jobNameRE.MatchString(out.String()) {
			t.Fatalf("tar c | start -i -- sh -c 'tar xO f | sha256sum': %v, stdout %q, stderr %q", err, out.String(), stderr)
		}
		w2 := alice.run("watch", strings.TrimSpace(out.String())).want(t, "watch the tar job", 0)
		sum := sha256.Sum256(payload)
		if !strings.HasPrefix(w2.stdout, hex.EncodeToString(sum[:])) {
			t.Errorf("the job's tar extracted %q, want sha256 %x", w2.stdout, sum)
		}
	})

	t.Run("a job that never reads: the CLI blocks, the server's memory stays flat, Ctrl-C detaches", func(t *testing.T) {
		alice.t = t
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		in := &countingReader{src: rand.NewChaCha8([32]byte{2}), left: -1}
		var out lockedBuffer
		cmd, stderr := alice.command(ctx, in, &out, "start", "-i", "--", "sleep", "1000")
		before := vmRSS(t, d.srv.cmd.Process.Pid)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The job runs once start printed its name (StartJob can take
		// seconds in the emulated VM; a Ctrl-C before that is no detach).
		for !strings.HasPrefix(out.String(), "jobs/") {
			if ctx.Err() != nil {
				t.Fatalf("start -i printed no job name: stderr %q", stderr)
			}
			time.Sleep(50 * time.Millisecond) // polling the CLI's output, bounded by ctx
		}
		// Wait until the CLI stops reading: no progress for 2 s.
		last, still := int64(-1), time.Now()
		for time.Since(still) < 2*time.Second {
			time.Sleep(100 * time.Millisecond) // sampling a counter, bounded below
			if n := in.read.Load(); n != last {
				last, still = n, time.Now()
			}
			if in.read.Load() > 512<<20 {
				break
			}
		}
		after := vmRSS(t, d.srv.cmd.Process.Pid)
		// In flight at most: the job's pipe (64 KiB), the server's one
		// message, HTTP/2 windows (grpc-go grows them up to 16 MiB per
		// connection, each way), the CLI's read-ahead of one chunk. 64 MiB
		// is a wide margin over that; without flow control it would be
		// everything the reader can produce (unbounded).
		if read := in.read.Load(); read > 64<<20 {
			t.Errorf("the CLI read %d MiB of stdin for a job that reads nothing; want it blocked (< 64 MiB)", read>>20)
		}
		// The server's RSS may grow by its buffers (above) and garbage
		// not yet collected; 128 MiB is a wide margin, and far below the
		// reader's output without flow control.
		if grew := after - before; grew > 128<<20 {
			t.Errorf("the server's RSS grew by %d MiB (from %d MiB) while the job did not read", grew>>20, before>>20)
		}
		t.Logf("stdin read before blocking: %d KiB; server RSS %d -> %d MiB", in.read.Load()>>10, before>>20, after>>20)
		// Ctrl-C: the CLI stops, telling how to re-attach; the job runs on.
		cmd.Process.Signal(os.Interrupt)
		err := cmd.Wait()
		if code := exitCode(t, err); code != 130 || !strings.Contains(stderr.String(), "stays open") {
			t.Errorf("start -i after Ctrl-C: exit %d, stderr %q; want 130 and how to re-attach", code, stderr)
		}
		name := strings.TrimSpace(out.String())
		if j := alice.status(name); j.Status.State != "STATE_RUNNING" {
			t.Errorf("after the CLI's Ctrl-C the job is %s, want RUNNING", j.Status.State)
		}
		alice.run("stop", name).want(t, "stop", 0)
	})

	t.Run("only the owner or an admin may write to a job's input; one writer at a time", func(t *testing.T) {
		alice.t, bob.t, admin.t = t, t, t
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, w, _ := os.Pipe()
		outR, outW, _ := os.Pipe()
		cmd, _ := alice.command(ctx, r, outW, "start", "-i", "--", "sh", "-c", `while read l; do echo "got $l"; done; echo eof`)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		outW.Close()
		w.WriteString("from-alice\n")
		// The name is printed before the input is streamed.
		line, err := bufio.NewReader(outR).ReadString('\n')
		outR.Close()
		job := strings.TrimSpace(line)
		if err != nil || !strings.HasPrefix(job, "jobs/") {
			t.Fatalf("start -i printed %q (%v)", line, err)
		}
		// Once the job echoed alice's line, her CLI holds the input.
		deadline := time.Now().Add(30 * time.Second)
		for alice.outputBytes(job) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the job did not echo alice's input within 30s")
			}
			time.Sleep(20 * time.Millisecond) // waiting for a condition, bounded
		}

		// bob: the job does not exist for him.
		var bobOut bytes.Buffer
		bc, bobErr := bob.command(ctx, strings.NewReader("rm -rf /\n"), &bobOut, "attach", job)
		if code := exitCode(t, bc.Run()); code != 1 || !strings.Contains(bobErr.String(), "not found") {
			t.Errorf("bob attach alice's job: exit %d, stderr %q; want not found", code, bobErr)
		}
		// The admin is refused while alice's CLI holds the input, and told
		// who holds it.
		ac, adminErr := admin.command(ctx, strings.NewReader("x\n"), io.Discard, "attach", job)
		if code := exitCode(t, ac.Run()); code != 1 || !strings.Contains(adminErr.String(), "held by") || !strings.Contains(adminErr.String(), "alice") {
			t.Errorf("admin attach while alice writes: exit %d, stderr %q; want refused naming alice", code, adminErr)
		}
		// alice's CLI stops (Ctrl-C): the input stays open; the admin
		// attaches, writes, and its EOF closes the job's stdin.
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		r.Close()
		w.Close()
		var adminOut bytes.Buffer
		ac, adminErr = admin.command(ctx, strings.NewReader("from-admin\n"), &adminOut, "attach", job)
		if err := ac.Run(); err != nil || adminOut.String() != "got from-admin\neof\n" {
			t.Errorf("admin attach: %v, stdout %q, stderr %q; want the job's output from now on and exit 0", err, adminOut.String(), adminErr)
		}
		all := alice.run("watch", job).want(t, "watch", 0)
		if all.stdout != "got from-alice\ngot from-admin\neof\n" {
			t.Errorf("the job's whole output is %q", all.stdout)
		}
		// bob's bytes never reached it; nor can anyone attach to a job
		// without -i.
		plain := alice.start("sleep", "100")
		r2 := alice.run("attach", plain).want(t, "attach to a job without -i", 1)
		if !strings.Contains(r2.stderr, "without -i") {
			t.Errorf("attach to a job without -i: %v", r2)
		}
		alice.run("stop", plain)
	})
}

// outputBytes is the job's output size as status -o json tells it.
func (e env) outputBytes(name string) int64 {
	e.t.Helper()
	r := e.run("status", "-o", "json", name).want(e.t, "status -o json "+name, 0)
	var j struct{ Status struct{ OutputBytes string } }
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		e.t.Fatalf("status -o json: %v", err)
	}
	n, _ := strconv.ParseInt(j.Status.OutputBytes, 10, 64)
	return n
}

// countingWriter counts what is written.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}
