package sandbox

import (
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tenant isolation (issue 8): every attack of one job on another, or of a
// job on the host, that worked before each job got a view, a uid and a
// keyring of its own. Each test fails on a sandbox without them.

// isolationHelper runs the helper programs of these tests (the test binary
// run as a job's command, see helperEnv); false for an unknown name.
func isolationHelper(name string) (int, bool) {
	args := os.Args[1:]
	switch name {
	case "listen": // listen on the unix socket args[0] until killed
		ln, err := net.Listen("unix", args[0])
		if err != nil {
			fmt.Println("listen:", err)
			return 1, true
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1, true
			}
			c.Write([]byte("secret from the other job\n"))
			c.Close()
		}
	case "dial": // connect to the unix socket args[0]
		c, err := net.Dial("unix", args[0])
		if err != nil {
			fmt.Println("dial failed:", err)
			return 0, true
		}
		c.Close()
		fmt.Println("connected")
		return 0, true
	case "addkey": // add key args[0] to the session and user keyrings
		for _, ring := range []int{unix.KEY_SPEC_SESSION_KEYRING, unix.KEY_SPEC_USER_KEYRING} {
			id, err := unix.AddKey("user", args[0], []byte("secret"), ring)
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSYS) {
				fmt.Println("keyrings blocked:", err)
				return 0, true
			}
			if err != nil {
				fmt.Println("add_key:", err)
				return 1, true
			}
			fmt.Println("added", id)
		}
		return 0, true
	case "findkey": // look key args[0] up in the session and user keyrings
		for _, ring := range []int{unix.KEY_SPEC_SESSION_KEYRING, unix.KEY_SPEC_USER_KEYRING} {
			if id, err := unix.KeyctlSearch(ring, "user", args[0], 0); err == nil {
				fmt.Println("found", id)
			}
		}
		fmt.Println("searched")
		return 0, true
	case "adjtimex": // set the clock's tick to the value it has
		var tx unix.Timex
		if _, err := unix.Adjtimex(&tx); err != nil {
			fmt.Println("adjtimex refused (even reading, seccomp):", err)
			return 0, true
		}
		tx.Modes = unix.ADJ_TICK
		if _, err := unix.Adjtimex(&tx); err != nil {
			fmt.Println("adjtimex refused:", err)
			return 0, true
		}
		fmt.Println("adjtimex set the clock")
		return 0, true
	case "sysctl": // open a host-wide sysctl for writing (nothing is written)
		f, err := os.OpenFile("/proc/sys/kernel/core_pattern", os.O_WRONLY, 0)
		if err != nil {
			fmt.Println("sysctl refused:", err)
			return 0, true
		}
		f.Close()
		fmt.Println("sysctl opened for writing")
		return 0, true
	case "opendev": // open each of args, device nodes made by the host
		for _, p := range args {
			f, err := os.Open(p)
			if err != nil {
				fmt.Printf("open %s refused: %v\n", p, err)
				continue
			}
			f.Close()
			fmt.Printf("opened the block device %s\n", p)
		}
		return 0, true
	case "mknod": // make a loop block device node and open it, in each of args
		for _, dir := range args {
			p := filepath.Join(dir, "telehandler-test-blk")
			if err := unix.Mknod(p, unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))); err != nil {
				fmt.Printf("mknod %s refused: %v\n", dir, err)
				continue
			}
			f, err := os.Open(p)
			os.Remove(p)
			if err != nil {
				fmt.Printf("open %s refused: %v\n", dir, err)
				continue
			}
			f.Close()
			fmt.Printf("opened a block device in %s\n", dir)
		}
		return 0, true
	}
	return 0, false
}

// dockerCaps is jobCapabilities as /proc/PID/status shows a set of them:
// Docker's default set.
const dockerCaps = "00000000a80425fb"

// nobody is the fixed uid tests run jobs as.
var nobody = uint32(65534)

// asNobody, asRoot and asDynamic are spec with the job's credentials.
func asNobody(s Spec) Spec { s.UID, s.GID = &nobody, &nobody; return s }
func asRoot(s Spec) Spec   { return s }
func asDynamic(s Spec) Spec {
	s.DynamicUser = true
	return s
}

// helper is a Spec running this test binary as helper program name.
func helper(t *testing.T, name string, args ...string) Spec {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{Path: exe, Args: args, Env: []string{helperEnv + "=" + name}}
}

func mustExit0(t *testing.T, j *testJob) string {
	t.Helper()
	state, out := j.wait(t)
	if state.ExitCode != 0 {
		t.Fatalf("job %s: %+v, output %q", j.name, state, out)
	}
	return out
}

// TestPrivateWritableDirs: alice's job leaves a file in each shared place
// of a host (/tmp, /var/tmp, /dev/shm, /run/lock); bob's job, later or at
// the same time, does not see it. Each job's are its own tmpfs.
func TestPrivateWritableDirs(t *testing.T) {
	ts := newTestSandbox(t)
	dirs := []string{"/tmp", "/var/tmp", "/dev/shm", "/run/lock"}
	var write, read []string
	for _, d := range dirs {
		write = append(write, fmt.Sprintf(`if [ -d %[1]s ]; then echo alice > %[1]s/secret && chmod 600 %[1]s/secret && echo wrote %[1]s; fi`, d))
		read = append(read, fmt.Sprintf(`cat %[1]s/secret 2>/dev/null && echo read %[1]s; ls %[1]s/secret 2>/dev/null && echo saw %[1]s; echo bob > %[1]s/secret 2>/dev/null; true`, d))
	}
	for _, as := range []struct {
		name string
		cred func(Spec) Spec
	}{{"dynamic users", asDynamic}, {"one fixed user", asNobody}} {
		t.Run(as.name, func(t *testing.T) {
			// alice's job stays running while bob's looks, then a second
			// alice job looks for what bob might have planted.
			alice := ts.startJob(t, Limits{}, as.cred(sh(strings.Join(write, "; ")+"; echo ready; sleep 1000")))
			bob := ts.startJob(t, Limits{}, as.cred(sh(strings.Join(read, "; "))))
			out := mustExit0(t, bob)
			if strings.Contains(out, "read") || strings.Contains(out, "saw") {
				t.Errorf("bob's job saw alice's files: %q", out)
			}
			alice2 := ts.startJob(t, Limits{}, as.cred(sh(strings.Join(read, "; "))))
			if out := mustExit0(t, alice2); strings.Contains(out, "read") || strings.Contains(out, "saw") {
				t.Errorf("a later job saw what an earlier one left: %q", out)
			}
			if err := alice.Kill(); err != nil {
				t.Fatal(err)
			}
			_, out = alice.wait(t)
			for _, d := range dirs {
				if !strings.Contains(out, "wrote "+d) {
					t.Logf("%s is not in the job's view (%q)", d, out)
					if d == "/tmp" || d == "/dev/shm" || d == "/run/lock" && isDir("/run") {
						t.Errorf("alice's job could not write %s: %q", d, out)
					}
				}
			}
		})
	}
}

// TestUnixSocketBetweenJobs: a socket one job listens on in /tmp is not
// reachable by another job (abstract sockets are per network namespace).
func TestUnixSocketBetweenJobs(t *testing.T) {
	ts := newTestSandbox(t)
	alice := ts.startJob(t, Limits{}, asDynamic(helper(t, "listen", "/tmp/telehandler-test.sock")))
	// The host sees alice's /tmp through her root: wait for the socket.
	waitForFile(t, fmt.Sprintf("/proc/%d/root/tmp/telehandler-test.sock", alice.Pid()))
	bob := ts.startJob(t, Limits{}, asDynamic(helper(t, "dial", "/tmp/telehandler-test.sock")))
	if out := mustExit0(t, bob); !strings.Contains(out, "dial failed") {
		t.Errorf("bob's job reached alice's socket: %q", out)
	}
}

// TestKeyringsArePrivate: a key a job adds to its session or user keyring
// is not found by another job, nor by a later job that gets the same uid.
func TestKeyringsArePrivate(t *testing.T) {
	ts := newTestSandbox(t)
	key := "telehandler-test-" + randHex(t)
	// The seccomp filter refuses the keyring calls altogether: without it
	// (serve --seccomp=off) the keyrings must still be the job's own.
	cfg := testConfig(t, ts.rec)
	cfg.DisableSeccomp = true
	ts.setConfig(t, cfg)
	// A range of one uid: every job gets the same one, one at a time.
	b := make([]byte, 2)
	rand.Read(b)
	cfg.UIDs = UIDRange{First: DefaultUIDRange.First + uint32(b[0])<<8 + uint32(b[1]), Count: 1}
	sb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	one := &testSandbox{Sandbox: sb, parent: ts.parent, rec: ts.rec}

	for _, tc := range []struct {
		name       string
		ts         *testSandbox
		cred       func(Spec) Spec
		concurrent bool
	}{
		{"dynamic users at once", ts, asDynamic, true},
		{"one fixed user, session keyring", ts, asNobody, true},
		{"the same dynamic uid later", one, asDynamic, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alice := tc.ts.startJob(t, Limits{}, tc.cred(helper(t, "addkey", key)))
			out := mustExit0(t, alice)
			if !strings.Contains(out, "added") {
				t.Fatalf("alice's job could not add her keys: %q", out)
			}
			spec := tc.cred(helper(t, "findkey", key))
			if tc.concurrent {
				// While alice's keys exist (a fixed user shares @u: only
				// the session keyring is checked then).
				hold := tc.ts.startJob(t, Limits{}, tc.cred(sh("sleep 1000")))
				defer hold.Kill()
			}
			bob := tc.ts.startJob(t, Limits{}, spec)
			out = mustExit0(t, bob)
			if !strings.Contains(out, "searched") {
				t.Fatalf("findkey: %q", out)
			}
			found := strings.Count(out, "found")
			if tc.cred(Spec{}).UID != nil && found > 1 || tc.cred(Spec{}).UID == nil && found > 0 {
				t.Errorf("another job found alice's key: %q", out)
			}
		})
	}
}

// TestTmpfsPagesDieWithTheJob: what a job writes to its tmpfs is charged to
// it and freed with it; nothing lands on the parent cgroup once it ended.
func TestTmpfsPagesDieWithTheJob(t *testing.T) {
	ts := newTestSandbox(t)
	const size = 64 << 20
	j := ts.startJob(t, Limits{MemoryBytes: 256 << 20}, asNobody(sh(fmt.Sprintf(
		`dd if=/dev/zero of=/dev/shm/x bs=1048576 count=%d 2>&1 && dd if=/dev/zero of=/tmp/x bs=1048576 count=%d 2>&1`, size>>20, size>>20))))
	mustExit0(t, j)
	var stat, key string
	for _, d := range ts.rec.parentDirs() {
		if ts.Cgroups().Version() == 2 {
			stat, key = filepath.Join(d, "memory.stat"), "shmem"
		} else if strings.Contains(d, "/memory/") || filepath.Base(filepath.Dir(d)) == "memory" {
			stat, key = filepath.Join(d, "memory.stat"), "total_shmem"
		}
	}
	if stat == "" {
		t.Fatalf("no memory parent among %v", ts.rec.parentDirs())
	}
	// The namespace's mounts go a little after the job: poll with a deadline.
	deadline := time.Now().Add(jobTimeout)
	for {
		v := statValue(t, stat, key)
		if v < 8<<20 {
			t.Logf("parent %s %s: %d bytes after the job ended", stat, key, v)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("parent %s still has %s %d bytes %v after the job ended: its tmpfs pages outlived it", stat, key, v, jobTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statValue reads key's value from a memory.stat file.
func statValue(t *testing.T, file, key string) uint64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in %s", key, file)
	return 0
}

// TestTmpfsIsSizeLimited: a write larger than Config.TmpfsSize fails with
// ENOSPC, and the job's writable places are tmpfs mounts, never the host's
// disk.
func TestTmpfsIsSizeLimited(t *testing.T) {
	ts := newTestSandbox(t)
	cfg := testConfig(t, ts.rec)
	cfg.TmpfsSize = 4 << 20
	ts.setConfig(t, cfg)
	j := ts.startJob(t, Limits{}, asDynamic(sh(`dd if=/dev/zero of=/tmp/big bs=1048576 count=8 2>&1; echo "dd exit $?"; `+
		`awk '{ print "mount", $5, $(NF-2) }' /proc/self/mountinfo`)))
	out := mustExit0(t, j)
	if !strings.Contains(out, "No space left on device") || strings.Contains(out, "dd exit 0") {
		t.Errorf("8 MiB into a 4 MiB /tmp: %q", out)
	}
	mounts := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "mount" {
			mounts[f[1]] = f[2] // the last mount on a path wins
		}
	}
	for _, d := range []string{"/tmp", "/var/tmp", "/run", "/dev/shm", jobHome} {
		if fs, ok := mounts[d]; ok && fs != "tmpfs" {
			t.Errorf("%s is %s in the job's view, want tmpfs", d, fs)
		} else if !ok && (d == "/tmp" || d == "/dev/shm") {
			t.Errorf("%s is not a mount of its own in the job's view: %q", d, out)
		}
	}
}

// TestHostIsReadOnly: no job, root included, can write any host path.
func TestHostIsReadOnly(t *testing.T) {
	ts := newTestSandbox(t)
	name := "telehandler-test-" + randHex(t)
	var script []string
	dirs := []string{"/etc", "/usr", "/var", "/home", "/"}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		t.Cleanup(func() { os.Remove(p) }) // only if the test fails
		script = append(script, fmt.Sprintf(`if [ -d %[1]s ]; then mkdir %[2]s 2>&1 || echo refused %[1]s; fi`, d, p))
	}
	for _, as := range []struct {
		name string
		cred func(Spec) Spec
	}{{"nobody", asNobody}, {"dynamic user", asDynamic}, {"root", asRoot}} {
		t.Run(as.name, func(t *testing.T) {
			out := mustExit0(t, ts.startJob(t, Limits{}, as.cred(sh(strings.Join(script, "; ")))))
			for _, d := range dirs {
				if !isDir(d) {
					continue
				}
				if !strings.Contains(out, "refused "+d+"\n") {
					t.Errorf("%s job wrote %s: %q", as.name, d, out)
				}
			}
			if n := strings.Count(out, "Read-only file system"); n != strings.Count(out, "refused") {
				t.Errorf("%s job: %d refusals, %d for a read-only file system: %q", as.name, strings.Count(out, "refused"), n, out)
			}
		})
	}
}

// TestServerFilesAreHidden: the directories Config.Hide names (the
// server's state and keys) and /run/telehandler are empty or absent in a
// job's view, even for a root job.
func TestServerFilesAreHidden(t *testing.T) {
	ts := newTestSandbox(t)
	if err := os.MkdirAll("/var/lib", 0o755); err != nil {
		t.Fatal(err)
	}
	keys, err := os.MkdirTemp("/var/lib", "telehandler-test-keys-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(keys) })
	if err := os.WriteFile(filepath.Join(keys, "ca.key"), []byte("PRIVATE KEY\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(lockDirForTest, 0o755); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(lockDirForTest, "telehandler-test-"+randHex(t)+".lock")
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(lock) })

	cfg := testConfig(t, ts.rec)
	cfg.Hide = []string{keys, lockDirForTest, "/tmp/whatever"}
	ts.setConfig(t, cfg)
	out := mustExit0(t, ts.startJob(t, Limits{}, asRoot(sh(fmt.Sprintf(
		`ls -A %[1]s; cat %[1]s/ca.key; ls %[2]s; echo done`, keys, lockDirForTest)))))
	if strings.Contains(out, "ca.key") && !strings.Contains(out, "No such file") || strings.Contains(out, "PRIVATE") ||
		strings.Contains(out, filepath.Base(lock)) || !strings.HasSuffix(out, "done\n") {
		t.Errorf("a root job saw the hidden files: %q", out)
	}
	// Root-only secrets of the host read empty, even for a root job.
	for _, p := range hostSecrets() {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		cmd := "head -c 64 " + p + " | wc -c"
		if st.IsDir() {
			cmd = "ls -A " + p + " | wc -l"
		}
		if out := mustExit0(t, ts.startJob(t, Limits{}, asRoot(sh(cmd)))); strings.TrimSpace(out) != "0" {
			t.Errorf("a root job reads %s: %q", p, out)
		}
		// Not masked for a dynamic user, which owns nothing of the host
		// and reads none of the root-only files.
		if !st.IsDir() {
			if out := mustExit0(t, ts.startJob(t, Limits{}, asDynamic(sh("{ "+cmd+"; } 2>/dev/null")))); strings.TrimSpace(out) != "0" {
				t.Errorf("a dynamic-user job reads %s: %q", p, out)
			}
		}
	}
}

// lockDirForTest is serve's lock directory (main.lockDir).
const lockDirForTest = "/run/telehandler"

// TestSysShowsOnlyTheJob: /sys/class/net lists lo only, /sys/fs/cgroup is
// the job's own cgroup (read-only, with its limits), nothing of the host's
// cgroup tree.
func TestSysShowsOnlyTheJob(t *testing.T) {
	ts := newTestSandbox(t)
	const limit = 123 << 20
	limitFile := "/sys/fs/cgroup/memory.max"
	if ts.Cgroups().Version() == 1 {
		limitFile = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	}
	out := mustExit0(t, ts.startJob(t, Limits{MemoryBytes: limit}, asRoot(sh(
		`echo net $(ls /sys/class/net); echo cg $(ls /sys/fs/cgroup); echo limit $(cat `+limitFile+`); `+
			`find /sys/fs/cgroup/ -mindepth 1 -type d | head -5; echo x > /sys/fs/cgroup/telehandler-test 2>&1; `+
			`sed 's/^/devices /' /sys/fs/cgroup/devices/devices.list 2>/dev/null; echo end`))))
	lines := strings.Split(out, "\n")
	if !slices.Contains(lines, "net lo") {
		t.Errorf("/sys/class/net in the job: %q, want lo only", out)
	}
	if !slices.Contains(lines, fmt.Sprintf("limit %d", limit)) {
		t.Errorf("the job does not see its own memory limit in %s: %q", limitFile, out)
	}
	var cg []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "cg "); ok {
			cg = strings.Fields(rest)
		}
	}
	if strings.Contains(out, ts.parent) || strings.Contains(out, "telehandler-test-") && !strings.Contains(out, "Read-only") {
		t.Errorf("the job sees the host's cgroup tree: %q", out)
	}
	if ts.Cgroups().Version() == 2 {
		if !slices.Contains(cg, "cgroup.procs") || !slices.Contains(cg, "memory.max") {
			t.Errorf("/sys/fs/cgroup is not the job's v2 cgroup: %q", cg)
		}
	} else {
		for _, h := range []string{"cpu", "cpuacct", "memory", "blkio", "pids", "freezer", "devices"} {
			if !isDir("/sys/fs/cgroup/"+h) && h == "devices" {
				continue
			}
			if !slices.Contains(cg, h) {
				t.Errorf("/sys/fs/cgroup lacks the job's %s hierarchy: %q", h, cg)
			}
		}
		for _, h := range cg {
			if !slices.Contains([]string{"cpu", "cpuacct", "memory", "blkio", "pids", "freezer", "cpu,cpuacct", "devices"}, h) {
				t.Errorf("/sys/fs/cgroup shows %s, a hierarchy the job is not limited by: %q", h, cg)
			}
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "/sys/fs/cgroup/") && strings.Count(l, "/") > 4 {
			t.Errorf("a cgroup below the job's: %q", l)
		}
	}
	if !strings.Contains(out, "Read-only file system") {
		t.Errorf("a root job could write to /sys/fs/cgroup: %q", out)
	}
	// v1 with a devices hierarchy: the job may use its own few devices.
	var devices []string
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "devices "); ok {
			devices = append(devices, rest)
		}
	}
	if ts.Cgroups().Version() == 1 && isDir("/sys/fs/cgroup/devices") && !slices.Equal(devices, jobDeviceRules()) {
		t.Errorf("the job's devices.list %q, want %q", devices, jobDeviceRules())
	}
}

// TestMaskedPaths: runc's masked paths read empty in a job, even as root,
// wherever the host has them.
func TestMaskedPaths(t *testing.T) {
	ts := newTestSandbox(t)
	var script []string
	var checked []string
	for _, p := range maskedPaths() {
		st, err := os.Stat(p)
		if err != nil {
			continue
		}
		checked = append(checked, p)
		if st.IsDir() {
			script = append(script, fmt.Sprintf(`echo "%s $(ls -A %s | wc -l)"`, p, p))
		} else {
			script = append(script, fmt.Sprintf(`echo "%[1]s $(head -c 4096 %[1]s | wc -c)$(cat %[1]s >/dev/null && echo " readable")"`, p))
		}
	}
	if len(checked) == 0 {
		t.Fatal("the host has none of the masked paths: nothing to check")
	}
	out := mustExit0(t, ts.startJob(t, Limits{}, asRoot(sh(strings.Join(script, "; ")))))
	for _, p := range checked {
		if !strings.Contains(out, p+" 0\n") && !strings.Contains(out, p+" 0 readable\n") {
			t.Errorf("%s is not empty in a root job: %q", p, out)
		}
	}
	t.Logf("masked: %v", checked)
}

// TestConcurrentJobsHaveTheirOwnUIDs: dynamic users get distinct uids (gid
// the same number, no supplementary groups) from the range, a home of their
// own as working directory, and give the uid back when they end.
func TestConcurrentJobsHaveTheirOwnUIDs(t *testing.T) {
	ts := newTestSandbox(t)
	r := UIDRange{First: DefaultUIDRange.First + 0x8000, Count: 2}
	cfg := testConfig(t, ts.rec)
	cfg.UIDs = r
	ts.setConfig(t, cfg)
	script := `echo $(id -u) $(id -g) $(id -G); pwd; echo "$HOME"; touch x && echo home writable; exec sleep 1000`
	home := jobHome
	if !isDir("/home") {
		home = fallbackHome
	}
	a := ts.startJob(t, Limits{}, asDynamic(sh(script)))
	b := ts.startJob(t, Limits{}, asDynamic(sh(script)))
	// Both have printed once x is in their home.
	waitForFile(t, fmt.Sprintf("/proc/%d/root%s/x", a.Pid(), home))
	waitForFile(t, fmt.Sprintf("/proc/%d/root%s/x", b.Pid(), home))
	if _, err := ts.tryStart(t, Limits{}, asDynamic(sh("true"))); !errors.Is(err, ErrNoUID) {
		t.Errorf("a third job with a range of 2 uids: %v, want ErrNoUID", err)
	}
	a.Kill()
	b.Kill()
	_, outA := a.wait(t)
	_, outB := b.wait(t)
	ida, idb := strings.Fields(strings.SplitN(outA, "\n", 2)[0]), strings.Fields(strings.SplitN(outB, "\n", 2)[0])
	if len(ida) != 3 || len(idb) != 3 || ida[0] == idb[0] {
		t.Fatalf("ids %q and %q, want two different uids", outA, outB)
	}
	for _, id := range [][]string{ida, idb} {
		uid, _ := strconv.ParseUint(id[0], 10, 32)
		if uid < uint64(r.First) || uid > uint64(r.Last()) || id[1] != id[0] || id[2] != id[0] {
			t.Errorf("uid gid groups %q, want one uid of %s, its gid alike and no other group", id, r)
		}
	}
	for _, out := range []string{outA, outB} {
		if !strings.Contains(out, "\n"+home+"\n"+home+"\nhome writable\n") {
			t.Errorf("working directory and HOME: %q, want %s, writable", out, home)
		}
	}
	// Both ended and their cgroups are gone: their uids are free again.
	j, err := ts.tryStart(t, Limits{}, asDynamic(sh("id -u")))
	if err != nil {
		t.Fatalf("a job after both ended: %v", err)
	}
	j.wait(t)
}

// TestRootJobIsNotHostRoot: a root job holds Docker's 14 capabilities in
// every set and nothing else, so it cannot set the clock, write a sysctl or
// make and open a block device; a non-root job has none.
func TestRootJobIsNotHostRoot(t *testing.T) {
	ts := newTestSandbox(t)
	status := func(out string) map[string]string {
		m := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(k, "Cap") {
				m[k] = strings.TrimSpace(v)
			}
		}
		return m
	}
	caps := status(mustExit0(t, ts.startJob(t, Limits{}, asRoot(sh("grep Cap /proc/self/status")))))
	for _, set := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if caps[set] != dockerCaps {
			t.Errorf("root job %s %s, want %s (Docker's default 14)", set, caps[set], dockerCaps)
		}
	}
	caps = status(mustExit0(t, ts.startJob(t, Limits{}, asDynamic(sh("grep Cap /proc/self/status")))))
	for set, want := range map[string]string{"CapInh": "0000000000000000", "CapPrm": "0000000000000000",
		"CapEff": "0000000000000000", "CapAmb": "0000000000000000", "CapBnd": dockerCaps} {
		if caps[set] != want {
			t.Errorf("dynamic-user job %s %s, want %s", set, caps[set], want)
		}
	}

	// A node of a real disk somewhere on the host, outside /dev (as in a
	// container's root file system under /var/lib).
	var nodes []string
	if devs, err := blockDevices(defaultSysBlock); err == nil && len(devs) > 0 {
		var major, minor uint32
		fmt.Sscanf(devs[0], "%d:%d", &major, &minor)
		if err := os.MkdirAll("/var/lib", 0o755); err != nil {
			t.Fatal(err)
		}
		dir, err := os.MkdirTemp("/var/lib", "telehandler-test-dev-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		node := filepath.Join(dir, "disk")
		if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	} else {
		t.Logf("no block device on this host (%v): the host-node check is left out", err)
	}
	for _, tc := range []struct {
		helper string
		args   []string
		bad    string // in the output when the attack worked
	}{
		{"adjtimex", nil, "set the clock"},
		{"sysctl", nil, "opened for writing"},
		{"mknod", []string{"/tmp", "/dev", "/dev/shm"}, "opened a block device"},
		{"opendev", nodes, "opened the block device"},
	} {
		out := mustExit0(t, ts.startJob(t, Limits{}, asRoot(helper(t, tc.helper, tc.args...))))
		t.Logf("%s: %q", tc.helper, out)
		if strings.Contains(out, tc.bad) {
			t.Errorf("a root job: %q", out)
		}
	}
}

// TestImage: with an image, the job's root is the image (read-only), with
// the same private /tmp, /dev, /proc and /sys.
func TestImage(t *testing.T) {
	ts := newTestSandbox(t)
	bb := staticBusybox(t)
	dir := t.TempDir()
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"sh", "ls", "cat", "echo", "touch", "id"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", app)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "image-marker"), []byte("in the image\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, ts.rec)
	cfg.Binds = nil // the test binary's directory is not in the image
	cfg.Images = map[string]string{"busybox": dir}
	ts.setConfig(t, cfg)

	spec := asDynamic(Spec{Path: "/bin/sh", Args: []string{"-c",
		`ls /; cat /etc/image-marker; touch /etc/x 2>&1; touch /tmp/x && echo tmp writable; ls /dev; cat /etc/passwd 2>&1; ` +
			`for d in /sys/fs/cgroup /sys/fs/cgroup/*/; do touch $d/x 2>/dev/null && echo "wrote $d"; done; ls /sys/fs/cgroup | wc -l; echo end`},
		Env: []string{"PATH=/bin"}, Image: "busybox"})
	out := mustExit0(t, ts.startJob(t, Limits{}, spec))
	t.Logf("job in the image: %q", out)
	for _, want := range []string{"bin\ndev\netc\nproc\nsys\ntmp\n", "in the image\n", "Read-only file system", "tmp writable\n", "null\n", "No such file"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "wrote") || strings.Contains(out, "\n0\nend") {
		t.Errorf("the job's cgroup is missing or writable in the image: %q", out)
	}
	// A root job cannot change the host's device nodes through its /dev or
	// the masks (chmod to the mode they have: harmless if it worked).
	out = mustExit0(t, ts.startJob(t, Limits{}, Spec{Path: "/bin/sh", Args: []string{"-c",
		`chmod 666 /dev/null 2>&1 || echo refused; chmod 666 /proc/keys 2>&1 || echo refused`}, Env: []string{"PATH=/bin"}, Image: "busybox"}))
	if strings.Count(out, "refused") != 2 {
		t.Errorf("a root job in the image changed a host device node's mode: %q", out)
	}
	if _, err := ts.tryStart(t, Limits{}, Spec{Path: "/bin/true", Image: "alpine"}); !errors.Is(err, ErrUnknownImage) || !strings.Contains(err.Error(), "busybox") {
		t.Errorf("unknown image: %v, want ErrUnknownImage naming busybox", err)
	}
}

// staticBusybox finds Debian's busybox-static (make test installs it).
func staticBusybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		f.Close()
		if static {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no static busybox: `make test` installs busybox-static (scripts/test-deps.sh)")
	}
	t.Skip("needs a static busybox: apt-get install busybox-static (make test installs it)")
	return ""
}

// TestBinds: operators' binds; a read-only bind cannot be written, a
// read-write one can, from a job of its own uid.
func TestBinds(t *testing.T) {
	ts := newTestSandbox(t)
	ro, rw := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(ro, "shared"), []byte("shared data\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(rw, 0o777); err != nil {
		t.Fatal(err)
	}
	ts.bind(t, Bind{Host: ro, Job: "/tmp/a/b/ro"}, Bind{Host: rw, Job: "/tmp/rw", Writable: true})
	// A server with systemd's UMask=0077: the mount points the shim makes
	// must still be reachable for a job of another uid.
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	out := mustExit0(t, ts.startJob(t, Limits{}, asDynamic(sh(`cat /tmp/a/b/ro/shared; touch /tmp/a/b/ro/x 2>&1; echo out > /tmp/rw/out && echo wrote`))))
	if !strings.Contains(out, "shared data\n") || !strings.Contains(out, "Read-only file system") || !strings.Contains(out, "wrote\n") {
		t.Errorf("binds: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "out")); err != nil || string(b) != "out\n" {
		t.Errorf("the read-write bind's file on the host: %q, %v", b, err)
	}
}

// waitForFile polls until p exists (a job made it), failing after
// jobTimeout.
func waitForFile(t *testing.T, p string) {
	t.Helper()
	deadline := time.Now().Add(jobTimeout)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", p, jobTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func randHex(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestMinimalDev: a job's /dev holds the few harmless nodes, which work for
// any user, and nothing of the host's.
func TestMinimalDev(t *testing.T) {
	ts := newTestSandbox(t)
	out := mustExit0(t, ts.startJob(t, Limits{}, asDynamic(sh(
		`echo dev $(ls /dev); echo hi > /dev/null && echo null ok; echo $(head -c 8 /dev/urandom | wc -c) random; `+
			`echo $(head -c 8 /dev/zero | wc -c) zero; echo pts $(ls /dev/pts)`))))
	lines := strings.Split(out, "\n")
	want := "dev fd full null ptmx pts random shm stderr stdin stdout tty urandom zero"
	if !isDir("/dev") || !slices.Contains(lines, want) {
		t.Errorf("/dev in the job: %q, want %q", out, want)
	}
	for _, w := range []string{"null ok", "8 random", "8 zero", "pts ptmx"} {
		if !slices.Contains(lines, w) {
			t.Errorf("job output lacks %q: %q", w, out)
		}
	}
}
