package jobrunner

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/drrev/telehandler/sandbox"
	"github.com/drrev/telehandler/sandbox/network"
)

// Networking tests: they create interfaces, routes, a bridge, an nftables
// table and turn forwarding on, so they run ONLY inside the test VM, which
// has no network device at all (scripts/test-cgroupv2.sh sets
// TELEHANDLER_TEST_NETWORK_VM=1 there). The "internet" is built by the test:
// a network namespace of its own with an HTTP server, a DNS answer and a
// fake metadata service, reached through a veth (up0) that is the job
// network's uplink.

const (
	netVMEnv   = "TELEHANDLER_TEST_NETWORK_VM"
	uplinkName = "up0"
	wanName    = "wan0"
	// testName resolves to wanIP at the test's DNS server.
	testName = "example.test"
)

var (
	uplinkIP   = netip.MustParsePrefix("192.0.2.1/24")
	wanIP      = netip.MustParsePrefix("192.0.2.2/24")
	metadataIP = netip.MustParseAddr("169.254.169.254")
	jobSubnet  = netip.MustParsePrefix("10.99.0.0/24")
)

// requireNetworkVM skips outside the VM, and refuses to run on a machine
// that has any network interface but lo when the test starts: the VM is
// started with -nic none, a real host never is.
func requireNetworkVM(t *testing.T) {
	t.Helper()
	if os.Getenv(netVMEnv) != "1" {
		t.Skip("networking tests run only inside the test VM (make test-cgroupv2): they create interfaces and firewall rules, which must never happen on a real host")
	}
	requireRoot(t)
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Fatalf("%s=1 but this machine has interface %s: the test VM has no network device (-nic none); refusing to touch this network", netVMEnv, l.Attrs().Name)
		}
	}
}

// internet is the test's outside world.
type internet struct {
	ns netns.NsHandle
	// hits counts the HTTP requests it served; clients are the addresses
	// they came from.
	mu      sync.Mutex
	hits    int
	clients map[string]bool
}

// newInternet builds the outside world: namespace, veth up0 (here, the
// uplink) <-> wan0 (there), an HTTP server on wan0's address port 80 and
// on the metadata address, a DNS server answering testName.
func newInternet(t *testing.T) *internet {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err) // the thread stays locked: it dies with the test goroutine
	}
	runtime.UnlockOSThread()
	orig.Close()
	inet := &internet{ns: ns, clients: map[string]bool{}}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(uplinkName); err == nil {
			netlink.LinkDel(l)
		}
		ns.Close()
	})

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: uplinkName}, PeerName: wanName, PeerNamespace: netlink.NsFd(int(ns))}
	must(t, netlink.LinkAdd(veth))
	up, err := netlink.LinkByName(uplinkName)
	must(t, err)
	must(t, netlink.AddrAdd(up, &netlink.Addr{IPNet: prefixNet(uplinkIP)}))
	must(t, netlink.LinkSetUp(up))
	// The host reaches the metadata address through the uplink (as a cloud
	// VM does): the test's positive control.
	must(t, netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: prefixNet(netip.PrefixFrom(metadataIP, 32))}))

	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	must(t, err)
	defer h.Close()
	wan, err := h.LinkByName(wanName)
	must(t, err)
	must(t, h.AddrAdd(wan, &netlink.Addr{IPNet: prefixNet(wanIP)}))
	must(t, h.AddrAdd(wan, &netlink.Addr{IPNet: prefixNet(netip.PrefixFrom(metadataIP, 32))}))
	must(t, h.LinkSetUp(wan))
	lo, err := h.LinkByName("lo")
	must(t, err)
	must(t, h.LinkSetUp(lo))
	// An attacker out there who routes the jobs' subnet to the host: the
	// test's inbound connections try that way.
	must(t, h.RouteAdd(&netlink.Route{LinkIndex: wan.Attrs().Index, Dst: prefixNet(jobSubnet),
		Gw: net.IP(uplinkIP.Addr().AsSlice())}))

	var web, meta net.Listener
	var dns net.PacketConn
	inNS(t, ns, func() {
		var err error
		web, err = net.Listen("tcp", wanIP.Addr().String()+":80")
		must(t, err)
		meta, err = net.Listen("tcp", metadataIP.String()+":80")
		must(t, err)
		dns, err = net.ListenPacket("udp", wanIP.Addr().String()+":53")
		must(t, err)
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		inet.hit()
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		inet.mu.Lock()
		inet.clients[host] = true
		inet.mu.Unlock()
		io.WriteString(w, "hello from the internet\n")
	})
	mux.HandleFunc("/bytes", func(w http.ResponseWriter, r *http.Request) {
		inet.hit()
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Write(make([]byte, n))
	})
	mux.HandleFunc("/sink", func(w http.ResponseWriter, r *http.Request) {
		inet.hit()
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d\n", n)
	})
	for _, ln := range []net.Listener{web, meta} {
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	go serveDNS(dns, wanIP.Addr())
	t.Cleanup(func() { dns.Close() })
	return inet
}

func (i *internet) hit() {
	i.mu.Lock()
	i.hits++
	i.mu.Unlock()
}

// inNS runs fn on a thread in ns (sockets made there stay there).
func inNS(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			t.Error(err)
			return
		}
		fn()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		} // else the locked thread ends with this goroutine
	}()
	<-done
}

// serveDNS answers A queries for testName with addr, and everything else
// with no answer: a minimal DNS server (RFC 1035 messages) for the test.
func serveDNS(pc net.PacketConn, addr netip.Addr) {
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := dnsAnswer(buf[:n], addr); resp != nil {
			pc.WriteTo(resp, from)
		}
	}
}

func dnsAnswer(q []byte, addr netip.Addr) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	// The question: labels, then type and class.
	i := 12
	var labels []string
	for i < len(q) && q[i] != 0 {
		l := int(q[i])
		if i+1+l > len(q) {
			return nil
		}
		labels = append(labels, string(q[i+1:i+1+l]))
		i += 1 + l
	}
	i++
	if i+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	question := q[12 : i+4]
	name := strings.ToLower(strings.Join(labels, "."))
	resp := make([]byte, 12, 64)
	copy(resp, q[:2])                            // id
	binary.BigEndian.PutUint16(resp[2:], 0x8180) // response, recursion desired+available
	binary.BigEndian.PutUint16(resp[4:], 1)      // one question
	if name != testName {
		binary.BigEndian.PutUint16(resp[2:], 0x8183) // NXDOMAIN
		return append(resp, question...)
	}
	resp = append(resp, question...)
	if qtype == 1 { // A
		binary.BigEndian.PutUint16(resp[6:], 1)
		a := addr.As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
		resp = append(resp, a[:]...)
	}
	return resp
}

// netEnv is a Runner with a job network whose uplink is the internet's.
type netEnv struct {
	r      *Runner
	m      *network.Manager
	inet   *internet
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

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
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
	err := e.r.Watch(testContext(t), id, 0, func(c Chunk) error {
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
	e.inet.mu.Lock()
	clients := fmt.Sprint(e.inet.clients)
	masqueraded := len(e.inet.clients) == 1 && e.inet.clients[uplinkIP.Addr().String()]
	e.inet.mu.Unlock()
	if !masqueraded {
		t.Errorf("the internet saw clients %s, want only the uplink's address %s", clients, uplinkIP.Addr())
	}

	e.inet.mu.Lock()
	before := e.inet.hits
	e.inet.mu.Unlock()
	res = e.runProbe(t, probeRequest(t, false, "fetch:"+byIP, "fetch:"+byName, "dial:"+hostUplink))
	wantFail(t, res, "fetch:"+byIP)
	wantFail(t, res, "fetch:"+byName)
	wantFail(t, res, "dial:"+hostUplink)
	e.inet.mu.Lock()
	after := e.inet.hits
	e.inet.mu.Unlock()
	if after != before {
		t.Errorf("the internet served %d requests to a job without network", after-before)
	}
}

// startListener starts a networked job listening on port 8080 and returns
// its id and address once it listens.
func (e *netEnv) startListener(t *testing.T) (string, string) {
	t.Helper()
	ctx := testContext(t)
	st, err := e.r.Start(ctx, probeRequest(t, true, "addr", "listen:8080"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.r.Stop(context.Background(), st.ID, 0) })
	var out strings.Builder
	errListening := errors.New("listening")
	err = e.r.Watch(ctx, st.ID, 0, func(c Chunk) error {
		out.Write(c.Data)
		if strings.Contains(out.String(), "listen 8080 ok") {
			return errListening
		}
		return nil
	})
	if !errors.Is(err, errListening) {
		t.Fatalf("listener job: %v; output %q", err, out.String())
	}
	res := probeResults(t, out.String())
	return st.ID, wantOK(t, res, "addr")
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
		inNS(t, e.inet.ns, func() {
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

// TestNetBandwidth: a job limited to 128 KiB/s moves 1 MiB each way no
// faster than twice the limit (a wide margin: the token bucket's burst,
// timer slack in the VM), while an unlimited job downloads it much faster.
func TestNetBandwidth(t *testing.T) {
	e := newNetEnv(t, nil)
	const size = 1 << 20
	const limit = 128 << 10
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
	t.Logf("1 MiB: unlimited download %.2fs; at %d B/s: download %.2fs (%.0f B/s), upload %.2fs (%.0f B/s); at most twice the limit means >= %.2fs",
		freeSecs, limit, downSecs, size/downSecs, upSecs, size/upSecs, minSecs)
	if downSecs < minSecs {
		t.Errorf("download at %.0f B/s, over twice the limit of %d B/s", size/downSecs, limit)
	}
	if upSecs < minSecs {
		t.Errorf("upload at %.0f B/s, over twice the limit of %d B/s", size/upSecs, limit)
	}
	if freeSecs*2 > downSecs {
		t.Errorf("the unlimited download (%.2fs) is not clearly faster than the limited one (%.2fs): is the limit what slows it?", freeSecs, downSecs)
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
	const n = 20
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
