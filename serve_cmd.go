package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/drrev/telehandler/certgen"
	"github.com/drrev/telehandler/jobrunner"
	"github.com/drrev/telehandler/limits"
	"github.com/drrev/telehandler/sandbox"
	"github.com/drrev/telehandler/server"
)

// serveCommand is `telehandler serve`: the worker daemon.
func serveCommand() *cli.Command {
	def := limitValues(sandbox.DefaultLimits())
	max := limitValues(server.DefaultMaxLimits())
	flags := []cli.Flag{
		&cli.StringFlag{Name: "listen", Value: server.DefaultListen, EnvVars: []string{"TELEHANDLER_LISTEN"},
			Usage: "TCP address to listen on"},
		&cli.StringFlag{Name: "state-dir", Value: "/var/lib/telehandler", EnvVars: []string{"TELEHANDLER_STATE_DIR"},
			Usage: "directory for the jobs' output logs (created 0700; must be owned by root and writable by no one else)"},
		&cli.StringFlag{Name: "ca", EnvVars: []string{"TELEHANDLER_SERVER_CA"},
			Usage: "CA certificate (PEM) that client certificates must be signed by (certgen's ca.crt)"},
		&cli.StringFlag{Name: "cert", EnvVars: []string{"TELEHANDLER_SERVER_CERT"},
			Usage: "the server's certificate (PEM; certgen's server.crt)"},
		&cli.StringFlag{Name: "key", EnvVars: []string{"TELEHANDLER_SERVER_KEY"},
			Usage: "the server's private key (PEM; certgen's server.key)"},
		&cli.StringFlag{Name: "deny-list", EnvVars: []string{"TELEHANDLER_DENY_LIST"},
			Usage: "file of refused client certificates: serials in hex (as certgen and openssl x509 -serial print them) or identities, one per line, # comments; reloaded on SIGHUP"},
		&cli.StringFlag{Name: "cgroup-parent", Value: "telehandler", EnvVars: []string{"TELEHANDLER_CGROUP_PARENT"},
			Usage: "name of the parent cgroup of the jobs' cgroups, under each hierarchy; must start with \"telehandler\" (everything in it is killed at start)"},
		&cli.StringFlag{Name: "output-cap", Value: "1GiB", EnvVars: []string{"TELEHANDLER_OUTPUT_CAP"},
			Usage: "most output kept per job; past it output is dropped and status says truncated"},
		&cli.StringFlag{Name: "retain", Value: "7d", EnvVars: []string{"TELEHANDLER_RETAIN"},
			Usage: "how long an ended job (status and output) is kept: a Go duration (90m, 36h) or days (7d)"},
		&cli.StringFlag{Name: "retain-bytes", Value: "10GiB", EnvVars: []string{"TELEHANDLER_RETAIN_BYTES"},
			Usage: "most output kept on disk for all jobs; past it the jobs that ended first are removed (running jobs never are)"},
		&cli.IntFlag{Name: "retain-jobs", Value: jobrunner.DefaultRetainJobs, EnvVars: []string{"TELEHANDLER_RETAIN_JOBS"},
			Usage: "most ended jobs kept; past it the jobs that ended first are removed"},
		&cli.StringFlag{Name: "run-as", Value: "dynamic", EnvVars: []string{"TELEHANDLER_RUN_AS"},
			Usage: "user jobs run as: dynamic (a uid of its own for each job, from --uid-range), or one fixed user for all: UID:GID, UID, NAME[:GROUP], or root (with Docker's 14 default capabilities only)"},
		&cli.StringFlag{Name: "uid-range", Value: sandbox.DefaultUIDRange.String(), EnvVars: []string{"TELEHANDLER_UID_RANGE"},
			Usage: "FIRST-LAST: the uids (and gids) of --run-as dynamic jobs, one per running job; no id of /etc/passwd, /etc/group, /etc/subuid or /etc/subgid may fall in it, and servers sharing a host need disjoint ranges"},
		&cli.StringFlag{Name: "tmpfs-size", Value: "256MiB", EnvVars: []string{"TELEHANDLER_TMPFS_SIZE"},
			Usage: "size of each of a job's private tmpfs mounts (/tmp, /var/tmp, /run, /dev/shm, its home /home/job); their pages count against the job's memory limit"},
		&cli.StringSliceFlag{Name: "bind-ro", EnvVars: []string{"TELEHANDLER_BIND_RO"},
			Usage: "HOST:JOB: bind host path HOST read-only at JOB in every job's view (repeatable)"},
		&cli.StringSliceFlag{Name: "bind-rw", EnvVars: []string{"TELEHANDLER_BIND_RW"},
			Usage: "HOST:JOB: bind host path HOST read-write at JOB in every job's view, shared by all jobs (repeatable)"},
		&cli.StringSliceFlag{Name: "image", EnvVars: []string{"TELEHANDLER_IMAGES"},
			Usage: "NAME=DIR: a root file system (an extracted Alpine minirootfs, a busybox tree: DIR needs proc, dev and sys directories) jobs may ask for with start --image NAME (repeatable)"},
		&cli.IntFlag{Name: "max-jobs", Value: server.DefaultMaxJobs, EnvVars: []string{"TELEHANDLER_MAX_JOBS"},
			Usage: "most jobs running at once"},
		&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: []string{"TELEHANDLER_LOG_FORMAT"},
			Usage: "log format on stderr: text or json"},
		&cli.StringFlag{Name: "pprof", EnvVars: []string{"TELEHANDLER_PPROF"}, Hidden: true,
			Usage: "serve net/http/pprof on this address, without TLS or authentication: use a loopback address such as 127.0.0.1:6060 (off when empty)"},
		&cli.StringFlag{Name: "seccomp", Value: "on", EnvVars: []string{"TELEHANDLER_SECCOMP"},
			Usage: "the seccomp filter of every job (Docker's default profile: no namespaces, mounts, keyrings, bpf, io_uring, ...): on, or off to let jobs reach the whole kernel (logged as a warning)"},
		&cli.DurationFlag{Name: "shutdown-timeout", Value: server.DefaultShutdownTimeout, EnvVars: []string{"TELEHANDLER_SHUTDOWN_TIMEOUT"},
			Usage: "how long stopping the jobs may take on SIGINT/SIGTERM"},
	}
	// Fair shares: per user and per client (SECURITY.md, "Fair shares").
	flags = append(flags,
		&cli.IntFlag{Name: "max-jobs-per-user", EnvVars: []string{"TELEHANDLER_MAX_JOBS_PER_USER"},
			DefaultText: "a quarter of --max-jobs, rounded up",
			Usage:       "most jobs one user may run at once (admins have no per-user cap)"},
		&cli.IntFlag{Name: "admin-reserved-jobs", EnvVars: []string{"TELEHANDLER_ADMIN_RESERVED_JOBS"},
			DefaultText: "a twentieth of --max-jobs, at least 1",
			Usage:       "job slots of --max-jobs that only admins may take, so users never lock them out (0 = none)"},
		&cli.IntFlag{Name: "max-conns", Value: server.DefaultMaxConns, EnvVars: []string{"TELEHANDLER_MAX_CONNS"},
			Usage: "most connections open at once, TLS handshakes included (at most half of ulimit -n); more wait to be accepted"},
		&cli.IntFlag{Name: "max-conns-per-ip", Value: server.DefaultMaxConnsPerIP, EnvVars: []string{"TELEHANDLER_MAX_CONNS_PER_IP"},
			Usage: "most of them from one IP address (IPv6: one /64); more are closed at once. Clients behind one NAT share it"},
		&cli.IntFlag{Name: "max-streams-per-conn", Value: server.DefaultMaxStreamsPerConn, EnvVars: []string{"TELEHANDLER_MAX_STREAMS_PER_CONN"},
			Usage: "most concurrent calls on one connection"},
		&cli.IntFlag{Name: "max-watchers-per-user", Value: server.DefaultMaxWatchersPerUser, EnvVars: []string{"TELEHANDLER_MAX_WATCHERS_PER_USER"},
			Usage: "most output streams (watch) one identity may have open at once, over all its connections"},
		&cli.StringFlag{Name: "max-header-size", Value: "16KiB", EnvVars: []string{"TELEHANDLER_MAX_HEADER_SIZE"},
			Usage: "most header (metadata) bytes of one call"},
		&cli.DurationFlag{Name: "handshake-timeout", Value: server.DefaultHandshakeTimeout, EnvVars: []string{"TELEHANDLER_HANDSHAKE_TIMEOUT"},
			Usage: "a connection that has not completed TLS within it is closed"},
		&cli.DurationFlag{Name: "idle-timeout", Value: server.DefaultIdleTimeout, EnvVars: []string{"TELEHANDLER_IDLE_TIMEOUT"},
			Usage: "a connection without a call for that long is closed (clients reconnect)"},
		&cli.IntFlag{Name: "shim-pool", Value: sandbox.DefaultShimPool, EnvVars: []string{"TELEHANDLER_SHIM_POOL"},
			Usage: "N: warm shims kept ready (namespaces, cgroup, view and user set up; about 4 MiB of memory and one uid each while idle, replaced after 10 minutes unused), so that a --run-as dynamic job without --image, --network or a terminal skips the shim's start; 0 = none, every job starts cold"},
	)
	flags = append(flags, networkFlags()...)
	flags = append(flags, limits.Flags("default-", "default for jobs that do not ask: %s", &def)...)
	flags = append(flags, limits.Flags("max-", "most a job may ask for: %s", &max)...)
	return &cli.Command{
		Name:      "serve",
		Usage:     "run the server: start jobs for clients with a certificate of the CA (as root, on Linux)",
		ArgsUsage: " ",
		Description: `Serves the Foreman gRPC API over mutual TLS 1.3 on --listen. Clients need a
certificate signed by --ca; its common name is who they are, its role (user
or admin, written by telehandler certgen) what they may do: a user sees and
controls its own jobs, an admin every job.

Jobs run in their own PID, mount, network, UTS, IPC and cgroup namespaces, as
--run-as (a uid of their own by default), under a seccomp filter modelled on
Docker's default profile (--seccomp=off removes it), each in a cgroup under
--cgroup-parent with the limits the client asked for (within the --max-* limits) or the
--default-* limits. Their output and a record of each are kept under
--state-dir, so that status and output outlive a restart; a job that ran
when the server died comes back FAILED ("the server stopped while it ran").
Ended jobs are removed after --retain, or sooner, the first to end first,
once their output passes --retain-bytes or their number --retain-jobs
(telehandler rm removes one at once).

Each job sees the host's files read-only (or an --image), with private tmpfs
mounts of --tmpfs-size on /tmp, /var/tmp, /run, /dev/shm and its home
/home/job (its HOME and default working directory), a minimal /dev, and
only its own cgroup under /sys/fs/cgroup. --state-dir and the directories of
--ca, --cert and --key are hidden from jobs. --bind-ro and --bind-rw share
host paths with every job on purpose.

A job's network namespace has only lo. With --network, a job started with
start --network gets egress: a veth to a bridge named after --cgroup-parent,
an address of --network-subnet, NAT through --network-uplink, a resolv.conf
of its own; never this host, other jobs or metadata addresses. This changes
the host's forwarding (on the uplink) and firewall (one nftables table).

SIGHUP reloads --ca, --cert, --key and --deny-list: renew the server's
certificate with certgen --renew server, or shut out a leaked client
certificate before it expires by adding its serial (or its user) to the deny
list, then kill -HUP the server (systemctl reload telehandler). A file that
does not load is logged and the previous configuration kept.

At start, cgroups a crashed earlier run left under --cgroup-parent are
killed and removed. SIGINT or SIGTERM stops accepting calls, stops every
job, removes its cgroup, and exits 0. serve must run as root on Linux.

Fair shares: one user runs at most --max-jobs-per-user jobs, and users leave
--admin-reserved-jobs of --max-jobs to admins. Each client is bounded in
connections (--max-conns, --max-conns-per-ip), the time to complete TLS
(--handshake-timeout), calls per connection, watch streams and header bytes.
--max-pids and --max-memory are lowered at start to what the host has.

Each flag can be set from the environment variable in brackets; the server's
certificate files use TELEHANDLER_SERVER_CA/CERT/KEY, so that the client's
TELEHANDLER_CA/CERT/KEY in the same shell do not leak into it.

Example:
  telehandler certgen --out certs --user alice --user admin:admin
  sudo telehandler serve --ca certs/ca.crt --cert certs/server.crt --key certs/server.key \
      --state-dir /var/lib/telehandler --default-memory 256MiB --max-cpu 2 \
      --bind-ro /srv/datasets:/data --image alpine=/srv/images/alpine
  sudo telehandler serve ... --network --network-uplink eth0 --network-dns 1.1.1.1 \
      --network-deny 10.0.0.0/8 --default-network-bps 5MiB`,
		Flags:  flags,
		Action: runServe,
	}
}

func runServe(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", c.Args().Slice())
	}
	if runtime.GOOS != "linux" {
		return fmt.Errorf("serve runs on Linux only (this is %s): jobs need Linux namespaces and cgroups", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("serve must run as root: it creates namespaces and cgroups for the jobs (try sudo)")
	}
	// A log reader that goes away (serve ... | tee, then Ctrl-C) must not
	// kill the server mid-run, skipping its shutdown (jobs left running,
	// cgroups and the lock file left behind): with SIGPIPE caught, a
	// write to the closed stdout or stderr fails with EPIPE instead. Caught,
	// not ignored, so the jobs' shims and commands start with the default
	// action again (an ignored signal would be inherited through exec).
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)
	if err := checkCertFiles(c); err != nil {
		return err
	}
	parent := c.String("cgroup-parent")
	if !validCgroupParent(parent) {
		return fmt.Errorf("--cgroup-parent %q: must be one name of letters, digits, '.', '_' or '-' starting with \"telehandler\" (everything inside it is killed at start)", parent)
	}
	if err := checkPositiveFlags(c); err != nil {
		return err
	}
	outputCap, err := limits.ParseBytes(c.String("output-cap"))
	if err != nil {
		return fmt.Errorf("--output-cap: %w", err)
	}
	retain, err := parseRetain(c.String("retain"))
	if err != nil {
		return fmt.Errorf("--retain: %w", err)
	}
	retainBytes, err := limits.ParseBytes(c.String("retain-bytes"))
	if err != nil || retainBytes == 0 {
		return fmt.Errorf("--retain-bytes %q: want a size above 0 such as 500MiB or 10GiB", c.String("retain-bytes"))
	}
	if n := c.Int("shim-pool"); n < 0 || n > maxShimPool {
		return fmt.Errorf("--shim-pool %d: want 0 (no warm shims) to %d", n, maxShimPool)
	}
	if c.Int("retain-jobs") <= 0 {
		return fmt.Errorf("--retain-jobs %d: must be more than 0", c.Int("retain-jobs"))
	}
	dynamicUsers := c.String("run-as") == "dynamic"
	var uid, gid *uint32
	if !dynamicUsers {
		if uid, gid, err = parseRunAs(c.String("run-as")); err != nil {
			return fmt.Errorf("--run-as: %w", err)
		}
	}
	sbCfg, err := sandboxConfig(c)
	if err != nil {
		return err
	}
	if err := checkStateDir(c.String("state-dir")); err != nil {
		return err
	}
	defaults, err := limits.FromFlags(c, "default-")
	if err != nil {
		return err
	}
	maxima, err := limits.FromFlags(c, "max-")
	if err != nil {
		return err
	}
	disableSeccomp, err := parseSeccomp(c.String("seccomp"))
	if err != nil {
		return err
	}
	netCfg, err := networkConfig(c, parent)
	if err != nil {
		return err
	}
	logger, err := newLogger(c.String("log-format"))
	if err != nil {
		return err
	}
	if mode, ok := certgen.KeyExposed(c.String("key")); ok {
		logger.Warn("others than root may read the server's key, and pose as this server: chmod 600 it",
			"key", c.String("key"), "mode", fmt.Sprintf("%04o", mode))
	}
	headerBytes, err := limits.ParseBytes(c.String("max-header-size"))
	if err == nil && (headerBytes == 0 || headerBytes > 1<<30) {
		err = errors.New("give a size from 1 byte to 1GiB, such as 16KiB")
	}
	if err != nil {
		return fmt.Errorf("--max-header-size: %w", err)
	}
	adminReserved := c.Int("admin-reserved-jobs")
	if c.IsSet("admin-reserved-jobs") && adminReserved == 0 {
		adminReserved = server.NoAdminReserve
	}
	if addr := c.String("pprof"); addr != "" {
		_, stopPprof, err := servePprof(addr, logger)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	// Before anything is cleaned up: the cleanup of a crashed run's cgroups
	// must never hit the jobs of a server that is still running.
	unlock, err := lockCgroupParent(lockDir, parent)
	if err != nil {
		return err
	}
	defer unlock()

	jobsPids := server.JobsPidsCap()
	cgroups, err := sandbox.NewCgroups(sandbox.CgroupConfig{Parent: parent, ParentPids: jobsPids})
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	sbCfg.Cgroups = cgroups
	sbCfg.DisableSeccomp = disableSeccomp
	// Warm shims are made for dynamic users only (sandbox.jobFitsWarm):
	// with a fixed --run-as they would hold memory for nothing.
	if dynamicUsers {
		sbCfg.ShimPool = c.Int("shim-pool")
		sbCfg.ShimPoolLimits = server.JobDefaultLimits(sandboxLimits(defaults))
	}
	sb, err := sandbox.New(sbCfg)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if disableSeccomp {
		logger.Warn("SECCOMP FILTER OFF (--seccomp=off): jobs can create user namespaces, mount file systems and reach keyrings, bpf, io_uring and perf events, the kernel surface of most container escapes; run without --seccomp=off unless a job needs one of these")
	}
	runnerCfg := jobrunner.Config{
		StateDir:    c.String("state-dir"),
		OutputCap:   int64(min(outputCap, 1<<62)),
		Sandbox:     sb,
		Retain:      retain,
		RetainBytes: int64(min(retainBytes, 1<<62)),
		RetainJobs:  c.Int("retain-jobs"),
		Logger:      logger,
	}
	if netCfg != nil {
		// After the lock, like the cgroups: what a crashed run left is ours.
		netMgr, err := startNetwork(netCfg, logger)
		if err != nil {
			return err
		}
		// Deferred before the runner exists: runs after its Shutdown.
		defer func() {
			if err := netMgr.Close(); err != nil {
				logger.Error("remove the job network", "error", err.Error())
			}
		}()
		runnerCfg.Network = netMgr
	}
	maxNetJobs := 0
	if netCfg != nil {
		maxNetJobs = c.Int("max-network-jobs-per-user")
	}
	runner, err := jobrunner.New(runnerCfg)
	if err != nil {
		return fmt.Errorf("job runner: %w", err)
	}
	// SIGHUP is caught from here on, so that an early one cannot kill
	// the server.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	srv, err := server.New(server.Config{
		Listen:          c.String("listen"),
		CAFile:          c.String("ca"),
		CertFile:        c.String("cert"),
		KeyFile:         c.String("key"),
		DenyListFile:    c.String("deny-list"),
		Runner:          runner,
		DefaultLimits:   sandboxLimits(defaults),
		MaxLimits:       sandboxLimits(maxima),
		MaxJobs:         c.Int("max-jobs"),
		RunAsUID:        uid,
		RunAsGID:        gid,
		DynamicUsers:    dynamicUsers,
		Logger:          logger,
		ShutdownTimeout: c.Duration("shutdown-timeout"),

		// Fair shares (see the flags).
		MaxJobsPerUser: c.Int("max-jobs-per-user"),
		// 0 unless --network: no job gets that far without it anyway.
		MaxNetworkJobsPerUser: maxNetJobs,
		AdminReservedJobs:     adminReserved,
		MaxConns:              c.Int("max-conns"),
		MaxConnsPerIP:         c.Int("max-conns-per-ip"),
		MaxStreamsPerConn:     c.Int("max-streams-per-conn"),
		MaxWatchersPerUser:    c.Int("max-watchers-per-user"),
		MaxHeaderBytes:        int(headerBytes),
		HandshakeTimeout:      c.Duration("handshake-timeout"),
		IdleTimeout:           c.Duration("idle-timeout"),
	})
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.Duration("shutdown-timeout"))
		defer cancel()
		return errors.Join(err, runner.Shutdown(ctx))
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("telehandler serve", "version", version, "cgroup_version", cgroups.Version(),
		"cgroup_parent", parent, "jobs_pids_cap", jobsPids, "state_dir", c.String("state-dir"), "run_as", c.String("run-as"), "seccomp", c.String("seccomp"), "shim_pool", sbCfg.ShimPool)
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for {
			select {
			case <-hup:
				logger.Info("SIGHUP: reloading certificates and deny list")
				srv.Reload() // logs its outcome; a failure keeps the old files
			case <-ctx.Done():
				return
			}
		}
	}()
	err = srv.Serve(ctx)
	stop()
	<-reloaded
	return err
}

// limitValues and sandboxLimits convert between the limit flags' values
// and the sandbox's limits (zero = not set).
func limitValues(l sandbox.Limits) limits.Values {
	return limits.Values{CPUMilli: l.CPUMilli, MemoryBytes: l.MemoryBytes, Pids: l.Pids,
		IOReadBPS: l.IOReadBPS, IOWriteBPS: l.IOWriteBPS, IOReadIOPS: l.IOReadIOPS, IOWriteIOPS: l.IOWriteIOPS,
		NetworkBPS: l.NetworkBPS}
}

func sandboxLimits(v limits.Values) sandbox.Limits {
	return sandbox.Limits{CPUMilli: v.CPUMilli, MemoryBytes: v.MemoryBytes, Pids: v.Pids,
		IOReadBPS: v.IOReadBPS, IOWriteBPS: v.IOWriteBPS, IOReadIOPS: v.IOReadIOPS, IOWriteIOPS: v.IOWriteIOPS,
		NetworkBPS: v.NetworkBPS}
}

// maxShimPool bounds --shim-pool: warm shims hold memory and uids, and
// more than a burst's worth buys nothing (the pool refills in the
// background).
const maxShimPool = 256

// sandboxConfig is the jobs' view and uids from serve's flags: the state
// directory and the directories of the certificate files are hidden from
// jobs (the CA's key usually lives next to the CA's certificate).
func sandboxConfig(c *cli.Context) (sandbox.Config, error) {
	var cfg sandbox.Config
	size, err := limits.ParseBytes(c.String("tmpfs-size"))
	if err != nil || size < 1<<20 {
		return cfg, fmt.Errorf("--tmpfs-size %q: want a size of at least 1MiB, such as 256MiB", c.String("tmpfs-size"))
	}
	cfg.TmpfsSize = size
	first, last, ok := strings.Cut(c.String("uid-range"), "-")
	f, err1 := strconv.ParseUint(first, 10, 32)
	l, err2 := strconv.ParseUint(last, 10, 32)
	if !ok || err1 != nil || err2 != nil || l < f {
		return cfg, fmt.Errorf("--uid-range %q: want FIRST-LAST, such as %s", c.String("uid-range"), sandbox.DefaultUIDRange)
	}
	cfg.UIDs = sandbox.UIDRange{First: uint32(f), Count: uint32(l - f + 1)}
	for _, flag := range []string{"state-dir", "ca", "cert", "key"} {
		p, err := filepath.Abs(c.String(flag))
		if err != nil {
			return cfg, fmt.Errorf("--%s: %w", flag, err)
		}
		if flag != "state-dir" {
			p = filepath.Dir(p)
		}
		cfg.Hide = append(cfg.Hide, p)
	}
	for _, flag := range []string{"bind-ro", "bind-rw"} {
		for _, v := range c.StringSlice(flag) {
			host, job, ok := strings.Cut(v, ":")
			if !ok || host == "" || job == "" {
				return cfg, fmt.Errorf("--%s %q: want HOST:JOB, such as /srv/data:/data", flag, v)
			}
			cfg.Binds = append(cfg.Binds, sandbox.Bind{Host: host, Job: job, Writable: flag == "bind-rw"})
		}
	}
	for _, v := range c.StringSlice("image") {
		name, dir, ok := strings.Cut(v, "=")
		if !ok || name == "" || dir == "" {
			return cfg, fmt.Errorf("--image %q: want NAME=DIR, such as alpine=/srv/images/alpine", v)
		}
		if cfg.Images == nil {
			cfg.Images = make(map[string]string)
		}
		if _, dup := cfg.Images[name]; dup {
			return cfg, fmt.Errorf("--image %s: given twice", name)
		}
		cfg.Images[name] = dir
	}
	return cfg, nil
}

// servePprof serves the runtime profiles (net/http/pprof) on addr until
// the returned function is called, and returns the address it listens on.
// It is for profiling the server in place; the endpoint has no TLS and no
// authentication, so addr should be a loopback address.
func servePprof(addr string, logger *slog.Logger) (net.Addr, func(), error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("pprof", "error", err.Error())
		}
	}()
	logger.Warn("serving pprof without TLS or authentication", "addr", lis.Addr().String())
	return lis.Addr(), func() {
		hs.Close()
		<-done
	}, nil
}

// checkCertFiles says which certificate file is missing and how to make it.
func checkCertFiles(c *cli.Context) error {
	const hint = "create the certificates with: telehandler certgen --out DIR --user NAME, then serve --ca DIR/ca.crt --cert DIR/server.crt --key DIR/server.key"
	for _, f := range []struct{ flag, env string }{
		{"ca", "TELEHANDLER_SERVER_CA"}, {"cert", "TELEHANDLER_SERVER_CERT"}, {"key", "TELEHANDLER_SERVER_KEY"},
	} {
		path := c.String(f.flag)
		if path == "" {
			return fmt.Errorf("--%s (%s) is required\nhint: %s", f.flag, f.env, hint)
		}
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("--%s: %w\nhint: %s", f.flag, err, hint)
		}
	}
	return nil
}

// parseRetain reads --retain: a Go duration, or a whole number of days
// ("7d"); it must be positive.
func parseRetain(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q: want a duration such as 36h or a number of days such as 7d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want a duration such as 36h or a number of days such as 7d", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be more than 0", s)
	}
	return d, nil
}

// positiveIntFlags and positiveDurationFlags are the serve flags that must
// be above zero when given: the server would otherwise take 0 for its
// default (or a negative value for none at all), not for what was typed.
var (
	positiveIntFlags      = []string{"max-jobs", "max-jobs-per-user", "max-conns", "max-conns-per-ip", "max-streams-per-conn", "max-watchers-per-user"}
	positiveDurationFlags = []string{"handshake-timeout", "idle-timeout", "shutdown-timeout"}
)

// checkPositiveFlags refuses a count or a time of zero or less given to one
// of positiveIntFlags or positiveDurationFlags.
func checkPositiveFlags(c *cli.Context) error {
	for _, name := range positiveIntFlags {
		if v := c.Int(name); c.IsSet(name) && v <= 0 {
			return fmt.Errorf("--%s %d: must be at least 1 (leave it out for the default)", name, v)
		}
	}
	for _, name := range positiveDurationFlags {
		if v := c.Duration(name); c.IsSet(name) && v <= 0 {
			return fmt.Errorf("--%s %v: must be more than 0, such as 10s (leave it out for the default)", name, v)
		}
	}
	return nil
}

// validCgroupParent accepts one path element starting with "telehandler",
// so that the server only ever writes into (and cleans) its own cgroups.
func validCgroupParent(s string) bool {
	return regexp.MustCompile(`^telehandler[A-Za-z0-9._-]*$`).MatchString(s) && !strings.Contains(s, "..")
}

// parseRunAs parses --run-as: "root", "UID:GID", "UID", "NAME" or
// "NAME:GROUP". root is nil, nil: the job keeps the shim's credentials.
func parseRunAs(s string) (*uint32, *uint32, error) {
	if s == "root" || s == "0:0" || s == "0" {
		return nil, nil, nil
	}
	us, gs, hasGroup := strings.Cut(s, ":")
	uid, err := lookupID(us, func(name string) (string, string, error) {
		u, err := user.Lookup(name)
		if err != nil {
			return "", "", err
		}
		return u.Uid, u.Gid, nil
	})
	if err != nil {
		return nil, nil, err
	}
	gid := uid[1]
	if hasGroup {
		g, err := lookupID(gs, func(name string) (string, string, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return "", "", err
			}
			return g.Gid, g.Gid, nil
		})
		if err != nil {
			return nil, nil, err
		}
		gid = g[0]
	}
	return &uid[0], &gid, nil
}

// lookupID parses a numeric id (returned twice) or looks a name up, which
// yields its id and its primary group's id.
func lookupID(s string, lookup func(string) (string, string, error)) ([2]uint32, error) {
	if s == "" {
		return [2]uint32{}, errors.New("empty user or group")
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return [2]uint32{uint32(n), uint32(n)}, nil
	}
	a, b, err := lookup(s)
	if err != nil {
		return [2]uint32{}, err
	}
	x, err1 := strconv.ParseUint(a, 10, 32)
	y, err2 := strconv.ParseUint(b, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return [2]uint32{}, fmt.Errorf("%s: %w", s, err)
	}
	return [2]uint32{uint32(x), uint32(y)}, nil
}

// parseSeccomp parses --seccomp: "on" (the default) or "off", which
// returns true: disable the filter.
func parseSeccomp(s string) (bool, error) {
	switch s {
	case "on":
		return false, nil
	case "off":
		return true, nil
	}
	return false, fmt.Errorf("--seccomp %q: use on (the default) or off", s)
}

// newLogger logs to stderr as text or JSON.
func newLogger(format string) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// lockDir holds one lock file per cgroup parent in use (a tmpfs: the locks
// die with the host's boot, like the cgroups).
const lockDir = "/run/telehandler"
