package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
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
			rule{chain: "forward", iif: br, daddr: p, proto: unix.IPPROTO_UDP, dport: 53, verdict: accept},
			rule{chain: "forward", iif: br, daddr: p, proto: unix.IPPROTO_TCP, dport: 53, verdict: accept})
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

// installFirewall creates the table with its chains and rules, in one
// transaction.
func (m *Manager) installFirewall(dropUplinkForwarding bool) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: m.names.table})
	accept := nftables.ChainPolicyAccept
	chains := map[string]*nftables.Chain{}
	for _, ch := range []struct {
		name string
		typ  nftables.ChainType
		hook *nftables.ChainHook
		prio *nftables.ChainPriority
	}{
		{"input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter},
		{"output", nftables.ChainTypeFilter, nftables.ChainHookOutput, nftables.ChainPriorityFilter},
		{"forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter},
		{"postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource},
	} {
		chains[ch.name] = c.AddChain(&nftables.Chain{Name: ch.name, Table: t, Type: ch.typ,
			Hooknum: ch.hook, Priority: ch.prio, Policy: &accept})
	}
	for _, r := range firewallRules(m.cfg, m.names, m.dns, dropUplinkForwarding) {
		c.AddRule(&nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: r.exprs()})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install nftables table inet %s: %w", m.names.table, err)
	}
	return nil
}

// removeFirewall deletes the table if it exists.
func (m *Manager) removeFirewall() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == m.names.table {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("remove nftables table inet %s: %w", t.Name, err)
			}
		}
	}
	return nil
}

// exprs compiles a rule.
func (r rule) exprs() []expr.Any {
	var e []expr.Any
	ifname := func(key expr.MetaKey, name string) {
		op := expr.CmpOpEq
		if len(name) > 0 && name[0] == '!' {
			op, name = expr.CmpOpNeq, name[1:]
		}
		b := make([]byte, unix.IFNAMSIZ)
		copy(b, name)
		e = append(e, &expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: b})
	}
	if r.iif != "" {
		ifname(expr.MetaKeyIIFNAME, r.iif)
	}
	if r.oif != "" {
		ifname(expr.MetaKeyOIFNAME, r.oif)
	}
	if r.established {
		mask := make([]byte, 4)
		binary.NativeEndian.PutUint32(mask, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
		e = append(e,
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)})
	}
	addr := func(p netip.Prefix, src, not bool) {
		proto, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
		if src {
			off = 12
		}
		if p.Addr().Is6() {
			proto, off, n = unix.NFPROTO_IPV6, 24, 16
			if src {
				off = 8
			}
		}
		op := expr.CmpOpEq
		if not {
			op = expr.CmpOpNeq
		}
		mask := make([]byte, n)
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
			&expr.Cmp{Op: op, Register: 1, Data: p.Masked().Addr().AsSlice()})
	}
	if r.saddr.IsValid() {
		addr(r.saddr, true, r.saddrNot)
	}
	if r.daddr.IsValid() {
		addr(r.daddr, false, false)
	}
	if r.proto != 0 {
		port := make([]byte, 2)
		binary.BigEndian.PutUint16(port, r.dport)
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port})
	}
	switch r.verdict {
	case accept:
		e = append(e, &expr.Verdict{Kind: expr.VerdictAccept})
	case drop:
		e = append(e, &expr.Verdict{Kind: expr.VerdictDrop})
	case masquerade:
		e = append(e, &expr.Masq{})
	}
	return e
}
