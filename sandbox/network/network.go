// Package network gives jobs that ask for it egress to the outside world and
// nothing else. The server owns one bridge (named after its cgroup parent)
// whose gateway address routes the jobs' traffic out through one uplink
// interface with masquerading; each networked job gets one end of a veth
// pair in its network namespace, an address of the server's subnet, a
// default route, a resolv.conf of its own and, optionally, a bandwidth limit.
// A dedicated nftables table (also named after the parent) keeps jobs away
// from the host, from each other and from link-local and metadata addresses,
// and forwards nothing from the outside to them.
//
// Everything the package creates carries the parent's name (the bridge, the
// veths' prefix, the table, the run directory), so that a server starting
// after a crash removes exactly what an earlier run left, and nothing else.
//
// This file holds the pure logic (names, address allocation, configuration,
// resolv.conf); the netlink and nftables parts are Linux-only.
package network

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
)

// Sentinel errors of the package.
var (
	// ErrInvalidConfig means a Config value cannot be used.
	ErrInvalidConfig = errors.New("invalid network configuration")
	// ErrAddressesExhausted means every address of the subnet is in use.
	ErrAddressesExhausted = errors.New("no free address in the job network's subnet")
)

// Bounds of Config.Subnet: an IPv4 prefix between /16 (65534 addresses,
// more jobs than a host runs) and /29 (five jobs).
const (
	minSubnetBits = 16
	maxSubnetBits = 29
)

// maxNameservers is the most nameserver lines a resolver library reads.
const maxNameservers = 3

// DefaultSubnet is the jobs' subnet when Config.Subnet is not set.
var DefaultSubnet = netip.MustParsePrefix("10.88.0.0/24")

// Always denied destinations: link-local (IPv4 169.254.0.0/16, where cloud
// metadata services answer at 169.254.169.254, and IPv6 fe80::/10) and
// AWS's IPv6 metadata address.
var builtinDeny = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fd00:ec2::254/128"),
}

// Config configures the job network of one server.
type Config struct {
	// Parent is the server's cgroup parent; the bridge, the veths, the
	// nftables table and the run directory are named after it. Required.
	Parent string
	// Subnet is the jobs' IPv4 subnet; its first address is the bridge's
	// (the jobs' gateway). Zero = DefaultSubnet.
	Subnet netip.Prefix
	// Uplink is the host interface the jobs' traffic leaves through,
	// masqueraded behind its address. Required: never guessed.
	Uplink string
	// DNS are the resolvers written into each job's resolv.conf; empty =
	// the host's (/etc/resolv.conf), which must not be loopback addresses.
	DNS []netip.Addr
	// Deny are destinations jobs may not reach, besides the built-in
	// link-local and metadata ones; Allow are destinations jobs may reach
	// even inside a denied range (Allow wins). Neither opens the host
	// itself, which no job can reach.
	Deny, Allow []netip.Prefix
	// AllowJobToJob lets networked jobs connect to each other.
	AllowJobToJob bool
	// MaxConnsPerJob is the most connections a job may have open through
	// the uplink at once (the host's connection-tracking table is shared);
	// 0 = no limit.
	MaxConnsPerJob int
	// RunDir holds the jobs' resolv.conf files; "" = /run/telehandler/<Parent>.net.
	RunDir string
	// HostResolvConf is the host's resolv.conf read when DNS is empty;
	// "" = /etc/resolv.conf.
	HostResolvConf string
}

// check validates c and fills in the defaults.
func (c *Config) check() error {
	if c.Parent == "" || strings.ContainsAny(c.Parent, "/\x00") {
		return fmt.Errorf("%w: bad parent name %q", ErrInvalidConfig, c.Parent)
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	if err := checkSubnet(c.Subnet); err != nil {
		return err
	}
	c.Subnet = c.Subnet.Masked()
	if c.Uplink == "" {
		return fmt.Errorf("%w: no uplink interface (serve --network-uplink IFACE, for example eth0: the interface of the host's default route)", ErrInvalidConfig)
	}
	if len(c.Uplink) > 15 || strings.ContainsAny(c.Uplink, "/ \x00") {
		return fmt.Errorf("%w: bad uplink interface name %q", ErrInvalidConfig, c.Uplink)
	}
	if len(c.DNS) > maxNameservers {
		return fmt.Errorf("%w: %d resolvers, at most %d are read", ErrInvalidConfig, len(c.DNS), maxNameservers)
	}
	for _, a := range c.DNS {
		if !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
			return fmt.Errorf("%w: resolver %s: use an IPv4 address a job can reach (not loopback)", ErrInvalidConfig, a)
		}
	}
	if c.MaxConnsPerJob < 0 {
		return fmt.Errorf("%w: %d connections per job", ErrInvalidConfig, c.MaxConnsPerJob)
	}
	if c.RunDir == "" {
		c.RunDir = "/run/telehandler/" + c.Parent + ".net"
	}
	if c.HostResolvConf == "" {
		c.HostResolvConf = "/etc/resolv.conf"
	}
	return nil
}

func checkSubnet(p netip.Prefix) error {
	if !p.Addr().Is4() || p.Bits() < minSubnetBits || p.Bits() > maxSubnetBits {
		return fmt.Errorf("%w: subnet %s: use an IPv4 prefix between /%d and /%d, for example %s",
			ErrInvalidConfig, p, minSubnetBits, maxSubnetBits, DefaultSubnet)
	}
	return nil
}

// ParseCIDRs parses a list of CIDRs ("10.0.0.0/8") or single addresses
// ("192.0.2.7", taken as /32 or /128).
func ParseCIDRs(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR (10.0.0.0/8) or an address", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// hostResolvers returns the IPv4 nameservers of a resolv.conf that a job
// can reach: loopback ones (systemd-resolved's 127.0.0.53, a local
// dnsmasq) are on the host itself, which jobs never reach.
func hostResolvers(data []byte) ([]netip.Addr, error) {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || !a.Is4() || a.IsLoopback() || a.IsUnspecified() {
			continue
		}
		if len(out) < maxNameservers {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: the host's resolv.conf names no IPv4 resolver a job can reach (a loopback one such as systemd-resolved's 127.0.0.53 is on the host, which jobs cannot reach): set serve --network-dns IP", ErrInvalidConfig)
	}
	return out, nil
}

// resolvConf is the resolv.conf of a job.
func resolvConf(dns []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString("# written by telehandler for this job\n")
	for _, a := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.Bytes()
}

// names are the names of everything a server's job network creates.
type names struct {
	// bridge is the bridge interface: "th-<parent>" when that fits in
	// IFNAMSIZ, else "th-" and a hash of the parent.
	bridge string
	// vethPrefix starts the host-side name of every job's veth: "thv" and
	// four hex digits of the parent's hash; a job counter completes it.
	vethPrefix string
	// table is the nftables table (family inet).
	table string
}

// ifNameMax is the longest interface name (IFNAMSIZ - 1).
const ifNameMax = 15

func namesFor(parent string) names {
	sum := sha256.Sum256([]byte(parent))
	h := hex.EncodeToString(sum[:])
	bridge := "th-" + parent
	if len(bridge) > ifNameMax {
		bridge = "th-" + h[:12]
	}
	return names{bridge: bridge, vethPrefix: "thv" + h[:4], table: "th-" + parent}
}

// vethName is the host-side name of a job's veth: the prefix and n in hex.
func (n names) vethName(i uint32) string {
	return fmt.Sprintf("%s%08x", n.vethPrefix, i)
}

// allocator hands out the job addresses of a subnet: every address but the
// network, the gateway (the first host address) and the broadcast. It goes
// round the subnet (next fit) so that a released address is not reused at
// once: connection-tracking state of the job that had it fades first.
type allocator struct {
	mu    sync.Mutex
	first netip.Addr // lowest job address
	n     int        // number of job addresses
	used  map[netip.Addr]bool
	next  int // index of the next candidate
}

func newAllocator(subnet netip.Prefix) *allocator {
	size := 1 << (32 - subnet.Bits())
	return &allocator{
		first: subnet.Addr().Next().Next(),
		n:     size - 3,
		used:  make(map[netip.Addr]bool),
	}
}

// gateway returns the subnet's gateway (bridge) address.
func gatewayOf(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

func (a *allocator) get() (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for range a.n {
		i := a.next
		a.next = (a.next + 1) % a.n
		addr := addN(a.first, i)
		if !a.used[addr] {
			a.used[addr] = true
			return addr, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w (%d addresses)", ErrAddressesExhausted, a.n)
}

func (a *allocator) put(addr netip.Addr) {
	a.mu.Lock()
	delete(a.used, addr)
	a.mu.Unlock()
}

// addN returns a+i for an IPv4 address.
func addN(a netip.Addr, i int) netip.Addr {
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
