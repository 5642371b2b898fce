#!/usr/bin/env bash
# Installs what the tests need beyond Go, from Debian's packages, only when
# missing: tmux (e2e/terminal drives `telehandler start -it` and `attach`
# through it) and busybox-static (the sandbox's image test, TestImage, copies
# its static busybox into a root file system of its own). Idempotent; `make
# test` runs it. Without root it only says what is missing (the root tests
# skip then, except under CI, where they fail).
set -euo pipefail

need=()
for pkg in tmux; do
	command -v "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# A busybox on PATH may be the dynamically linked one: ask for the package.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || need+=(busybox-static)
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "scripts/test-deps.sh: missing ${need[*]} (run as root to install); tests that need it skip" >&2
	exit 0
fi
echo "scripts/test-deps.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
apt-get install -y -q --no-install-recommends "${need[@]}" >&2
