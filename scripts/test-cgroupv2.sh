#!/usr/bin/env bash
# test-cgroupv2.sh: the root integration suite and an end-to-end run inside a
# throw-away QEMU VM whose ONLY cgroup hierarchy is cgroup v2 (`make test-cgroupv2`).
#
# The host CI machine has a cgroup v1 "hybrid" layout, so `make test` proves the
# v1 code path; this script proves the v2 path on a real kernel:
#
#   1. builds the static telehandler binary and every package's tests as static
#      test binaries (CGO_ENABLED=0 go test -c), each its own __child shim;
#   2. boots scripts/cgroupv2-vm/run-in-cgroupv2-vm.sh once, running
#      scripts/cgroupv2-vm/guest.sh (busybox sh) as root inside it, which runs
#      every test binary with -test.v from its package directory, then
#      e2e/vm/e2e.sh (certgen, serve, the CLI, cgroup files read from outside);
#   3. fails if the VM did not boot or timed out, if any test failed or SKIPPED
#      (CI=1 in the guest turns root-test skips into failures as well), if a
#      package ran no test, or if the end-to-end run failed.
#
# Environment knobs:
#   CGROUPV2_PKGS      packages to test (default: every package with tests, minus
#                      CGROUPV2_EXCLUDE); the test binaries must not need a Go toolchain
#   CGROUPV2_EXCLUDE   extended regexp of import paths to leave out (default: bench/, which
#                      holds benchmarks only, and e2e/terminal/, which needs tmux, absent
#                      from the busybox guest, and tests nothing of the cgroup layout). e2e/ runs against the prebuilt binary
#                      (TELEHANDLER_E2E_BIN) instead of `go build`.
#   CGROUPV2_RUN       -test.run pattern for every test binary (default: all)
#   CGROUPV2_SKIP      -test.skip pattern for every test binary (default: TestInstall, which
#                      runs make and a Go toolchain, absent from the busybox guest, and
#                      TestFullStateDisk, which floods 200 MiB through watch: minutes under
#                      software emulation; neither depends on the cgroup layout, and both
#                      run in make test on the host). Set it to "" to run everything.
#   CGROUPV2_E2E=0     skip e2e/vm/e2e.sh (for debugging; it is v2-only, so VM_CGROUP=v1 or
#                      hybrid skip it too)
#   VM_CGROUP=v1|hybrid  run the same suite in a VM with a cgroup v1 layout instead
#                      (cpu,cpuacct combined, as systemd's legacy mode mounts it; CI's host
#                      already covers hybrid with separate cpu and cpuacct); not part of CI
#   CGROUPV2_LOG       where to keep the guest's output (default: a temp file, shown on failure)
#   VM_MEM, VM_SMP, VM_TIMEOUT, VM_CACHE_DIR, VM_VERBOSE, ...: see run-in-cgroupv2-vm.sh
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
prog=test-cgroupv2
GO=${GO:-go}
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
export CGO_ENABLED=0
t0=$(date +%s)

# The OOM test allocates 1 GiB against a 64 MiB limit: the guest needs enough
# RAM that the job's cgroup, not the whole VM, runs out. TCG makes CPU-bound
# code 10-20x slower than on the host, hence the long timeout.
export VM_MEM=${VM_MEM:-2048}
export VM_SMP=${VM_SMP:-2}
export VM_TIMEOUT=${VM_TIMEOUT:-1800}
export VM_CGROUP=${VM_CGROUP:-v2}
[[ $VM_CGROUP == v2 ]] || CGROUPV2_E2E=${CGROUPV2_E2E:-0}

work=$(mktemp -d "${TMPDIR:-/tmp}/telehandler-cgroupv2.XXXXXX")
trap 'rm -rf "$work"' EXIT
inc=$work/include
mkdir -p "$inc/src"

# --- 1. Build ---------------------------------------------------------------
echo "$prog: building static telehandler and test binaries" >&2
"$GO" build -trimpath -o "$inc/telehandler" .

module=$("$GO" list -m)
if [[ -n ${CGROUPV2_PKGS:-} ]]; then
	pkgs=$("$GO" list $CGROUPV2_PKGS)
else
	exclude=${CGROUPV2_EXCLUDE:-"^$module/(bench|e2e/terminal)(/|$)"}
	pkgs=$("$GO" list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./... |
		grep -Ev "$exclude" || true)
fi
[[ -n $pkgs ]] || { echo "$prog: no package with tests to run" >&2; exit 1; }

# Mirror the source tree: each test binary runs from its package directory, as
# `go test` does, so ./testdata and ../testdata resolve as on the host.
: >"$inc/tests.list"
[[ -d testdata ]] && cp -a testdata "$inc/src/testdata"
for p in $pkgs; do
	rel=${p#"$module"}; rel=${rel#/}; rel=${rel:-.}
	name=$(basename "$p").test
	mkdir -p "$inc/src/$rel"
	"$GO" test -c -o "$inc/src/$rel/$name" "$p"
	[[ -d $rel/testdata && $rel != . ]] && cp -a "$rel/testdata" "$inc/src/$rel/testdata"
	echo "$rel $name" >>"$inc/tests.list"
done
cp scripts/cgroupv2-vm/guest.sh "$inc/guest.sh"
if [[ ${CGROUPV2_E2E:-1} != 0 ]]; then cp e2e/vm/e2e.sh "$inc/e2e.sh"; fi
t_build=$(date +%s)

# --- 2. Run the VM -------------------------------------------------------------
# CI=1: a root test that would skip fails instead. TELEHANDLER_TEST_IO_DIR: a
# directory on the VM's virtio disk (vda, a real, throttleable block device; the
# guest's /tmp is in RAM) for the sandbox's IO throttling test.
# TELEHANDLER_E2E_BIN: e2e/ tests this binary instead of building one.
# TELEHANDLER_TEST_NETWORK_VM=1: the job-network tests run (they skip
# anywhere else; the VM has no network device, run-in-cgroupv2-vm.sh passes
# -nic none, so they build their own "internet" in the guest).
export CI=1 TELEHANDLER_TEST_IO_DIR=/scratch TELEHANDLER_E2E_BIN=/vmrun/include/telehandler TELEHANDLER_TEST_NETWORK_VM=1
export CGROUPV2_RUN=${CGROUPV2_RUN:-}
export CGROUPV2_SKIP=${CGROUPV2_SKIP-'^(TestInstall|TestFullStateDisk)$'}
export VM_PASS_ENV="CI TELEHANDLER_TEST_IO_DIR TELEHANDLER_E2E_BIN TELEHANDLER_TEST_NETWORK_VM CGROUPV2_RUN CGROUPV2_SKIP ${VM_PASS_ENV:-}"
export VM_INCLUDE_DIR=$inc
log=${CGROUPV2_LOG:-$work/guest.log}

echo "$prog: booting the cgroup $VM_CGROUP VM (mem ${VM_MEM} MiB, ${VM_SMP} vCPUs, timeout ${VM_TIMEOUT}s)" >&2
set +e
scripts/cgroupv2-vm/run-in-cgroupv2-vm.sh "$inc/guest.sh" 2>&1 | tee "$log"
vmrc=${PIPESTATUS[0]}
set -e
t_end=$(date +%s)

# --- 3. Verdict -----------------------------------------------------------------
fail=()
case $vmrc in
124) fail+=("the VM timed out after ${VM_TIMEOUT}s") ;;
125) fail+=("the VM failed to boot or crashed (exit 125)") ;;
0) ;;
*) fail+=("the guest run failed (exit $vmrc)") ;;
esac
skips=$(grep -E -- '^\s*--- SKIP' "$log" || true)
[[ -z $skips ]] || fail+=("tests skipped inside the VM (they must all run):"$'\n'"$skips")
# section REL: the guest's output between VMTEST-BEGIN REL and VMTEST-END REL.
section() {
	awk -v b="VMTEST-BEGIN $1 " -v e="VMTEST-END $1 " '
		index($0, b) == 1 { on = 1 }
		on { print }
		index($0, e) == 1 { on = 0 }' "$log"
}
while read -r rel name; do
	end=$(section "$rel" | grep -F "VMTEST-END $rel " || true)
	[[ -n $end ]] || { fail+=("$rel: test binary did not finish"); continue; }
	n=$(section "$rel" | grep -cE -- '^\s*--- PASS' || true)
	[[ $n -gt 0 ]] || fail+=("$rel: no test passed (none ran?)")
	echo "$prog: $rel: $n tests passed; ${end#"VMTEST-END $rel "}" >&2
done <"$inc/tests.list"
if [[ ${CGROUPV2_E2E:-1} != 0 ]]; then
	grep -q '^VMTEST-END e2e/vm rc=0' "$log" || fail+=("e2e/vm/e2e.sh failed or did not finish")
	echo "$prog: e2e/vm/e2e.sh: $(grep '^VMTEST-END e2e/vm ' "$log" | cut -d' ' -f3- || echo 'did not finish')" >&2
fi
failed=$(grep -E -- '^\s*--- FAIL' "$log" || true)
[[ -z $failed ]] || fail+=("failed tests:"$'\n'"$failed")

echo "$prog: build $((t_build - t0))s, VM run $((t_end - t_build))s, total $((t_end - t0))s" >&2
if [[ ${#fail[@]} -gt 0 ]]; then
	printf "$prog: FAIL: %s\n" "${fail[@]}" >&2
	[[ -n ${CGROUPV2_LOG:-} ]] && echo "$prog: guest output kept in $log" >&2
	exit 1
fi
echo "$prog: PASS: every test ran and passed in the VM (cgroup layout: $VM_CGROUP)" >&2
