#!/bin/sh
# guest.sh: runs as root inside the cgroup v2 VM (busybox sh, cwd = /vmrun/include),
# started by scripts/test-cgroupv2.sh through run-in-cgroupv2-vm.sh.
#
# Runs every test binary listed in tests.list ("<package dir> <binary>") from its
# package directory under src/, then e2e.sh if present. Each part is framed by
#   VMTEST-BEGIN <name> / VMTEST-END <name> rc=<n> secs=<n>
# lines that the host script checks. Exits non-zero if any part failed.
# stderr is merged into stdout so that a panic stays next to its test.
exec 2>&1
top=$(pwd)
rc=0

echo "guest: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print $2/1024 " MiB"}' /proc/meminfo)"
echo "guest: cgroup mounts: $(grep cgroup /proc/mounts | tr '\n' ';')"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	echo "guest: root controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
	echo "guest: root subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
fi
echo "guest: scratch disk $SCRATCH_DEV ($SCRATCH_MAJMIN) at /scratch; block devices: $(ls /sys/block | tr '\n' ' ')"

now() { cut -d. -f1 /proc/uptime; }

# The initramfs has no /etc: give it the few files every real host has (user and
# group names such as serve's default --run-as nobody, and localhost).
mkdir -p /etc
[ -f /etc/passwd ] || printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
	'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >/etc/passwd
[ -f /etc/group ] || printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >/etc/group
[ -f /etc/hosts ] || printf '%s\n' '127.0.0.1 localhost' '::1 localhost' >/etc/hosts
# A networked job's own resolv.conf is bound over this one (the VM has no
# network: the address is a documentation one, never used).
[ -f /etc/resolv.conf ] || printf '%s\n' 'nameserver 192.0.2.53' >/etc/resolv.conf

while read -r dir bin; do
	[ -n "$bin" ] || continue
	echo "VMTEST-BEGIN $dir $bin"
	start=$(now)
	(cd "$top/src/$dir" && "./$bin" -test.v -test.count=1 -test.timeout=10m ${CGROUPV2_RUN:+-test.run "$CGROUPV2_RUN"} ${CGROUPV2_SKIP:+-test.skip "$CGROUPV2_SKIP"})
	r=$?
	echo "VMTEST-END $dir rc=$r secs=$(($(now) - start))"
	[ $r -eq 0 ] || rc=1
done <"$top/tests.list"

if [ -f "$top/e2e.sh" ]; then
	echo "VMTEST-BEGIN e2e/vm"
	start=$(now)
	sh "$top/e2e.sh" "$top/telehandler"
	r=$?
	echo "VMTEST-END e2e/vm rc=$r secs=$(($(now) - start))"
	[ $r -eq 0 ] || rc=1
fi

# Nothing may be left behind, in any hierarchy: no job cgroup under any
# telehandler* parent, and no test parent (tests use telehandler-test-*; the
# server's own empty "telehandler" parent may stay).
left=$(find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name 'telehandler*' 2>/dev/null |
	while read -r d; do
		case ${d##*/} in
		telehandler) find "$d" -mindepth 1 -type d ;;
		*) echo "$d" ;;
		esac
	done)
if [ -n "$left" ]; then
	echo "guest: FAIL: cgroups left behind:" $left
	rc=1
fi
exit $rc
