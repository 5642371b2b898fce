package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/drrev/telehandler/sandbox/network"
)

// networkFlags are serve's job-network flags.
func networkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "network", EnvVars: []string{"TELEHANDLER_NETWORK"},
			Usage: "let jobs started with --network reach the outside world (egress only, through NAT on --network-uplink); changes this host's forwarding and firewall (see README, Networking)"},
		&cli.StringFlag{Name: "network-subnet", Value: network.DefaultSubnet.String(), EnvVars: []string{"TELEHANDLER_NETWORK_SUBNET"},
			Usage: "IPv4 subnet of the jobs' addresses (/16 to /29); its first address is the jobs' gateway, on a bridge named after --cgroup-parent"},
		&cli.StringFlag{Name: "network-uplink", EnvVars: []string{"TELEHANDLER_NETWORK_UPLINK"},
			Usage: "host interface the jobs' traffic leaves by, masqueraded (required with --network; for example the interface of `ip route show default`)"},
		&cli.StringSliceFlag{Name: "network-dns", EnvVars: []string{"TELEHANDLER_NETWORK_DNS"},
			Usage: "resolver written in the jobs' resolv.conf (repeatable, up to 3; default: the host's /etc/resolv.conf ones, which must not be loopback)"},
		&cli.StringSliceFlag{Name: "network-deny", EnvVars: []string{"TELEHANDLER_NETWORK_DENY"},
			Usage: "CIDR jobs may not reach, on top of 169.254.0.0/16 and fd00:ec2::254 (repeatable), for example your LAN: --network-deny 10.0.0.0/8"},
		&cli.StringSliceFlag{Name: "network-allow", EnvVars: []string{"TELEHANDLER_NETWORK_ALLOW"},
			Usage: "CIDR jobs may reach even inside a denied one (repeatable); never opens this host itself"},
		&cli.BoolFlag{Name: "network-allow-job-to-job", EnvVars: []string{"TELEHANDLER_NETWORK_ALLOW_JOB_TO_JOB"},
			Usage: "let networked jobs connect to each other (off: they cannot)"},
		&cli.IntFlag{Name: "network-max-conns-per-job", Value: 1024, EnvVars: []string{"TELEHANDLER_NETWORK_MAX_CONNS_PER_JOB"},
			Usage: "most connections a networked job may have open through the uplink at once (the host's connection-tracking table is shared; 0 = no limit)"},
		&cli.IntFlag{Name: "max-network-jobs-per-user", Value: 10, EnvVars: []string{"TELEHANDLER_MAX_NETWORK_JOBS_PER_USER"},
			Usage: "most networked jobs one user may run at once (0 = no cap but --max-jobs)"},
	}
}

// networkConfig reads the job-network flags; nil when --network is off.
// Network flags without --network are an error rather than silently
// ignored.
func networkConfig(c *cli.Context, parent string) (*network.Config, error) {
	if !c.Bool("network") {
		for _, f := range []string{"network-uplink", "network-dns", "network-deny", "network-allow", "network-allow-job-to-job", "network-max-conns-per-job"} {
			if c.IsSet(f) {
				return nil, fmt.Errorf("--%s needs --network (job networking is off by default)", f)
			}
		}
		return nil, nil
	}
	if c.String("network-uplink") == "" {
		return nil, errors.New("--network needs --network-uplink IFACE, the host interface the jobs' traffic leaves by (for example the one in `ip route show default`); it is never guessed")
	}
	if c.Int("max-network-jobs-per-user") < 0 {
		return nil, errors.New("--max-network-jobs-per-user must be 0 (no cap) or more")
	}
	subnet, err := netip.ParsePrefix(c.String("network-subnet"))
	if err != nil {
		return nil, fmt.Errorf("--network-subnet: %w (for example %s)", err, network.DefaultSubnet)
	}
	if c.Int("network-max-conns-per-job") < 0 {
		return nil, errors.New("--network-max-conns-per-job must be 0 (no limit) or more")
	}
	cfg := &network.Config{Parent: parent, Subnet: subnet, Uplink: c.String("network-uplink"),
		AllowJobToJob: c.Bool("network-allow-job-to-job"), MaxConnsPerJob: c.Int("network-max-conns-per-job")}
	for _, s := range c.StringSlice("network-dns") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("--network-dns: %w", err)
		}
		cfg.DNS = append(cfg.DNS, a)
	}
	if cfg.Deny, err = network.ParseCIDRs(c.StringSlice("network-deny")); err != nil {
		return nil, fmt.Errorf("--network-deny: %w", err)
	}
	if cfg.Allow, err = network.ParseCIDRs(c.StringSlice("network-allow")); err != nil {
		return nil, fmt.Errorf("--network-allow: %w", err)
	}
	return cfg, nil
}

// startNetwork sets the job network up (removing what a crashed run of the
// same parent left) and logs what it changed on the host.
func startNetwork(cfg *network.Config, logger *slog.Logger) (*network.Manager, error) {
	m, err := network.New(*cfg)
	if err != nil {
		return nil, fmt.Errorf("--network: %w", err)
	}
	logger.Warn("job networking on: IPv4 forwarding enabled on the uplink and the jobs' bridge, nftables table added; jobs reach the outside world, never this host",
		"bridge", m.Bridge(), "gateway", m.Gateway().String(), "uplink", cfg.Uplink, "nftables_table", "inet "+m.Table(), "dns", fmt.Sprint(m.DNS()))
	return m, nil
}
