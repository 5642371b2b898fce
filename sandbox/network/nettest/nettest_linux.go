// Package nettest builds, for the job-network tests, an "internet" of the
// test's own: a network namespace with an HTTP server, a DNS answer and a
// fake cloud metadata service, reached through a veth whose host end is
// the job network's uplink. It changes the machine's network, so every
// test that uses it first calls RequireVM: they run only inside the test VM
// (scripts/test-cgroupv2.sh), which has no network device at all.
package nettest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VMEnv is set to 1 by scripts/test-cgroupv2.sh inside the VM.
const VMEnv = "TELEHANDLER_TEST_NETWORK_VM"

const (
	// UplinkName is the host end of the internet's veth: the job
	// network's uplink.
	UplinkName = "up0"
	wanName    = "wan0"
	// TestName resolves to WanIP at the internet's DNS server.
	TestName = "example.test"
	// Hello is what GET /hello answers.
	Hello = "hello from the internet\n"
)

var (
	// UplinkIP is the host's address on the uplink, WanIP the internet's
	// (its web and DNS servers), MetadataIP the fake metadata service's
	// (port 80), which the host reaches through the uplink as a cloud VM
	// does.
	UplinkIP   = netip.MustParsePrefix("192.0.2.1/24")
	WanIP      = netip.MustParsePrefix("192.0.2.2/24")
	MetadataIP = netip.MustParseAddr("169.254.169.254")
)

// RequireVM skips outside the VM, and refuses to run on a machine that
// has any network interface but lo when the test starts: the VM is
// started with -nic none, a real host never is.
func RequireVM(t *testing.T) {
	t.Helper()
	if os.Getenv(VMEnv) != "1" {
		t.Skip("networking tests run only inside the test VM (make test-cgroupv2): they create interfaces and firewall rules, which must never happen on a real host")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the networking tests need root")
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			t.Fatalf("%s=1 but this machine has interface %s: the test VM has no network device (-nic none); refusing to touch this network", VMEnv, l.Attrs().Name)
		}
	}
}

// Internet is the test's outside world.
type Internet struct {
	// NS is its network namespace.
	NS netns.NsHandle

	mu      sync.Mutex
	hits    int
	clients map[string]bool
	udp     []string
}

// UDPPort is where the internet collects UDP datagrams (UDP); HoldPort
// is a TCP port whose connections it accepts and keeps open, silent.
const (
	UDPPort  = 9999
	HoldPort = 7777
)

// UDP returns the payloads of the datagrams received on WanIP:UDPPort.
func (i *Internet) UDP() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]string(nil), i.udp...)
}

// Hits is the number of HTTP requests served.
func (i *Internet) Hits() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.hits
}

// Clients are the source addresses GET /hello saw.
func (i *Internet) Clients() []string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []string
	for c := range i.clients {
		out = append(out, c)
	}
	return out
}

// New builds the internet: its namespace, the veth up0 (here) <-> wan0
// (there), a route there to routeBack (the jobs' subnet, via the uplink:
// an attacker out there trying to connect in), an HTTP server on WanIP:80
// and MetadataIP:80 (GET /hello, GET /bytes?n=N, POST /sink) and a DNS
// server on WanIP:53. The test's cleanup removes it all.
func New(t *testing.T, routeBack netip.Prefix) *Internet {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	must(t, err)
	ns, err := netns.New()
	must(t, err)
	if err := netns.Set(orig); err != nil {
		t.Fatal(err) // the thread stays locked: it dies with the test goroutine
	}
	runtime.UnlockOSThread()
	orig.Close()
	inet := &Internet{NS: ns, clients: map[string]bool{}}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(UplinkName); err == nil {
			netlink.LinkDel(l)
		}
		ns.Close()
	})

	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: UplinkName}, PeerName: wanName, PeerNamespace: netlink.NsFd(int(ns))}
	must(t, netlink.LinkAdd(veth))
	up, err := netlink.LinkByName(UplinkName)
	must(t, err)
	must(t, netlink.AddrAdd(up, &netlink.Addr{IPNet: IPNet(UplinkIP)}))
	must(t, netlink.LinkSetUp(up))
	must(t, netlink.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Scope: netlink.SCOPE_LINK,
		Dst: IPNet(netip.PrefixFrom(MetadataIP, 32))}))

	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	must(t, err)
	defer h.Close()
	wan, err := h.LinkByName(wanName)
	must(t, err)
	must(t, h.AddrAdd(wan, &netlink.Addr{IPNet: IPNet(WanIP)}))
	must(t, h.AddrAdd(wan, &netlink.Addr{IPNet: IPNet(netip.PrefixFrom(MetadataIP, 32))}))
	must(t, h.LinkSetUp(wan))
	lo, err := h.LinkByName("lo")
	must(t, err)
	must(t, h.LinkSetUp(lo))
	must(t, h.RouteAdd(&netlink.Route{LinkIndex: wan.Attrs().Index, Dst: IPNet(routeBack),
		Gw: net.IP(UplinkIP.Addr().AsSlice())}))

	var web, meta, hold net.Listener
	var dns, sink net.PacketConn
	InNS(t, ns, func() {
		var err error
		web, err = net.Listen("tcp", WanIP.Addr().String()+":80")
		must(t, err)
		meta, err = net.Listen("tcp", MetadataIP.String()+":80")
		must(t, err)
		dns, err = net.ListenPacket("udp", WanIP.Addr().String()+":53")
		must(t, err)
		sink, err = net.ListenPacket("udp", WanIP.Addr().String()+":"+strconv.Itoa(UDPPort))
		must(t, err)
		hold, err = net.Listen("tcp", WanIP.Addr().String()+":"+strconv.Itoa(HoldPort))
		must(t, err)
	})
	var held []net.Conn
	var heldMu sync.Mutex
	go func() {
		for {
			c, err := hold.Accept()
			if err != nil {
				return
			}
			heldMu.Lock()
			held = append(held, c)
			heldMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		hold.Close()
		heldMu.Lock()
		for _, c := range held {
			c.Close()
		}
		heldMu.Unlock()
	})
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := sink.ReadFrom(buf)
			if err != nil {
				return
			}
			inet.mu.Lock()
			inet.udp = append(inet.udp, string(buf[:n]))
			inet.mu.Unlock()
		}
	}()
	t.Cleanup(func() { sink.Close() })
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		inet.mu.Lock()
		inet.hits++
		inet.clients[host] = true
		inet.mu.Unlock()
		io.WriteString(w, Hello)
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
	go serveDNS(dns, WanIP.Addr())
	t.Cleanup(func() { dns.Close() })
	return inet
}

func (i *Internet) hit() {
	i.mu.Lock()
	i.hits++
	i.mu.Unlock()
}

// InNS runs fn on a thread in ns (sockets made there stay there).
func InNS(t *testing.T, ns netns.NsHandle, fn func()) {
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

// serveDNS answers A queries for TestName with addr, and everything else
// with no answer: a minimal DNS server (RFC 1035 messages) for the tests.
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
	binary.BigEndian.PutUint16(resp[2:], 0x8180) // response, recursion desired and available
	binary.BigEndian.PutUint16(resp[4:], 1)      // one question
	if name != TestName {
		binary.BigEndian.PutUint16(resp[2:], 0x8183) // NXDOMAIN
		return append(resp, question...)
	}
	resp = append(resp, question...)
	if qtype == 1 { // A; other types get no answer
		binary.BigEndian.PutUint16(resp[6:], 1)
		a := addr.As4()
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4)
		resp = append(resp, a[:]...)
	}
	return resp
}

// IPNet converts a prefix for netlink.
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
