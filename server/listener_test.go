package server

import (
	"net"
	"testing"
)

// TestSourceOf checks how connections are grouped per source: an IPv4
// address alone, an IPv6 address by its /64 (one host usually holds a
// whole /64), an IPv4-mapped IPv6 address as its IPv4 address.
func TestSourceOf(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:1234":             "127.0.0.1/32",
		"[::ffff:10.1.2.3]:80":       "10.1.2.3/32",
		"[2001:db8:1:2:aaaa::1]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::9]:443": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:22":          "fe80::/64",
		"[::1]:7443":                 "::/64",
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := sourceOf(a).String(); got != want {
			t.Errorf("sourceOf(%s) = %s, want %s", addr, got, want)
		}
	}
	if a, b := sourceOf(&net.TCPAddr{IP: net.ParseIP("10.0.0.1")}), sourceOf(&net.TCPAddr{IP: net.ParseIP("10.0.0.2")}); a == b {
		t.Error("two IPv4 addresses share a source")
	}
}
