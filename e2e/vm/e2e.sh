#!/bin/sh
# e2e.sh TELEHANDLER: end-to-end run inside the pure cgroup v2 VM (busybox sh, as
# root), started by scripts/cgroupv2-vm/guest.sh as part of `make test-cgroupv2`.
#
# certgen -> serve on 127.0.0.1 -> CLI start --watch / start with limits / status /
# stop, reading the job's cgroup v2 files from OUTSIDE the job (as the server sees
# them) -> SIGTERM the server -> no cgroup left under /sys/fs/cgroup/telehandler, nor
# the parent itself, nor its lock file.
# Every step prints what it checks; the first failed check ends the run non-zero.
set -u
th=$(readlink -f "${1:-./telehandler}")
cg=/sys/fs/cgroup/telehandler
work=$(mktemp -d /tmp/e2e.XXXXXX)
addr=127.0.0.1:7443
server_pid=

say() { echo "e2e: $*"; }
fail() {
	echo "e2e: FAIL: $*"
	if [ -n "$server_pid" ]; then
		echo "----- server log -----"; cat "$work/server.log"
		kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid"
	fi
	exit 1
}
# t CMD...: run a CLI command with a deadline (TCG is slow, a hang must not be).
t() { timeout 120 "$th" "$@"; }
# expect_file FILE VALUE: the cgroup file FILE holds exactly VALUE.
expect_file() {
	v=$(cat "$1" 2>&1) || fail "cannot read $1: $v"
	[ "$v" = "$2" ] || fail "$1 is '$v', want '$2'"
	say "ok: $1 = $v"
}

say "telehandler $("$th" --version 2>&1 | head -n1)"

# --- certificates and server ---------------------------------------------------
t certgen --out "$work/certs" --user alice --user root:admin >"$work/certgen.log" 2>&1 ||
	{ cat "$work/certgen.log"; fail "certgen"; }
ls "$work/certs"

# A cgroup "left by a crashed earlier run", with a process in a sub-cgroup the job
# made: serve must kill it and remove both cgroups before it serves.
mkdir -p "$cg/stale/sub" || fail "mkdir $cg/stale/sub"
sleep 1000 &
stale_pid=$!
echo $stale_pid >"$cg/stale/sub/cgroup.procs" || fail "cannot move $stale_pid into $cg/stale/sub"

# The server runs where systemd would put it, in a service cgroup that is not
# the root (which the cgroup v2 no-internal-process rule exempts) and not an
# ancestor of the jobs' cgroups.
svc=/sys/fs/cgroup/system.slice/telehandler.service
mkdir -p "$svc" || fail "mkdir $svc"
sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$svc" \
	"$th" serve --listen "$addr" --state-dir "$work/state" \
	--ca "$work/certs/ca.crt" --cert "$work/certs/server.crt" --key "$work/certs/server.key" \
	>"$work/server.log" 2>&1 &
server_pid=$!

export TELEHANDLER_ADDR=$addr TELEHANDLER_CA=$work/certs/ca.crt \
	TELEHANDLER_CERT=$work/certs/alice.crt TELEHANDLER_KEY=$work/certs/alice.key

# Wait (with a deadline) until the server answers; it may be slow under TCG.
i=0
until t list >/dev/null 2>&1; do
	kill -0 "$server_pid" 2>/dev/null || { server_pid=; cat "$work/server.log"; fail "server exited"; }
	i=$((i + 1)); [ $i -lt 300 ] || fail "server did not answer within 60s"
	sleep 0.2
done
say "ok: server answers on $addr"
c=$(cat /proc/$server_pid/cgroup)
[ "$c" = "0::/system.slice/telehandler.service" ] || fail "server is in '$c'"
[ ! -d "$cg/stale" ] || fail "serve left the stale cgroup $cg/stale"
wait $stale_pid 2>/dev/null
kill -0 $stale_pid 2>/dev/null && fail "stale process $stale_pid still alive"
say "ok: serve killed the stale job $stale_pid and removed $cg/stale and $cg/stale/sub"

# --- a job prints its own /proc/self/cgroup -------------------------------------
out=$(t start --watch -- cat /proc/self/cgroup) || fail "start --watch exited $?: $out"
say "job's /proc/self/cgroup: $out"
# Pure v2: one line "0::/telehandler/<job id>" ("0::/" if the job had its own
# cgroup namespace); a v1 host would list one line per hierarchy.
[ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -Eq '^0::/(telehandler/[a-z0-9]+)?$' ||
	fail "job's /proc/self/cgroup is not a single cgroup v2 line in its job cgroup"
say "ok: start --watch streamed the job's cgroup (v2)"

# start --watch and watch exit with the job's exit code and keep the streams apart.
t start --watch -- sh -c 'echo to-stdout; echo to-stderr >&2; exit 3' >"$work/out3" 2>"$work/err3"
rc=$?
[ $rc -eq 3 ] || fail "start --watch of 'exit 3' exited $rc"
grep -qx to-stdout "$work/out3" || fail "stdout of the job not on stdout: $(cat "$work/out3")"
grep -qx to-stderr "$work/err3" || fail "stderr of the job not on stderr: $(cat "$work/err3")"
say "ok: start --watch exits with the job's code and keeps stderr apart"
job3=$(t start -- sh -c 'echo late; exit 4') || fail "start: $job3"
out=$(t watch "$job3")
rc=$?
[ $rc -eq 4 ] && [ "$out" = late ] || fail "watch $job3 exited $rc with '$out', want 4 and 'late'"
say "ok: watch $job3 replays the output from byte 0 and exits 4"

# The memory limit holds: dd's 64 MiB buffer (filled in one read, so memory.high
# throttling cannot drag it out) against 16 MiB is OOM-killed, and the CLI says so.
t start --watch --memory 16MiB -- dd if=/dev/zero of=/dev/null bs=64M count=1 2>"$work/oom"
rc=$?
[ $rc -eq 137 ] || fail "OOM job exited $rc, want 137 (SIGKILL): $(cat "$work/oom")"
grep -q "ran out of memory" "$work/oom" || fail "no out-of-memory message: $(cat "$work/oom")"
say "ok: a 64 MiB dd under --memory 16MiB was OOM-killed: $(grep 'out of memory' "$work/oom")"

# job_cgroup ID: the job's cgroup directory. A job started from a warm shim
# (serve --shim-pool, on by default) keeps the shim's cgroup, pool-*: it is
# the pool-* cgroup holding a process that is neither a warm shim waiting for
# its job (BIN __child warm) nor one the server is starting (its fork, with the
# server's command line until it execs); callers have one job running.
job_cgroup() {
	if [ -d "$cg/$1" ]; then echo "$cg/$1"; return; fi
	for d in "$cg"/pool-*; do
		for p in $(cat "$d/cgroup.procs" 2>/dev/null); do
			case "$(tr '\0' ' ' <"/proc/$p/cmdline")" in
			*" __child warm " | "$th serve "*) ;;
			*) echo "$d"; return ;;
			esac
		done
	done
}

# --- a job with explicit limits, its cgroup files read from outside --------------
job=$(t start --memory 64MiB --cpu 20% --pids 50 \
	--io-read-bps 10MiB --io-write-bps 5MiB --io-write-iops 500 -- sleep 1000) ||
	fail "start with limits: $job"
id=${job#jobs/}
say "started $job"
st=$(t status "$job") || fail "status $job: $st"
echo "$st"
echo "$st" | grep -q RUNNING || fail "status of $job does not say RUNNING"
say "ok: status says RUNNING"

dir=$(job_cgroup "$id")
[ -n "$dir" ] && [ -d "$dir" ] || { find /sys/fs/cgroup -path '*telehandler*' -type d; fail "no cgroup $dir"; }
say "job cgroup $dir: $(cat "$dir/cgroup.controllers")"
expect_file "$dir/memory.max" $((64 << 20))
expect_file "$dir/memory.high" $(((64 << 20) * 3 / 4))
[ -f "$dir/memory.swap.max" ] && expect_file "$dir/memory.swap.max" 0
expect_file "$dir/cpu.max" "20000 100000"
expect_file "$dir/pids.max" 50
# io.max: on every real disk (here only the virtio disk, a whole disk, not a
# partition), the requested rates and the default read IOPS.
expect_file "$dir/io.max" "$SCRATCH_MAJMIN rbps=$((10 << 20)) wbps=$((5 << 20)) riops=1000 wiops=500"
# Every process of the job is in that cgroup, as the host sees it.
pids=$(cat "$dir/cgroup.procs")
[ -n "$pids" ] || fail "no process in $dir"
for p in $pids; do
	c=$(cat "/proc/$p/cgroup")
	[ "$c" = "0::${dir#/sys/fs/cgroup}" ] || fail "pid $p is in '$c', want 0::${dir#/sys/fs/cgroup}"
done
say "ok: pids $(echo $pids) are in 0::${dir#/sys/fs/cgroup}"
# The ancestors delegate the controllers the job needs.
for c in cpu memory io pids; do
	grep -qw $c "$cg/cgroup.subtree_control" || fail "$c not enabled in $cg/cgroup.subtree_control"
done
say "ok: $cg/cgroup.subtree_control = $(cat "$cg/cgroup.subtree_control")"

# --- stop ---------------------------------------------------------------------
t stop "$job" || fail "stop $job"
st=$(t status "$job") || fail "status after stop: $st"
echo "$st"
echo "$st" | grep -q FAILED || fail "status after stop does not say FAILED"
[ ! -d "$dir" ] || fail "cgroup $dir still exists after stop"
for p in $pids; do [ ! -d "/proc/$p" ] || fail "pid $p still alive after stop"; done
say "ok: stop killed the job and removed its cgroup"

# A job still running when the server stops must be cleaned up by the server.
job2=$(t start -- sh -c 'sleep 1000 & sleep 1000 & wait') || fail "start: $job2"
dir2=$(job_cgroup "${job2#jobs/}")
[ -n "$dir2" ] && [ -d "$dir2" ] || fail "no cgroup for $job2"
t list || fail "list"

# --- server shutdown ------------------------------------------------------------
kill -TERM "$server_pid"
i=0
while kill -0 "$server_pid" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 600 ] || fail "server still running 60s after SIGTERM"
	sleep 0.1
done
wait "$server_pid"; rc=$?
server_pid=
say "server exited $rc after SIGTERM"
cat "$work/server.log" | tail -n 20
left=$(find "$cg" -mindepth 1 -type d 2>/dev/null)
[ -z "$left" ] || fail "cgroups left after server shutdown: $left"
[ "$rc" -eq 0 ] || fail "server exit status $rc after SIGTERM"
say "ok: no cgroup left under $cg"
[ ! -d "$cg" ] || fail "a clean shutdown left the parent cgroup $cg"
[ ! -e /run/telehandler/telehandler.lock ] || fail "a clean shutdown left its lock file /run/telehandler/telehandler.lock"
say "ok: neither the parent cgroup nor the lock file is left"
rmdir "$svc" /sys/fs/cgroup/system.slice
rm -rf "$work"
say PASS
