package jobrunner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/drrev/telehandler/sandbox"
	"github.com/drrev/telehandler/sandbox/network"
	"github.com/drrev/telehandler/sandbox/network/nettest"
)

// Networking tests: they create interfaces, routes, a bridge, an nftables
// table and turn forwarding on, so they run ONLY inside the test VM, which
// has no network device at all (nettest.RequireVM). The "internet" is
// nettest's: a network namespace of the test's own with an HTTP server, a
// DNS answer and a fake metadata service, reached through a veth (up0)
// that is the job network's uplink.

const (
	uplinkName = nettest.UplinkName
	testName   = nettest.TestName
)

var (
	uplinkIP   = nettest.UplinkIP
	wanIP      = nettest.WanIP
	metadataIP = nettest.MetadataIP
	jobSubnet  = netip.MustParsePrefix("10.99.0.0/24")
)

func requireNetworkVM(t *testing.T) { nettest.RequireVM(t) }

func newInternet(t *testing.T) *nettest.Internet { return nettest.New(t, jobSubnet) }

func inNS(t *testing.T, ns netns.NsHandle, fn func()) { nettest.InNS(t, ns, fn) }

// netEnv is a Runner with a job network whose uplink is the internet's.
type netEnv struct {
	r      *Runner
	m      *network.Manager
	inet   *nettest.Internet
	parent string
}

// newNetEnv builds the internet, a job network (cfg's zero fields filled
// in for the internet) and a runner. The test's cleanup shuts the runner
// down, closes the network and checks nothing of it is left.
func newNetEnv(t *testing.T, edit func(*network.Config)) *netEnv {
	t.Helper()
	requireNetworkVM(t)
	inet := newInternet(t)
	b := make([]byte, 6)
	rand.Read(b)
	parent := "telehandler-test-" + hex.EncodeToString(b)
	cgs, err := sandbox.NewCgroups(sandbox.CgroupConfig{Parent: parent})
	must(t, err)
	t.Cleanup(func() {
		if err := cgs.Cleanup(); err != nil {
			t.Errorf("cgroup Cleanup: %v", err)
		}
		removeTestParent(t, parent)
	})
	cfg := network.Config{Parent: parent, Subnet: jobSubnet, Uplink: uplinkName, DNS: []netip.Addr{wanIP.Addr()}}
	if edit != nil {
		edit(&cfg)
	}
	m, err := network.New(cfg)
	if err != nil {
		t.Fatalf("network.New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("network Close: %v", err)
		}
		checkNoNetworkLeft(t, m, parent)
	})
	sb, err := sandbox.New(sandbox.Config{Cgroups: cgs})
	must(t, err)
	r, err := New(Config{StateDir: filepath.Join(t.TempDir(), "state"), Sandbox: sb, Network: m})
	must(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &netEnv{r: r, m: m, inet: inet, parent: parent}
}

// removeTestParent removes the test's parent cgroup directories.
func removeTestParent(t *testing.T, parent string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/" + parent)
	more, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
	for _, d := range append(dirs, more...) {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("remove test parent cgroup: %v", err)
		}
	}
}

// checkNoNetworkLeft asserts that nothing the job network made is left:
// no bridge, no veth of its prefix, no address or route in its subnet, no
// nftables table, no run directory, and the uplink's forwarding back off.
func checkNoNetworkLeft(t *testing.T, m *network.Manager, parent string) {
	t.Helper()
	links, err := netlink.LinkList()
	must(t, err)
	for _, l := range links {
		if n := l.Attrs().Name; n == m.Bridge() || strings.HasPrefix(n, m.VethPrefix()) {
			t.Errorf("interface %s left behind", n)
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	must(t, err)
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && jobSubnet.Contains(ip) {
			t.Errorf("address %s left behind", a.IPNet)
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	must(t, err)
	for _, r := range routes {
		if r.Dst != nil {
			if ip, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok && jobSubnet.Contains(ip) {
				t.Errorf("route %s left behind", r.Dst)
			}
		}
	}
	c, err := nftables.New()
	must(t, err)
	tables, err := c.ListTables()
	must(t, err)
	for _, tb := range tables {
		if tb.Name == m.Table() {
			t.Errorf("nftables table %s left behind", tb.Name)
		}
	}
	if _, err := os.Stat("/run/telehandler/" + parent + ".net"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run directory left behind (stat: %v)", err)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + uplinkName + "/forwarding"); err == nil && strings.TrimSpace(string(b)) != "0" {
		t.Errorf("uplink forwarding left at %s, was 0", strings.TrimSpace(string(b)))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// netJobsPerOwner is the tests' Quota.NetworkPerOwner.
const netJobsPerOwner = 3

// probeRequest is a job running the test binary as a network probe.
func probeRequest(t *testing.T, networked bool, ops ...string) StartRequest {
	exe, err := os.Executable()
	must(t, err)
	return StartRequest{Owner: "alice", Command: exe, Args: ops, Env: []string{netProbeEnv + "=1"},
		Limits: fastLimits(), Network: networked, Quota: Quota{NetworkPerOwner: netJobsPerOwner}}
}

// runProbe runs a probe job to its end and returns its output lines by
// operation ("fetch:URL" -> "ok ..."/"fail ...").
func (e *netEnv) runProbe(t *testing.T, req StartRequest) map[string]string {
	t.Helper()
	ctx := testContext(t)
	st, err := e.r.Start(ctx, req)
	if err != nil {
		t.Fatalf("start probe: %v", err)
	}
	if _, err := e.r.Wait(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	return probeResults(t, e.output(t, st.ID))
}

func (e *netEnv) output(t *testing.T, id string) string {
	t.Helper()
	var out strings.Builder
	err := e.r.watch(testContext(t), id, 0, func(c Chunk) error {
		out.Write(c.Data)
		return nil
	})
	must(t, err)
	return out.String()
}

func probeResults(t *testing.T, out string) map[string]string {
	res := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.SplitN(line, " ", 3)
		if len(f) == 3 {
			key := f[0]
			if f[1] != "" {
				key += ":" + f[1]
			}
			res[key] = f[2]
		}
	}
	t.Logf("probe output:\n%s", out)
	return res
}

func wantOK(t *testing.T, res map[string]string, op string) string {
	t.Helper()
	if r := res[op]; !strings.HasPrefix(r, "ok") {
		t.Errorf("%s: %q, want ok", op, r)
		return ""
	}
	return strings.TrimPrefix(res[op], "ok ")
}

func wantFail(t *testing.T, res map[string]string, op string) {
	t.Helper()
	if r := res[op]; !strings.HasPrefix(r, "fail") {
		t.Errorf("%s: %q, want fail (blocked)", op, r)
	}
}

// hostPort listens on every address of the host, like the server's gRPC
// port, and returns the port.
func hostPort(t *testing.T) int {
	ln, err := net.Listen("tcp", ":0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// hostCanDial is the positive control: the host itself reaches addr.
func hostCanDial(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		t.Fatalf("control: the host cannot reach %s itself: %v", addr, err)
	}
	c.Close()
}

// TestNetEgress: a networked job fetches from the internet by name; a job
// without the network cannot; neither reaches the host's addresses (the
// uplink's, the gateway), the server's port, or the metadata service.
func TestNetEgress(t *testing.T) {
	e := newNetEnv(t, nil)
	port := hostPort(t)
	gw := e.m.Gateway().String()
	hostUplink := net.JoinHostPort(uplinkIP.Addr().String(), strconv.Itoa(port))
	hostGW := net.JoinHostPort(gw, strconv.Itoa(port))
	meta := metadataIP.String() + ":80"
	hostCanDial(t, hostUplink)
	hostCanDial(t, hostGW)
	hostCanDial(t, meta)

	byName := "http://" + testName + "/hello"
	byIP := "http://" + wanIP.Addr().String() + "/hello"
	ops := []string{"fetch:" + byName, "fetch:" + byIP, "dial:" + hostUplink, "dial:" + hostGW, "dial:" + meta, "dial:" + gw + ":53"}
	res := e.runProbe(t, probeRequest(t, true, ops...))
	wantOK(t, res, "fetch:"+byName)
	wantOK(t, res, "fetch:"+byIP)
	wantFail(t, res, "dial:"+hostUplink)
	wantFail(t, res, "dial:"+hostGW)
	wantFail(t, res, "dial:"+meta)
	wantFail(t, res, "dial:"+gw+":53")
	// Masqueraded: the internet saw the uplink's address, never the job's.
	if clients := e.inet.Clients(); len(clients) != 1 || clients[0] != uplinkIP.Addr().String() {
		t.Errorf("the internet saw clients %v, want only the uplink's address %s", clients, uplinkIP.Addr())
	}

	before := e.inet.Hits()
	res = e.runProbe(t, probeRequest(t, false, "fetch:"+byIP, "fetch:"+byName, "dial:"+hostUplink))
	wantFail(t, res, "fetch:"+byIP)
	wantFail(t, res, "fetch:"+byName)
	wantFail(t, res, "dial:"+hostUplink)
	after := e.inet.Hits()
	if after != before {
		t.Errorf("the internet served %d requests to a job without network", after-before)
	}
}

// startListener starts a networked job listening on port 8080 and returns
// its id and address once it listens.
func (e *netEnv) startListener(t *testing.T, before ...string) (string, string) {
	t.Helper()
	id, res := e.startListenerRes(t, before...)
	return id, wantOK(t, res, "addr")
}

// startListenerRes runs the operations before, then listens, and returns
// the job's id and results once it listens.
func (e *netEnv) startListenerRes(t *testing.T, before ...string) (string, map[string]string) {
	t.Helper()
	ctx := testContext(t)
	st, err := e.r.Start(ctx, probeRequest(t, true, append(append([]string{"addr"}, before...), "listen:8080")...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.r.Stop(context.Background(), st.ID, 0) })
	var out strings.Builder
	errListening := errors.New("listening")
	err = e.r.watch(ctx, st.ID, 0, func(c Chunk) error {
		out.Write(c.Data)
		if strings.Contains(out.String(), "listen 8080 ok") {
			return errListening
		}
		return nil
	})
	if !errors.Is(err, errListening) {
		t.Fatalf("listener job: %v; output %q", err, out.String())
	}
	return st.ID, probeResults(t, out.String())
}

// TestNetJobToJob: two jobs get distinct addresses; one cannot connect to
// the other, nor can the host connect into a job; with
// AllowJobToJob it can.
func TestNetJobToJob(t *testing.T) {
	t.Run("denied", func(t *testing.T) {
		e := newNetEnv(t, nil)
		_, addrA := e.startListener(t)
		target := addrA + ":8080"
		res := e.runProbe(t, probeRequest(t, true, "addr", "dial:"+target))
		addrB := wantOK(t, res, "addr")
		if addrA == "" || addrA == addrB {
			t.Errorf("two jobs have addresses %q and %q, want distinct", addrA, addrB)
		}
		for _, a := range []string{addrA, addrB} {
			if ip, err := netip.ParseAddr(a); err != nil || !jobSubnet.Contains(ip) || ip == e.m.Gateway() {
				t.Errorf("job address %q is not a job address of %s", a, jobSubnet)
			}
		}
		wantFail(t, res, "dial:"+target)
		if c, err := net.DialTimeout("tcp", target, probeTimeout); err == nil {
			c.Close()
			t.Errorf("the host connected into job %s", target)
		}
		// From the outside, with a route to the jobs' subnet: nothing is
		// forwarded in.
		inNS(t, e.inet.NS, func() {
			if c, err := net.DialTimeout("tcp", target, probeTimeout); err == nil {
				c.Close()
				t.Errorf("the internet connected into job %s", target)
			} else {
				t.Logf("inbound from the internet: %v", err)
			}
		})
	})
	t.Run("allowed", func(t *testing.T) {
		e := newNetEnv(t, func(c *network.Config) { c.AllowJobToJob = true })
		_, addrA := e.startListener(t)
		res := e.runProbe(t, probeRequest(t, true, "dial:"+addrA+":8080"))
		wantOK(t, res, "dial:"+addrA+":8080")
	})
}

// TestNetOperatorDenyAllow: --network-deny blocks a range, --network-allow
// reopens part of it.
func TestNetOperatorDenyAllow(t *testing.T) {
	t.Run("deny", func(t *testing.T) {
		e := newNetEnv(t, func(c *network.Config) {
			c.Deny = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		})
		url := "http://" + testName + "/hello"
		res := e.runProbe(t, probeRequest(t, true, "fetch:"+url))
		// The name still resolves (the resolver stays reachable), the
		// server behind it does not.
		wantFail(t, res, "fetch:"+url)
		if !strings.Contains(res["fetch:"+url], "timeout") {
			t.Errorf("fetch failed with %q, want a connection timeout (name resolved, connection dropped)", res["fetch:"+url])
		}
	})
	t.Run("allow", func(t *testing.T) {
		e := newNetEnv(t, func(c *network.Config) {
			c.Deny = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			c.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")}
		})
		url := "http://" + testName + "/hello"
		wantOK(t, e.runProbe(t, probeRequest(t, true, "fetch:"+url)), "fetch:"+url)
	})
}

// TestNetBandwidth: a job limited to 64 KiB/s moves 512 KiB each way (at
// once) no faster than twice the limit (a wide margin: the token bucket's
// burst, timer slack in the VM), while an unlimited job downloads it faster
// than that.
func TestNetBandwidth(t *testing.T) {
	e := newNetEnv(t, nil)
	const size = 512 << 10
	const limit = 64 << 10
	down := "fetch:http://" + wanIP.Addr().String() + "/bytes?n=" + strconv.Itoa(size)
	up := "post:http://" + wanIP.Addr().String() + "/sink:" + strconv.Itoa(size)

	free := probeRequest(t, true, down)
	free.Limits.NetworkBPS = 0
	res := e.runProbe(t, free)
	f := strings.Fields(wantOK(t, res, down))
	if len(f) != 2 {
		t.Fatalf("unlimited download: %q", res[down])
	}
	freeSecs, _ := strconv.ParseFloat(f[1], 64)

	limited := probeRequest(t, true, down, up)
	limited.Limits.NetworkBPS = limit
	res = e.runProbe(t, limited)
	f = strings.Fields(wantOK(t, res, down))
	if len(f) != 2 || f[0] != strconv.Itoa(size) {
		t.Fatalf("limited download: %q", res[down])
	}
	downSecs, _ := strconv.ParseFloat(f[1], 64)
	upSecs, _ := strconv.ParseFloat(wantOK(t, res, up), 64)
	minSecs := float64(size) / (2 * limit) // twice the limit
	t.Logf("512 KiB: unlimited download %.2fs (%.0f B/s); at %d B/s: download %.2fs (%.0f B/s), upload %.2fs (%.0f B/s); at most twice the limit means >= %.2fs",
		freeSecs, size/freeSecs, limit, downSecs, size/downSecs, upSecs, size/upSecs, minSecs)
	if downSecs < minSecs {
		t.Errorf("download at %.0f B/s, over twice the limit of %d B/s", size/downSecs, limit)
	}
	if upSecs < minSecs {
		t.Errorf("upload at %.0f B/s, over twice the limit of %d B/s", size/upSecs, limit)
	}
	if freeSecs >= minSecs {
		t.Errorf("the unlimited download (%.0f B/s) is no faster than twice the limit: is the limit what slows the limited one?", size/freeSecs)
	}
}

// TestNetCapPerOwner: an owner runs at most Quota.NetworkPerOwner
// networked jobs; others and plain jobs are not affected.
func TestNetCapPerOwner(t *testing.T) {
	e := newNetEnv(t, nil)
	for range netJobsPerOwner {
		e.startListener(t)
	}
	_, err := e.r.Start(testContext(t), probeRequest(t, true, "addr"))
	if !errors.Is(err, ErrTooManyNetworkJobs) {
		t.Fatalf("fourth networked job: %v, want ErrTooManyNetworkJobs", err)
	}
	bob := probeRequest(t, true, "addr")
	bob.Owner = "bob"
	wantOK(t, e.runProbe(t, bob), "addr")
	wantFail(t, e.runProbe(t, probeRequest(t, false, "addr")), "addr")
}

// TestNetCleanupAfterJobs: when jobs end (exit or stop), their veths go
// and their addresses come back.
func TestNetCleanupAfterJobs(t *testing.T) {
	e := newNetEnv(t, nil)
	id, _ := e.startListener(t)
	if n := countVeths(t, e.m); n != 1 {
		t.Errorf("%d veths with one job running", n)
	}
	if _, err := e.r.Stop(testContext(t), id, 0); err != nil {
		t.Fatal(err)
	}
	e.runProbe(t, probeRequest(t, true, "addr"))
	if n := countVeths(t, e.m); n != 0 {
		t.Errorf("%d veths left after the jobs ended", n)
	}
}

func countVeths(t *testing.T, m *network.Manager) int {
	links, err := netlink.LinkList()
	must(t, err)
	n := 0
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, m.VethPrefix()) {
			n++
		}
	}
	return n
}

// TestNetCrashCleanup: a server that died without cleaning up (here: a job
// network never closed, with a job's veth still attached to a live
// namespace) is cleaned up by the next one with the same parent, and that
// one leaves nothing once closed.
func TestNetCrashCleanup(t *testing.T) {
	requireNetworkVM(t)
	newInternet(t)
	b := make([]byte, 6)
	rand.Read(b)
	parent := "telehandler-test-" + hex.EncodeToString(b)
	cfg := network.Config{Parent: parent, Subnet: jobSubnet, Uplink: uplinkName, DNS: []netip.Addr{wanIP.Addr()}}

	// A process in a network namespace of its own stands in for a job
	// that outlived its server.
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	// Should the test fail half-way, a last run with the parent removes
	// everything (registered first: runs last).
	t.Cleanup(func() {
		if m, err := network.New(cfg); err == nil {
			m.Close()
		}
	})
	crashed, err := network.New(cfg)
	must(t, err)
	att, err := crashed.Attach(cmd.Process.Pid, 1<<20)
	must(t, err)
	t.Logf("crashed run: bridge %s, veth %s, address %s", crashed.Bridge(), att.Veth, att.Addr)
	// The crash: neither att.Release nor crashed.Close ever runs.

	restarted, err := network.New(cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	if _, err := netlink.LinkByName(att.Veth); err == nil {
		t.Errorf("the restarted server kept the crashed run's veth %s", att.Veth)
	}
	h, err := netlink.NewHandleAt(mustNS(t, cmd.Process.Pid), unix.NETLINK_ROUTE)
	must(t, err)
	if _, err := h.LinkByName("eth0"); err == nil {
		t.Error("the old job's namespace still has its eth0")
	}
	h.Close()
	must(t, restarted.Close())
	checkNoNetworkLeft(t, restarted, parent)
}

func mustNS(t *testing.T, pid int) netns.NsHandle {
	ns, err := netns.GetFromPid(pid)
	must(t, err)
	t.Cleanup(func() { ns.Close() })
	return ns
}

// TestNetStartLatency measures how long Start takes for a plain job and a
// networked one (reported in the README's Networking section).
func TestNetStartLatency(t *testing.T) {
	e := newNetEnv(t, nil)
	const n = 10
	// Interleaved, so that warm-up and load hit both kinds alike.
	var plain, netw []time.Duration
	for i := range 2 * n {
		networked := i%2 == 1
		ctx := testContext(t)
		req := StartRequest{Owner: "alice", Command: "true", Limits: fastLimits(), Network: networked}
		t0 := time.Now()
		st, err := e.r.Start(ctx, req)
		d := time.Since(t0)
		must(t, err)
		if _, err := e.r.Wait(ctx, st.ID); err != nil {
			t.Fatal(err)
		}
		if networked {
			netw = append(netw, d)
		} else {
			plain = append(plain, d)
		}
	}
	slices.Sort(plain)
	slices.Sort(netw)
	t.Logf("start latency over %d jobs (median, max): plain %v, %v; networked %v, %v",
		n, plain[n/2].Round(time.Millisecond), slices.Max(plain).Round(time.Millisecond),
		netw[n/2].Round(time.Millisecond), slices.Max(netw).Round(time.Millisecond))
}

// TestNetAntiSpoof: a root job forging packets (CAP_NET_RAW) can send
// neither as another job nor as an address outside the subnet, and cannot
// take another job's address in the host's ARP cache.
func TestNetAntiSpoof(t *testing.T) {
	e := newNetEnv(t, nil)
	// B talks to the internet first: the host then has B's MAC in its
	// neighbour table (the replies need it).
	_, resB := e.startListenerRes(t, "mac", "fetch:http://"+wanIP.Addr().String()+"/hello")
	addrB, macB := wantOK(t, resB, "addr"), wantOK(t, resB, "mac")
	ipB := netip.MustParseAddr(addrB)
	if got := hostNeigh(t, e.m.Bridge(), ipB); got != macB {
		t.Fatalf("control: the host's neighbour entry of job B %s is %q, want its MAC %s", ipB, got, macB)
	}
	sink := wanIP.Addr().String() + ":" + strconv.Itoa(nettest.UDPPort)
	res := e.runProbe(t, probeRequest(t, true, "mac",
		"udp:"+sink+":legit",
		"spoofudp:"+addrB+":"+sink+":as-job-b",
		"spoofudp:192.0.2.77:"+sink+":as-outsider",
		"arpspoof:"+addrB))
	macA := wantOK(t, res, "mac")
	wantOK(t, res, "udp:"+sink+":legit")
	time.Sleep(time.Second) // datagrams in flight
	got := e.inet.UDP()
	if !slices.Contains(got, "legit") {
		t.Errorf("control: the internet got %q, want the legit datagram", got)
	}
	for _, forged := range []string{"as-job-b", "as-outsider"} {
		if slices.Contains(got, forged) {
			t.Errorf("a forged datagram (%s) reached the internet", forged)
		}
	}
	if n := hostNeigh(t, e.m.Bridge(), ipB); n != macB {
		t.Errorf("after job A (%s) claimed %s by ARP and ended, the host's entry for it is %q, want B's %s", macA, ipB, n, macB)
	}
}

// hostNeigh returns the MAC the host's neighbour table has for ip on dev.
func hostNeigh(t *testing.T, dev string, ip netip.Addr) string {
	t.Helper()
	l, err := netlink.LinkByName(dev)
	must(t, err)
	neighs, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	must(t, err)
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP.To4()); ok && a == ip {
			t.Logf("neighbour %s: %s state %#x", ip, n.HardwareAddr, n.State)
			return n.HardwareAddr.String()
		}
	}
	return ""
}

// TestNetConnLimit: a job has at most Config.MaxConnsPerJob connections
// through the uplink at once (the host's connection-tracking table is
// shared); the next ones are dropped.
func TestNetConnLimit(t *testing.T) {
	e := newNetEnv(t, func(c *network.Config) { c.MaxConnsPerJob = 8 })
	op := "conns:" + wanIP.Addr().String() + ":" + strconv.Itoa(nettest.HoldPort) + ":12"
	res := e.runProbe(t, probeRequest(t, true, op))
	if got := wantOK(t, res, op); got != "8" {
		t.Errorf("%s connections of 12 opened, want the limit of 8", got)
	}
	// They were closed with the job: another job has its own 8.
	res = e.runProbe(t, probeRequest(t, true, op))
	if got := wantOK(t, res, op); got != "8" {
		t.Errorf("next job: %s connections of 12 opened, want 8", got)
	}
}
