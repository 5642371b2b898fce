package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNamesFitIFNAMSIZ(t *testing.T) {
	for _, parent := range []string{"telehandler", "telehandler-test-0123456789abcdef", "telehandler.x"} {
		n := namesFor(parent)
		if len(n.bridge) > ifNameMax || !strings.HasPrefix(n.bridge, "th-") {
			t.Errorf("%s: bridge %q", parent, n.bridge)
		}
		if v := n.vethName(0xffffffff); len(v) > ifNameMax || !strings.HasPrefix(v, n.vethPrefix) {
			t.Errorf("%s: veth %q", parent, v)
		}
		if n.table != "th-"+parent {
			t.Errorf("%s: table %q", parent, n.table)
		}
	}
	if got := namesFor("telehandler").bridge; got != "th-telehandler" {
		t.Errorf("bridge of the default parent = %q, want th-telehandler", got)
	}
	a, b := namesFor("telehandler-test-a"), namesFor("telehandler-test-b")
	if a.bridge == b.bridge || a.vethPrefix == b.vethPrefix {
		t.Errorf("two parents share names: %+v %+v", a, b)
	}
}

func TestAllocatorDistinctAndReleased(t *testing.T) {
	sub := netip.MustParsePrefix("10.9.0.0/29") // 8 addresses: 5 for jobs
	al := newAllocator(sub)
	seen := map[netip.Addr]bool{}
	for range 5 {
		a, err := al.get()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] || !sub.Contains(a) || a == sub.Addr() || a == gatewayOf(sub) || a == netip.MustParseAddr("10.9.0.7") {
			t.Fatalf("bad or repeated address %s (seen %v)", a, seen)
		}
		seen[a] = true
	}
	if _, err := al.get(); !errors.Is(err, ErrAddressesExhausted) {
		t.Fatalf("sixth address: %v, want ErrAddressesExhausted", err)
	}
	al.put(netip.MustParseAddr("10.9.0.4"))
	if a, err := al.get(); err != nil || a != netip.MustParseAddr("10.9.0.4") {
		t.Fatalf("after release got %s, %v", a, err)
	}
}

func TestAllocatorNextFit(t *testing.T) {
	al := newAllocator(netip.MustParsePrefix("10.9.0.0/24"))
	a, _ := al.get()
	al.put(a)
	b, _ := al.get()
	if a == b {
		t.Fatalf("released address %s reused at once", a)
	}
}

func TestConfigCheck(t *testing.T) {
	good := Config{Parent: "telehandler", Uplink: "eth0"}
	if err := good.check(); err != nil || good.Subnet != DefaultSubnet {
		t.Fatalf("defaults: %v %v", err, good.Subnet)
	}
	for name, c := range map[string]Config{
		"no uplink":     {Parent: "telehandler"},
		"ipv6 subnet":   {Parent: "telehandler", Uplink: "eth0", Subnet: netip.MustParsePrefix("fd00::/64")},
		"huge subnet":   {Parent: "telehandler", Uplink: "eth0", Subnet: netip.MustParsePrefix("10.0.0.0/8")},
		"tiny subnet":   {Parent: "telehandler", Uplink: "eth0", Subnet: netip.MustParsePrefix("10.0.0.0/30")},
		"loopback dns":  {Parent: "telehandler", Uplink: "eth0", DNS: []netip.Addr{netip.MustParseAddr("127.0.0.53")}},
		"long uplink":   {Parent: "telehandler", Uplink: "0123456789abcdef"},
		"no parent":     {Uplink: "eth0"},
		"4 nameservers": {Parent: "telehandler", Uplink: "eth0", DNS: []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("1.1.1.2"), netip.MustParseAddr("1.1.1.3"), netip.MustParseAddr("1.1.1.4")}},
	} {
		if err := c.check(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestHostResolvers(t *testing.T) {
	got, err := hostResolvers([]byte("# x\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\nsearch example\nnameserver 192.0.2.2\n"))
	if err != nil || len(got) != 2 || got[0] != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := hostResolvers([]byte("nameserver 127.0.0.53\n")); err == nil || !strings.Contains(err.Error(), "--network-dns") {
		t.Fatalf("loopback only: %v, want an error naming --network-dns", err)
	}
	if s := string(resolvConf(got)); !strings.Contains(s, "nameserver 192.0.2.1\nnameserver 192.0.2.2\n") {
		t.Fatalf("resolv.conf %q", s)
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs([]string{"10.1.2.3/8", "192.0.2.7", "fd00::1"})
	if err != nil || got[0].String() != "10.0.0.0/8" || got[1].String() != "192.0.2.7/32" || got[2].String() != "fd00::1/128" {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := ParseCIDRs([]string{"example.com"}); err == nil {
		t.Fatal("a name parsed as a CIDR")
	}
}

// TestFirewallRules checks the order that makes the policy: replies
// before drops, the host never reachable, allow before deny, the built-in
// denies always there, NAT only out of the uplink.
func TestFirewallRules(t *testing.T) {
	cfg := Config{Parent: "telehandler", Uplink: "eth0",
		Deny: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	n := namesFor(cfg.Parent)
	rules := firewallRules(cfg, n, []netip.Addr{netip.MustParseAddr("10.2.0.53")}, true)
	idx := func(match func(rule) bool) int {
		for i, r := range rules {
			if match(r) {
				return i
			}
		}
		t.Fatalf("no such rule in %+v", rules)
		return -1
	}
	inAccept := idx(func(r rule) bool { return r.chain == "input" && r.established && r.verdict == accept })
	inDrop := idx(func(r rule) bool {
		return r.chain == "input" && r.iif == n.bridge && !r.established && !r.daddr.IsValid() && r.verdict == drop
	})
	if inAccept > inDrop {
		t.Error("input: the drop comes before the replies' accept")
	}
	inbound := idx(func(r rule) bool {
		return r.chain == "forward" && r.oif == n.bridge && !r.established && r.verdict == drop
	})
	dns := idx(func(r rule) bool { return r.chain == "forward" && r.dport == 53 && r.verdict == accept })
	allow := idx(func(r rule) bool { return r.chain == "forward" && r.daddr == cfg.Allow[0] && r.verdict == accept })
	deny := idx(func(r rule) bool { return r.chain == "forward" && r.daddr == cfg.Deny[0] && r.verdict == drop })
	meta := idx(func(r rule) bool {
		return r.chain == "forward" && r.daddr == netip.MustParsePrefix("169.254.0.0/16") && r.verdict == drop
	})
	idx(func(r rule) bool {
		return r.chain == "forward" && r.daddr == netip.MustParsePrefix("fd00:ec2::254/128") && r.verdict == drop
	})
	out := idx(func(r rule) bool {
		return r.chain == "forward" && r.iif == n.bridge && r.oif == "" && !r.daddr.IsValid() && r.verdict == accept
	})
	if !(inbound < dns && dns < allow && allow < deny && deny < out && meta < out) {
		t.Errorf("forward order: inbound %d dns %d allow %d deny %d meta %d egress %d", inbound, dns, allow, deny, meta, out)
	}
	idx(func(r rule) bool {
		return r.chain == "forward" && r.iif == n.bridge && r.oif == "!eth0" && r.verdict == drop
	})
	spoof := idx(func(r rule) bool {
		return r.chain == "forward" && r.iif == n.bridge && r.saddr == cfg.Subnet && r.saddrNot && r.verdict == drop
	})
	if spoof > dns {
		t.Error("forged sources are dropped only after the DNS accept")
	}
	idx(func(r rule) bool {
		return r.chain == "forward" && r.iif == "eth0" && r.oif == "!"+n.bridge && r.verdict == drop
	})
	idx(func(r rule) bool {
		return r.chain == "postrouting" && r.oif == "eth0" && r.saddr == cfg.Subnet && r.verdict == masquerade
	})
	for _, r := range rules {
		if r.chain == "forward" && r.iif == n.bridge && r.oif == n.bridge && r.verdict == accept {
			t.Error("job-to-job accepted although not allowed")
		}
		if r.iif == "" && r.oif == "" {
			t.Errorf("rule %+v matches traffic that is not the jobs'", r)
		}
	}
	cfg.AllowJobToJob = true
	j2j := firewallRules(cfg, n, nil, false)
	found := false
	for _, r := range j2j {
		if r.chain == "forward" && r.iif == n.bridge && r.oif == n.bridge && r.verdict == accept {
			found = true
		}
		if r.iif == "eth0" {
			t.Error("uplink forwarding dropped although it was on before")
		}
	}
	if !found {
		t.Error("AllowJobToJob adds no job-to-job accept")
	}
}
