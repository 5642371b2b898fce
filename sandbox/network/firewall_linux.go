package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

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
	m.installPorts(c)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("install nftables tables inet and bridge %s: %w", m.names.table, err)
	}
	return nil
}

// removeFirewall deletes the tables (inet and bridge) if they exist.
func (m *Manager) removeFirewall() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == m.names.table && (t.Family == nftables.TableFamilyINet || t.Family == nftables.TableFamilyBridge) {
			c.DelTable(t)
			if err := c.Flush(); err != nil {
				return fmt.Errorf("remove nftables table %s: %w", t.Name, err)
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
