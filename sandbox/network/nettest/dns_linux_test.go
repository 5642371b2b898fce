package nettest

import (
	"net/netip"
	"testing"
)

// TestDNSAnswer: the test DNS server answers an A query for TestName with
// the address, and NXDOMAIN for other names (pure; runs anywhere).
func TestDNSAnswer(t *testing.T) {
	q := []byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1}
	r := dnsAnswer(q, netip.MustParseAddr("192.0.2.2"))
	if len(r) != len(q)+16 || r[0] != 0x12 || r[1] != 0x34 || r[7] != 1 || r[len(r)-1] != 2 {
		t.Fatalf("answer % x", r)
	}
	q[13] = 'X'
	if r := dnsAnswer(q, netip.MustParseAddr("192.0.2.2")); r[3]&0xf != 3 {
		t.Fatalf("other name: rcode %d, want NXDOMAIN", r[3]&0xf)
	}
}
