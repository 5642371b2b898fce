package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// sshPeer is a throwaway sshd on 127.0.0.1 with its own host key, config and
// authorized key, and the ssh arguments that reach it. The system's sshd and
// its configuration are never touched.
type sshPeer struct {
	d    *daemon
	args []string // ssh arguments up to and including the destination
}

func startSSHD(ctx context.Context, e *env) (*sshPeer, error) {
	dir := e.path("ssh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sshd dir: %w", err)
	}
	hostKey, clientKey := filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "client_ed25519")
	for _, k := range []string{hostKey, clientKey} {
		if err := runQuiet(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "telehandler-bench", "-f", k); err != nil {
			return nil, err
		}
	}
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, pub, 0o600); err != nil {
		return nil, fmt.Errorf("authorized_keys: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	config := strings.Join([]string{
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKey,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + authorized,
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"PrintMotd no",
		"UseDNS no",
		"LogLevel ERROR",
		"",
	}, "\n")
	configPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, fmt.Errorf("sshd_config: %w", err)
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("privilege separation dir: %w", err)
	}
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", configPath, "-p", strconv.Itoa(port))
	d, err := startDaemon("sshd", cmd, filepath.Join(dir, "sshd.log"))
	if err != nil {
		return nil, err
	}
	e.defer_(func() { d.stop(5 * time.Second) })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitFor(ctx, d, 10*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("sshd: %w (see %s)", err, filepath.Join(dir, "sshd.log"))
	}
	p := &sshPeer{d: d, args: []string{
		"-F", "/dev/null", "-i", clientKey,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
		"-p", strconv.Itoa(port), "root@127.0.0.1",
	}}
	if err := runQuiet(ctx, "ssh", p.command("/bin/true")...); err != nil {
		return nil, fmt.Errorf("ssh to the bench sshd: %w", err)
	}
	return p, nil
}

// command returns the ssh arguments that run remote on the bench sshd,
// with extra ssh options first.
func (p *sshPeer) command(remote string, opts ...string) []string {
	return append(append(append([]string{}, opts...), p.args...), remote)
}

// runcPeer is a runc bundle whose rootfs is a static busybox, run with its
// own state root and a cgroup below a parent this run owns.
type runcPeer struct {
	bundle, root, cgroupParent string
}

func setupRunc(ctx context.Context, e *env, cgroupParent string) (*runcPeer, error) {
	p := &runcPeer{bundle: e.path("runc", "bundle"), root: e.path("runc", "state"), cgroupParent: cgroupParent}
	rootfs := filepath.Join(p.bundle, "rootfs")
	for _, d := range []string{filepath.Join(rootfs, "bin"), filepath.Join(rootfs, "proc"), filepath.Join(rootfs, "dev"), p.root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("runc bundle: %w", err)
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("runc bundle: %w", err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("runc bundle: %w", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), data, 0o755); err != nil {
		return nil, fmt.Errorf("runc bundle: %w", err)
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", "true")); err != nil {
		return nil, fmt.Errorf("runc bundle: %w", err)
	}
	cmd := exec.CommandContext(ctx, "runc", "spec")
	cmd.Dir = p.bundle
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("runc spec: %w: %s", err, out)
	}
	if err := p.editSpec(); err != nil {
		return nil, err
	}
	e.defer_(p.cleanup)
	return p, nil
}

// editSpec turns `runc spec`'s default into the peer of a Telehandler job:
// no terminal, /bin/true, read-only root, a memory and a pids limit, and a
// cgroup below the run's own parent.
func (p *runcPeer) editSpec() error {
	path := filepath.Join(p.bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("runc spec: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("runc spec: %w", err)
	}
	process, _ := spec["process"].(map[string]any)
	linux, _ := spec["linux"].(map[string]any)
	root, _ := spec["root"].(map[string]any)
	if process == nil || linux == nil || root == nil {
		return fmt.Errorf("runc spec: unexpected layout in %s", path)
	}
	process["terminal"] = false
	process["args"] = []string{"/bin/true"}
	root["readonly"] = true
	resources, _ := linux["resources"].(map[string]any)
	if resources == nil {
		resources = map[string]any{}
	}
	resources["memory"] = map[string]any{"limit": 512 << 20}
	resources["pids"] = map[string]any{"limit": 1024}
	linux["resources"] = resources
	linux["cgroupsPath"] = "/" + p.cgroupParent + "/runc"
	out, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return fmt.Errorf("runc spec: %w", err)
	}
	return os.WriteFile(path, out, 0o644)
}

// run runs /bin/true in a new container (create, start, wait, delete: what
// `runc run` does) and fails if it did not exit 0.
func (p *runcPeer) run(ctx context.Context, id string) error {
	return runQuiet(ctx, "runc", "--root", p.root, "run", "--bundle", p.bundle, id)
}

// cleanup deletes containers left by an interrupted run and the cgroups.
func (p *runcPeer) cleanup() {
	out, err := exec.Command("runc", "--root", p.root, "list", "-q").Output()
	if err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = runQuiet(context.Background(), "runc", "--root", p.root, "delete", "--force", id)
		}
	}
	if n, pids, err := removeCgroupTree(p.cgroupParent); n > 0 || pids > 0 || err != nil {
		logf("runc cleanup: %d cgroups and %d processes were left (%v)", n, pids, err)
	}
}
