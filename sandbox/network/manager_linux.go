package network

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// jobIfName is the name of the job's end of its veth, inside its namespace.
const jobIfName = "eth0"

// uplinkSavedFile, in the run directory, keeps the uplink's name and its
// IPv4 forwarding setting from before the first server that changed it
// ("eth0 0"), so that Close restores it even after a crash and a restart,
// and not while another server (another parent) still uses that uplink.
const uplinkSavedFile = "uplink-forwarding"

// Manager is the job network of one server: its bridge, firewall table and
// address pool. Make it with New (which first removes what an earlier run
// of the same parent left) and remove it all with Close. Safe for
// concurrent use.
type Manager struct {
	cfg    Config
	names  names
	dns    []netip.Addr
	alloc  *allocator
	bridge int // the bridge's interface index
	// counter numbers the veths (their names end in it).
	counter atomic.Uint32
	// uplinkForwardingWas is the uplink's forwarding setting before us.
	uplinkForwardingWas string
}

// New sets the job network up: it removes what a crashed earlier run with
// the same parent left (veths, bridge, nftables table, run directory),
// creates the bridge with the subnet's first address, turns IPv4
// forwarding on for the bridge and the uplink only, and installs the
// firewall table.
func New(cfg Config) (*Manager, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, names: namesFor(cfg.Parent), alloc: newAllocator(cfg.Subnet)}
	if _, err := netlink.LinkByName(cfg.Uplink); err != nil {
		return nil, fmt.Errorf("%w: uplink %q: %w (serve --network-uplink names the host interface jobs' traffic leaves by; see ip link)",
			ErrInvalidConfig, cfg.Uplink, err)
	}
	if nb := m.names.bridge; nb == cfg.Uplink {
		return nil, fmt.Errorf("%w: the uplink cannot be the jobs' bridge %s", ErrInvalidConfig, nb)
	}
	m.dns = cfg.DNS
	if len(m.dns) == 0 {
		data, err := os.ReadFile(cfg.HostResolvConf)
		if err != nil {
			return nil, fmt.Errorf("%w: read the host's resolvers: %w (or set serve --network-dns IP)", ErrInvalidConfig, err)
		}
		if m.dns, err = hostResolvers(data); err != nil {
			return nil, err
		}
	}
	was, err := m.cleanup()
	if err != nil {
		return nil, fmt.Errorf("network: remove what an earlier run left: %w", err)
	}
	if err := checkSubnetFree(cfg.Subnet); err != nil {
		return nil, err
	}
	if err := m.setup(was); err != nil {
		_, cErr := m.cleanup()
		m.restoreUplink()
		return nil, errors.Join(fmt.Errorf("network: %w", err), cErr)
	}
	return m, nil
}

// checkSubnetFree refuses a subnet that overlaps an address of the host
// (ours were removed just before): its routes would be ambiguous.
func checkSubnetFree(subnet netip.Prefix) error {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("network: list the host's addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		if p := netip.PrefixFrom(ip, bits).Masked(); p.Overlaps(subnet) {
			name := fmt.Sprint(a.LinkIndex)
			if l, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return fmt.Errorf("%w: subnet %s overlaps %s on %s: choose another --network-subnet", ErrInvalidConfig, subnet, a.IPNet, name)
		}
	}
	return nil
}

// Bridge is the name of the jobs' bridge.
func (m *Manager) Bridge() string { return m.names.bridge }

// Table is the name of the nftables table (family inet) of the firewall.
func (m *Manager) Table() string { return m.names.table }

// VethPrefix starts the host-side name of every job's veth.
func (m *Manager) VethPrefix() string { return m.names.vethPrefix }

// Gateway is the bridge's address, the jobs' default route.
func (m *Manager) Gateway() netip.Addr { return gatewayOf(m.cfg.Subnet) }

// DNS are the resolvers the jobs' resolv.conf names.
func (m *Manager) DNS() []netip.Addr { return m.dns }

func (m *Manager) setup(uplinkWas string) error {
	if err := os.MkdirAll(m.cfg.RunDir, 0o755); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	m.uplinkForwardingWas = uplinkWas
	if err := os.WriteFile(filepath.Join(m.cfg.RunDir, uplinkSavedFile), []byte(m.cfg.Uplink+" "+uplinkWas), 0o644); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	// A MAC of its own: otherwise the bridge takes its lowest port's,
	// changes it as jobs come and go, and each change flushes the host's
	// neighbour entries and leaves the jobs' ARP caches wrong.
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return err
	}
	mac[0] = mac[0]&0xfe | 0x02 // unicast, locally administered
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: m.names.bridge, HardwareAddr: mac}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", m.names.bridge, err)
	}
	link, err := netlink.LinkByName(m.names.bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", m.names.bridge, err)
	}
	m.bridge = link.Attrs().Index
	// No IPv6 on the bridge: not even a link-local address for jobs to
	// talk to (the firewall drops it anyway). Best effort: a host without
	// IPv6 has no such file.
	_ = writeSysctl("net/ipv6/conf/"+m.names.bridge+"/disable_ipv6", "1")
	gw := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(m.Gateway(), m.cfg.Subnet.Bits()))}
	if err := netlink.AddrAdd(link, gw); err != nil {
		return fmt.Errorf("address %s on bridge %s: %w", gw.IPNet, m.names.bridge, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bring bridge %s up: %w", m.names.bridge, err)
	}
	if err := m.installFirewall(uplinkWas != "1"); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	// Forwarding for the bridge and the uplink only (the kernel checks
	// the incoming interface's setting), never the host-wide switch.
	if err := writeSysctl("net/ipv4/conf/"+m.names.bridge+"/forwarding", "1"); err != nil {
		return err
	}
	return writeSysctl("net/ipv4/conf/"+m.cfg.Uplink+"/forwarding", "1")
}

// cleanup removes every veth, the bridge, the table and the resolv.conf
// files of this parent, and returns the uplink's forwarding setting from
// before any run of this parent changed it.
func (m *Manager) cleanup() (uplinkWas string, err error) {
	var errs []error
	links, lErr := netlink.LinkList()
	if lErr != nil {
		errs = append(errs, fmt.Errorf("list interfaces: %w", lErr))
	}
	for _, l := range links {
		name := l.Attrs().Name
		if strings.HasPrefix(name, m.names.vethPrefix) || name == m.names.bridge {
			if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("remove %s: %w", name, err))
			}
		}
	}
	if err := m.removeFirewall(); err != nil {
		errs = append(errs, err)
	}
	// Ours from a crashed run, else another running server's on the same
	// uplink, else the current setting.
	if saved, ok := m.savedUplink(false); ok {
		uplinkWas = saved
	} else if saved, ok := m.savedUplink(true); ok {
		uplinkWas = saved
	} else {
		cur, err := readSysctl("net/ipv4/conf/" + m.cfg.Uplink + "/forwarding")
		if err != nil {
			errs = append(errs, err)
		}
		uplinkWas = cur
	}
	if err := os.RemoveAll(m.cfg.RunDir); err != nil {
		errs = append(errs, err)
	}
	return uplinkWas, errors.Join(errs...)
}

// savedUplink reads the uplink's original forwarding setting saved by this
// parent's run directory, or (others) by another server's on the same
// uplink.
func (m *Manager) savedUplink(others bool) (string, bool) {
	files := []string{filepath.Join(m.cfg.RunDir, uplinkSavedFile)}
	if others {
		files, _ = filepath.Glob(filepath.Join(filepath.Dir(m.cfg.RunDir), "*.net", uplinkSavedFile))
	}
	for _, f := range files {
		if others && filepath.Dir(f) == m.cfg.RunDir {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		up, was, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
		if ok && up == m.cfg.Uplink && (was == "0" || was == "1") {
			return was, true
		}
	}
	return "", false
}

// restoreUplink puts the uplink's forwarding setting back as it was,
// unless another server still uses the uplink.
func (m *Manager) restoreUplink() {
	if _, inUse := m.savedUplink(true); inUse {
		return
	}
	if m.uplinkForwardingWas == "0" {
		_ = writeSysctl("net/ipv4/conf/"+m.cfg.Uplink+"/forwarding", "0")
	}
}

// Close removes the job network: every veth left, the bridge, the firewall
// table and the run directory, and turns the uplink's forwarding back off
// if it was off before. Jobs still running lose their network.
func (m *Manager) Close() error {
	_, err := m.cleanup()
	m.restoreUplink()
	return err
}

// Attachment is one job's place on the network.
type Attachment struct {
	// Addr is the job's address.
	Addr netip.Addr
	// Veth is the host-side name of the job's veth.
	Veth string
	// ResolvConf is the host path of the job's resolv.conf, to be bound
	// over /etc/resolv.conf in its mount namespace.
	ResolvConf string

	m        *Manager
	released atomic.Bool
}

// Attach connects the network namespace of process pid (a job's shim,
// before it runs anything of the job) to the bridge: a veth pair whose
// job end is eth0 with an address of the subnet and a default route via
// the gateway, and, when bps > 0, a limit of bps bytes per second in each
// direction. On error nothing is left.
func (m *Manager) Attach(pid int, bps uint64) (_ *Attachment, err error) {
	addr, err := m.alloc.get()
	if err != nil {
		return nil, err
	}
	a := &Attachment{Addr: addr, Veth: m.names.vethName(m.counter.Add(1)), m: m}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.Release())
		}
	}()
	ns, err := netns.GetFromPath(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return nil, fmt.Errorf("job's network namespace: %w", err)
	}
	defer ns.Close()

	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: a.Veth, MasterIndex: m.bridge},
		PeerName:      jobIfName,
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", a.Veth, err)
	}
	host, err := netlink.LinkByName(a.Veth)
	if err != nil {
		return nil, fmt.Errorf("veth %s: %w", a.Veth, err)
	}
	if !m.cfg.AllowJobToJob {
		// An isolated bridge port talks to the bridge only, never to
		// another isolated port: no job-to-job traffic on the wire.
		if err := netlink.LinkSetIsolated(host, true); err != nil {
			return nil, fmt.Errorf("isolate %s: %w", a.Veth, err)
		}
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", a.Veth, err)
	}
	mac, err := m.configureJobSide(ns, addr)
	if err != nil {
		return nil, err
	}
	// Before the job runs: from its first frame it can only be itself.
	if err := m.addPortRules(a.Veth, mac, addr); err != nil {
		return nil, err
	}
	if bps > 0 {
		if err := limitBandwidth(host, bps); err != nil {
			return nil, fmt.Errorf("bandwidth limit: %w", err)
		}
	}
	a.ResolvConf = filepath.Join(m.cfg.RunDir, a.Veth+".resolv.conf")
	if err := os.WriteFile(a.ResolvConf, resolvConf(m.dns), 0o644); err != nil {
		return nil, fmt.Errorf("resolv.conf: %w", err)
	}
	// Readable by the job's user whatever the server's umask (the
	// systemd unit's is 0077): the shim binds this very file.
	if err := os.Chmod(a.ResolvConf, 0o644); err != nil {
		return nil, fmt.Errorf("resolv.conf: %w", err)
	}
	return a, nil
}

// configureJobSide gives the job's eth0 its address and the default route,
// and returns eth0's MAC address.
func (m *Manager) configureJobSide(ns netns.NsHandle, addr netip.Addr) (net.HardwareAddr, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in the job's namespace: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(jobIfName)
	if err != nil {
		return nil, fmt.Errorf("job's %s: %w", jobIfName, err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, m.cfg.Subnet.Bits()))}); err != nil {
		return nil, fmt.Errorf("job's address %s: %w", addr, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bring the job's %s up: %w", jobIfName, err)
	}
	gw := m.Gateway()
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}); err != nil {
		return nil, fmt.Errorf("job's default route via %s: %w", gw, err)
	}
	return link.Attrs().HardwareAddr, nil
}

// Release removes the job's veth (if its namespace has not taken it along
// already) and resolv.conf and frees its address. Safe to call twice.
func (a *Attachment) Release() error {
	if a.released.Swap(true) {
		return nil
	}
	var errs []error
	if err := a.m.delPortRules(a.Veth); err != nil {
		errs = append(errs, err)
	}
	if l, err := netlink.LinkByName(a.Veth); err == nil {
		if err := netlink.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("remove veth %s: %w", a.Veth, err))
		}
	}
	if a.ResolvConf != "" {
		if err := os.Remove(a.ResolvConf); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	a.m.alloc.put(a.Addr)
	return errors.Join(errs...)
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

func writeSysctl(name, value string) error {
	if err := os.WriteFile("/proc/sys/"+name, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(name, "/", "."), value, err)
	}
	return nil
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", strings.ReplaceAll(name, "/", "."), err)
	}
	return strings.TrimSpace(string(b)), nil
}
