#!/usr/bin/env bash
# Installs what `make bench` compares Telehandler against, from Debian's
# packages, only when missing: sshd and ssh (openssh-server, openssh-client),
# runc, a static busybox for the runc bundle's rootfs, and util-linux's
# unshare. Idempotent. It never starts, configures or touches the system's
# sshd: the harness runs its own sshd on loopback with a throwaway config.
set -euo pipefail

need=()
for pkg in openssh-server openssh-client runc busybox-static util-linux; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi

# Keep package scripts from starting the system sshd: Debian's policy-rc.d
# hook (exit 101 = "do not start services"), only for this install and only
# if the host has none of its own.
policy=/usr/sbin/policy-rc.d
added_policy=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	added_policy=1
fi
cleanup() { if [ -n "$added_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "bench/setup.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${need[@]}" >&2
