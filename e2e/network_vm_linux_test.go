package e2e

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/drrev/telehandler/sandbox/network/nettest"
)

// TestNetworkEndToEnd drives job networking through the real binary, in
// the test VM only (nettest.RequireVM): serve --network with the test's
// internet behind its uplink; a networked job fetches from it and has its
// own resolv.conf; a plain job cannot; a server without --network refuses
// start --network naming the flag; kill -9 of the server leaves its bridge
// and table, which a restart with the same parent replaces, and a SIGTERM
// removes everything.
func TestNetworkEndToEnd(t *testing.T) {
	requireRoot(t)
	nettest.RequireVM(t)
	subnet := netip.MustParsePrefix("10.98.0.0/24")
	inet := nettest.New(t, subnet)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := buildBinary(t, dir)
	certs := filepath.Join(dir, "certs")
	(env{t: t, bin: bin}).run("certgen", "--out", certs, "--user", "alice").want(t, "certgen", 0)
	as := func(addr string) env {
		return env{t: t, bin: bin, vars: []string{
			"TELEHANDLER_ADDR=" + addr,
			"TELEHANDLER_CA=" + filepath.Join(certs, "ca.crt"),
			"TELEHANDLER_CERT=" + filepath.Join(certs, "alice.crt"),
			"TELEHANDLER_KEY=" + filepath.Join(certs, "alice.key"),
		}}
	}

	// A server without --network refuses, naming the flag.
	plainAddr := freeAddr(t)
	plain := startServer(t, bin, dir, plainAddr)
	r := as(plainAddr).run("start", "--network", "--", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "serve --network") {
		t.Errorf("start --network on a server without it: %v, want an error naming serve --network", r)
	}
	plain.terminate(t)

	netFlags := []string{"--network", "--network-uplink", nettest.UplinkName, "--network-subnet", subnet.String(),
		"--network-dns", nettest.WanIP.Addr().String()}
	addr := freeAddr(t)
	srv := startServer(t, bin, dir, addr, netFlags...)
	alice := as(addr)
	url := "http://" + nettest.WanIP.Addr().String() + "/hello"
	r = alice.runLong("start", "--watch", "--network", "--", "sh", "-c", "wget -q -O - "+url+" && cat /etc/resolv.conf").want(t, "networked wget", 0)
	if !strings.Contains(r.stdout, nettest.Hello) || !strings.Contains(r.stdout, "nameserver "+nettest.WanIP.Addr().String()+"\n") {
		t.Errorf("networked job: %v, want the internet's answer and its own resolv.conf", r)
	}
	r = alice.runLong("start", "--watch", "--", "wget", "-q", "-T", "3", "-O", "-", url)
	if r.code == 0 || strings.Contains(r.stdout, nettest.Hello) {
		t.Errorf("a job without --network fetched: %v", r)
	}
	bridge, table := ourBridgeAndTable(t, srv.parent, subnet)
	if bridge == "" || table == "" {
		t.Fatalf("serve --network made no bridge with the gateway %s or no table (bridge %q, table %q)", subnet, bridge, table)
	}

	// kill -9 with a networked job running.
	alice.runLong("start", "--network", "--", "sleep", "1000").want(t, "start --network sleep", 0)
	srv.cmd.Process.Kill()
	<-srv.exited
	if b, tb := ourBridgeAndTable(t, srv.parent, subnet); b == "" || tb == "" {
		t.Logf("after kill -9: bridge %q, table %q (nothing left to clean: fine, but unexpected)", b, tb)
	}
	// The restart with the same parent cleans up and serves networked jobs.
	restarted := startServerParent(t, bin, dir, addr, filepath.Join(dir, "state"), srv.parent, netFlags...)
	r = alice.runLong("start", "--watch", "--network", "--", "wget", "-q", "-O", "-", url).want(t, "networked wget after the restart", 0)
	if r.stdout != nettest.Hello {
		t.Errorf("after the restart: %v", r)
	}
	if n := vethsOn(t, bridge); n != 0 {
		t.Errorf("%d veths on the bridge after the restart and the jobs' end", n)
	}
	if err := restarted.terminate(t); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	if b, tb := ourBridgeAndTable(t, srv.parent, subnet); b != "" || tb != "" {
		t.Errorf("after SIGTERM: bridge %q, table %q left", b, tb)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if n := l.Attrs().Name; n != "lo" && n != nettest.UplinkName {
			t.Errorf("interface %s left after SIGTERM", n)
		}
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/conf/" + nettest.UplinkName + "/forwarding"); strings.TrimSpace(string(b)) != "0" {
		t.Errorf("uplink forwarding %q after SIGTERM, was 0", b)
	}
	if inet.Hits() == 0 {
		t.Error("the internet served nothing")
	}
}

// ourBridgeAndTable finds the bridge holding the subnet's gateway and the
// server's nftables table ("th-" + parent).
func ourBridgeAndTable(t *testing.T, parent string, subnet netip.Prefix) (bridge, table string) {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	gw := subnet.Addr().Next()
	for _, l := range links {
		if l.Type() != "bridge" {
			continue
		}
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == gw {
				bridge = l.Attrs().Name
			}
		}
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == "th-"+parent {
			table = tb.Name
		}
	}
	return bridge, table
}

// vethsOn counts the interfaces whose master is the bridge.
func vethsOn(t *testing.T, bridge string) int {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return 0
	}
	links, _ := netlink.LinkList()
	n := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			n++
		}
	}
	return n
}

// runLong is env.run with two minutes instead of 30 s: the VM emulates
// its CPUs, and on a loaded machine one start took over 30 s.
func (e env) runLong(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(os.Environ(), e.vars...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.code = ee.ExitCode()
	default:
		e.t.Fatalf("telehandler %s: %v (%v)", strings.Join(args, " "), err, r)
	}
	return r
}
