package network

import (
	"net/netip"
)

// IP protocol numbers of the rules (IANA; the values of unix.IPPROTO_UDP and
// unix.IPPROTO_TCP, named here so that the rules build on every system).
const (
	ipprotoTCP = 6
	ipprotoUDP = 17
)

// The firewall is one nftables table of family inet, named after the
// parent, with base chains that only ever match packets entering or leaving
// the jobs' bridge (and, when the server turned the uplink's forwarding on,
// forwarded packets from the uplink): the host's other traffic passes them
// untouched. firewallRules (pure) decides; installFirewall writes it.

// verdict of a rule.
type verdict int

const (
	accept verdict = iota
	drop
	masquerade
)

// rule is one firewall rule, in terms the tests can read.
type rule struct {
	chain string // "input", "forward", "output", "postrouting"
	// iif/oif: the packet's in/out interface must be (or, with ! in
	// front, must not be) this one; "" = any.
	iif, oif string
	// established: conntrack state established or related.
	established bool
	// saddr/daddr: the packet's source/destination is in this prefix
	// (with saddrNot: the source is not).
	saddr, daddr netip.Prefix
	saddrNot     bool
	// dport53: a DNS packet (UDP or TCP to port 53); proto is then 6 or 17.
	proto uint8
	dport uint16
	verdict
}

// firewallRules lists the rules, in order, for cfg. dropUplinkForwarding
// is set when the server turned the uplink's forwarding on: it was off, so
// nothing but the jobs' replies was forwarded from it and nothing else
// will be.
func firewallRules(cfg Config, n names, dns []netip.Addr, dropUplinkForwarding bool) []rule {
	br, up := n.bridge, cfg.Uplink
	r := []rule{
		// The host: nothing from a job reaches it but replies to what the
		// host itself sent (the gateway, every other address, the
		// server's port, any service).
		{chain: "input", iif: br, established: true, verdict: accept},
		{chain: "input", iif: br, verdict: drop},
		// Nothing on the host connects into a job either.
		{chain: "output", oif: br, established: true, verdict: accept},
		{chain: "output", oif: br, verdict: drop},
		// To the jobs: replies only; no inbound connection is forwarded.
		{chain: "forward", oif: br, established: true, verdict: accept},
	}
	if cfg.AllowJobToJob {
		r = append(r, rule{chain: "forward", iif: br, oif: br, verdict: accept})
	}
	r = append(r,
		rule{chain: "forward", oif: br, verdict: drop},
		// From the jobs: out through the uplink only, and from the
		// subnet only (a root job could forge another source).
		rule{chain: "forward", iif: br, oif: "!" + up, verdict: drop},
		rule{chain: "forward", iif: br, saddr: cfg.Subnet, saddrNot: true, verdict: drop},
	)
	for _, a := range dns {
		p := netip.PrefixFrom(a, a.BitLen())
		r = append(r,
			rule{chain: "forward", iif: br, daddr: p, proto: ipprotoUDP, dport: 53, verdict: accept},
			rule{chain: "forward", iif: br, daddr: p, proto: ipprotoTCP, dport: 53, verdict: accept})
	}
	for _, p := range cfg.Allow {
		r = append(r, rule{chain: "forward", iif: br, daddr: p, verdict: accept})
	}
	for _, p := range append(append([]netip.Prefix{}, builtinDeny...), cfg.Deny...) {
		r = append(r, rule{chain: "forward", iif: br, daddr: p, verdict: drop})
	}
	r = append(r, rule{chain: "forward", iif: br, verdict: accept})
	if dropUplinkForwarding {
		r = append(r, rule{chain: "forward", iif: up, oif: "!" + br, verdict: drop})
	}
	r = append(r, rule{chain: "postrouting", saddr: cfg.Subnet, oif: up, verdict: masquerade})
	return r
}
