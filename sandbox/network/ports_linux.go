package network

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Per-port anti-spoofing, in a bridge-family table of the same name as the
// inet one: a root job can forge frames (CAP_NET_RAW, in Docker's default
// set) or change its own addresses. From a job's port, the bridge passes
// only IPv4 and ARP frames from the job's own MAC, with the job's own IPv4
// address as the sender: a job cannot poison the host's ARP cache to take
// another job's traffic, nor send as another job.

const portsChain = "ports"

// installPorts creates the bridge table and its prerouting chain.
func (m *Manager) installPorts(c *nftables.Conn) {
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyBridge, Name: m.names.table})
	accept := nftables.ChainPolicyAccept
	c.AddChain(&nftables.Chain{Name: portsChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter, Policy: &accept})
}

func (m *Manager) portsTable() (*nftables.Table, *nftables.Chain) {
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: m.names.table}
	return t, &nftables.Chain{Name: portsChain, Table: t}
}

// addPortRules admits from veth only frames of mac carrying addr.
func (m *Manager) addPortRules(veth string, mac net.HardwareAddr, addr netip.Addr) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t, ch := m.portsTable()
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, veth)
	iif := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
	}
	etherType := func(op expr.CmpOp, types ...uint16) []expr.Any {
		e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2}}
		for _, ty := range types {
			b := make([]byte, 2)
			binary.BigEndian.PutUint16(b, ty)
			e = append(e, &expr.Cmp{Op: op, Register: 1, Data: b})
		}
		return e
	}
	ip := addr.AsSlice()
	rules := [][]expr.Any{
		// Another source MAC.
		{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: mac}},
		// Neither IPv4 nor ARP (IPv6, VLAN tags, anything else).
		etherType(expr.CmpOpNeq, unix.ETH_P_IP, unix.ETH_P_ARP),
		// IPv4 from another address.
		append(etherType(expr.CmpOpEq, unix.ETH_P_IP),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ip}),
		// ARP claiming another address or another MAC (sender fields).
		append(etherType(expr.CmpOpEq, unix.ETH_P_ARP),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ip}),
		append(etherType(expr.CmpOpEq, unix.ETH_P_ARP),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 6},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: mac}),
	}
	for _, r := range rules {
		e := append(append([]expr.Any{}, iif...), r...)
		e = append(e, &expr.Verdict{Kind: expr.VerdictDrop})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e, UserData: []byte(veth)})
	}
	if m.cfg.MaxConnsPerJob > 0 {
		c.InsertRule(m.connLimitRule(veth, addr))
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("anti-spoofing rules of %s: %w", veth, err)
	}
	return nil
}

// connLimitRule drops the job's new forwarded connections past
// Config.MaxConnsPerJob open at once: the host's connection-tracking table
// is shared, and a job must not fill it. First in the inet table's forward
// chain, tagged with the veth's name like the port rules.
func (m *Manager) connLimitRule(veth string, addr netip.Addr) *nftables.Rule {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: m.names.table}
	r := rule{chain: "forward", iif: m.names.bridge, saddr: netip.PrefixFrom(addr, 32)}
	e := r.exprs()
	e = e[:len(e)-1] // r's verdict (accept): replaced below
	newBit := make([]byte, 4)
	binary.NativeEndian.PutUint32(newBit, expr.CtStateBitNEW)
	e = append(e,
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: newBit, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Connlimit{Count: uint32(m.cfg.MaxConnsPerJob), Flags: expr.NFT_CONNLIMIT_F_INV},
		&expr.Verdict{Kind: expr.VerdictDrop})
	return &nftables.Rule{Table: t, Chain: &nftables.Chain{Name: "forward", Table: t}, Exprs: e, UserData: []byte(veth)}
}

// delPortRules removes veth's rules; none (or no table) is not an error.
func (m *Manager) delPortRules(veth string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t, ch := m.portsTable()
	inet := &nftables.Table{Family: nftables.TableFamilyINet, Name: m.names.table}
	n := 0
	for _, tc := range []struct {
		t  *nftables.Table
		ch *nftables.Chain
	}{{t, ch}, {inet, &nftables.Chain{Name: "forward", Table: inet}}} {
		rules, err := c.GetRules(tc.t, tc.ch)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("list the rules of %s: %w", veth, err)
		}
		for _, r := range rules {
			if bytes.Equal(r.UserData, []byte(veth)) {
				if err := c.DelRule(r); err != nil {
					return err
				}
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove anti-spoofing rules of %s: %w", veth, err)
	}
	return nil
}
