package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/drrev/telehandler/sandbox/network"
)

// parseNetworkFlags runs serve's network flags on args and returns what
// networkConfig made of them.
func parseNetworkFlags(t *testing.T, args ...string) (*network.Config, error) {
	t.Helper()
	var cfg *network.Config
	var cfgErr error
	app := &cli.App{Flags: networkFlags(), Action: func(c *cli.Context) error {
		cfg, cfgErr = networkConfig(c, "telehandler")
		return nil
	}}
	if err := app.Run(append([]string{"serve"}, args...)); err != nil {
		t.Fatalf("flags %q: %v", args, err)
	}
	return cfg, cfgErr
}

func TestNetworkFlags(t *testing.T) {
	cfg, err := parseNetworkFlags(t)
	if cfg != nil || err != nil {
		t.Fatalf("no flags: %v, %v; want networking off", cfg, err)
	}
	cfg, err = parseNetworkFlags(t, "--network", "--network-uplink", "eth0", "--network-dns", "192.0.2.53",
		"--network-deny", "10.0.0.0/8", "--network-allow", "10.1.2.3", "--network-subnet", "10.7.0.0/16", "--network-allow-job-to-job")
	if err != nil {
		t.Fatal(err)
	}
	want := network.Config{Parent: "telehandler", Uplink: "eth0", Subnet: netip.MustParsePrefix("10.7.0.0/16"),
		DNS:  []netip.Addr{netip.MustParseAddr("192.0.2.53")},
		Deny: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Allow: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32")},
		AllowJobToJob: true, MaxConnsPerJob: 1024}
	if cfg.Parent != want.Parent || cfg.Uplink != want.Uplink || cfg.Subnet != want.Subnet || cfg.DNS[0] != want.DNS[0] ||
		cfg.Deny[0] != want.Deny[0] || cfg.Allow[0] != want.Allow[0] || !cfg.AllowJobToJob || cfg.MaxConnsPerJob != 1024 {
		t.Errorf("got %+v, want %+v", *cfg, want)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--network"}, "--network-uplink"},
		{[]string{"--network-uplink", "eth0"}, "needs --network"},
		{[]string{"--network-deny", "10.0.0.0/8"}, "needs --network"},
		{[]string{"--network", "--network-uplink", "eth0", "--network-subnet", "10.0.0.0"}, "--network-subnet"},
		{[]string{"--network", "--network-uplink", "eth0", "--network-dns", "dns.example"}, "--network-dns"},
		{[]string{"--network", "--network-uplink", "eth0", "--network-deny", "lan"}, "--network-deny"},
		{[]string{"--network", "--network-uplink", "eth0", "--max-network-jobs-per-user", "-1"}, "--max-network-jobs-per-user"},
		{[]string{"--network", "--network-uplink", "eth0", "--network-max-conns-per-job", "-1"}, "--network-max-conns-per-job"},
	} {
		if _, err := parseNetworkFlags(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %s", tc.args, err, tc.want)
		}
	}
}
