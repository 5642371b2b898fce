#!/usr/bin/env bash
# run-in-cgroupv2-vm.sh STATIC_BINARY [ARGS...]
#
# Boots a throw-away QEMU VM (Debian cloud kernel + busybox initramfs) in which
# cgroup v2 is the ONLY cgroup hierarchy (cgroup_no_v1=all), mounted at
# /sys/fs/cgroup with every available controller (cpuset cpu io memory hugetlb
# pids rdma misc) enabled in the root's cgroup.subtree_control, then runs
# STATIC_BINARY as root (PID != 1, in the root cgroup) and exits with its exit code.
#
#   guest stdout -> virtio-serial port "stdout" -> FIFO -> this script's stdout (raw bytes, streamed)
#   guest stderr -> virtio-serial port "stderr" -> FIFO -> this script's stderr
#   kernel console/init log -> ttyS0 -> $run_dir/console.log (shown on failure / VM_VERBOSE=1)
#   network                 -> none at all (-nic none): the job-network tests build their
#                              own "internet" inside the guest; no packet leaves it
#   exit code    -> "VMRUN-EXIT=<n>" printed via /dev/kmsg on ttyS0
#
# Inside the guest the binary sees:
#   /sys/fs/cgroup        cgroup2 (nsdelegate,memory_recursiveprot), like systemd mounts it
#   /dev/vda              scratch virtio-blk disk (VM_SCRATCH_SIZE, default 256M)
#   /scratch              /dev/vda as ext4 (unless VM_SCRATCH_FS=none -> raw, unmounted)
#   $SCRATCH_DEV $SCRATCH_MAJMIN   e.g. /dev/vda 254:0  (for io.max)
#   /vmrun/include        copy of VM_INCLUDE_DIR (if given; then it is also the cwd)
#   busybox applets in /bin (sh, dd, unshare, mount, ...)
#
# STATIC_BINARY may also be a "#!/bin/sh" script: the guest runs it with busybox
# sh (scripts/test-cgroupv2.sh boots one VM that way and ships its static test
# binaries, the telehandler binary and scripts in VM_INCLUDE_DIR).
# (Telehandler's own copy of a verified recipe: a clone of the project needs nothing else.)
#
# Exit status: the binary's status; 124 = VM timed out (VM_TIMEOUT);
#              125 = VM/infrastructure failure (no exit marker seen).
#
# Environment knobs (all optional):
#   VM_CACHE_DIR     cache for kernel/modules/initramfs  (default ~/.cache/cgroupv2-vm)
#   VM_ACCEL         auto|kvm|tcg   (auto: KVM only if it can really boot a stock kernel, else TCG)
#   VM_MEM / VM_SMP  guest RAM in MiB (1024) / vCPUs (2)
#   VM_TIMEOUT       seconds before the VM is killed (600)
#   VM_SCRATCH_SIZE  size of /dev/vda (256M);  VM_SCRATCH_FS ext4|none (ext4)
#   VM_CGROUP        v2 (default, as above) | v1 (no cgroup2: one v1 hierarchy per
#                    controller group, cpu,cpuacct and net_cls,net_prio combined with
#                    symlinks, plus name=systemd, under a tmpfs at /sys/fs/cgroup, as
#                    systemd's legacy mode mounts them) | hybrid (v1 + a controller-less
#                    cgroup2 at /sys/fs/cgroup/unified)
#   VM_INCLUDE_DIR   host directory copied to /vmrun/include (and used as cwd)
#   VM_PASS_ENV      space separated names of host env vars to export in the guest
#   VM_WORKDIR       cwd for the binary (default /vmrun/include, /scratch or /)
#   VM_KERNEL_META   Debian kernel metapackage (linux-image-cloud-amd64)
#   VM_KERNEL_PKG    pin a concrete kernel package, e.g. linux-image-6.1.0-56-cloud-amd64
#   VM_REFRESH=1     re-resolve the kernel package / rebuild cached parts
#   VM_VERBOSE=1     print the console log and timings to stderr
#   VM_CPU / VM_MACHINE / VM_QEMU_ARGS / VM_APPEND   override -cpu / -machine, extra qemu args / kernel args
#   VM_KEEP=1        keep the per-run directory (console log, initrd, disk)
#   VM_PVH=0         boot the compressed bzImage instead of the extracted PVH vmlinux
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 125; }
log() { [[ ${VM_VERBOSE:-0} == 1 ]] && echo "$prog: $*" >&2 || true; }
now() { date +%s.%N; }

[[ $# -ge 1 ]] || { echo "usage: $prog STATIC_BINARY [ARGS...]" >&2; exit 2; }
bin=$1; shift
[[ -f $bin && -x $bin ]] || die "$bin: not an executable file"
# The guest has no libc/ld.so: a dynamically linked binary fails there with 127.
head -c 4096 "$bin" | grep -qa '/ld-linux' && echo "$prog: warning: $bin looks dynamically linked (use CGO_ENABLED=0)" >&2

t_start=$(now)
CACHE=${VM_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/cgroupv2-vm}
MEM=${VM_MEM:-1024}
SMP=${VM_SMP:-2}
TIMEOUT=${VM_TIMEOUT:-600}
SCRATCH_SIZE=${VM_SCRATCH_SIZE:-256M}
SCRATCH_FS=${VM_SCRATCH_FS:-ext4}
KMETA=${VM_KERNEL_META:-linux-image-cloud-amd64}
CGROUP=${VM_CGROUP:-v2}
[[ $CGROUP =~ ^(v2|v1|hybrid)$ ]] || die "VM_CGROUP must be v2, v1 or hybrid"
mkdir -p "$CACHE"

# ---------------------------------------------------------------------------
# 1. Host packages (idempotent; only calls apt when something is missing).
#    qemu-system-x86 : qemu-system-x86_64     busybox-static : /bin/busybox (static)
#    cpio            : initramfs archives     e2fsprogs      : mkfs.ext4 for the scratch disk
#    lz4             : unpack the kernel for PVH boot (optional speed-up)
# ---------------------------------------------------------------------------
apt_updated=0
apt_update_once() {
    [[ $apt_updated == 1 ]] && return 0
    log "apt-get update"
    apt-get update -qq >>"$CACHE/apt.log" 2>&1 || die "apt-get update failed, see $CACHE/apt.log"
    apt_updated=1
}
ensure_packages() {
    local need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    command -v cpio >/dev/null || need+=(cpio)
    command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
    command -v lz4 >/dev/null || need+=(lz4)     # only to unpack the LZ4 bzImage for PVH boot
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
    [[ ${#need[@]} -eq 0 ]] && return 0
    [[ $(id -u) == 0 ]] || die "missing packages (${need[*]}); run as root or install them"
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$CACHE/apt.log" 2>&1; then
        apt_update_once
        apt-get install -y -qq --no-install-recommends "${need[@]}" >>"$CACHE/apt.log" 2>&1 ||
            die "apt-get install ${need[*]} failed, see $CACHE/apt.log"
    fi
}

# ---------------------------------------------------------------------------
# 2. Kernel + virtio modules from the Debian archive, cached as
#    $CACHE/kernel/<pkg>_<version>/{vmlinuz,modules/*.ko,modules.order}
#    (apt-get download + dpkg-deb extraction; nothing is installed on the host).
# ---------------------------------------------------------------------------
# Modules needed for the scratch disk, and for the job-network tests (veth,
# bridge, nftables with conntrack, masquerading, connlimit and the bridge
# family's meta expression, tc's tbf, ingress and policing: the guest has
# no modprobe setup, so all are loaded at boot); dependencies are resolved from the .ko "depends=" modinfo strings, so this
# survives Debian moving things around.
WANT_MODULES="virtio_pci virtio_blk virtio_console veth bridge nf_tables nf_conntrack nf_nat nft_ct nft_nat nft_masq nft_chain_nat nft_meta_bridge nft_connlimit sch_tbf sch_ingress cls_matchall act_police"

resolve_kernel_pkg() {
    local f=$CACHE/kernel-pkg pkg
    if [[ -n ${VM_KERNEL_PKG:-} ]]; then echo "$VM_KERNEL_PKG"; return; fi
    if [[ -s $f && ${VM_REFRESH:-0} != 1 ]]; then cat "$f"; return; fi
    pkg=$(apt-cache depends "$KMETA" 2>/dev/null | awk '$1=="Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
    if [[ -z $pkg ]]; then
        apt_update_once
        pkg=$(apt-cache depends "$KMETA" 2>/dev/null | awk '$1=="Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
    fi
    [[ -n $pkg ]] || die "cannot resolve $KMETA to a linux-image package"
    echo "$pkg" >"$f"
    echo "$pkg"
}

# bzImage -> uncompressed ELF vmlinux (like scripts/extract-vmlinux).  QEMU can
# boot an ELF with a Xen PVH entry note directly in 64-bit mode, which skips the
# real-mode setup and the in-guest decompression (~0.2 s of the ~2 s TCG boot).
# Best effort: Debian 6.1 kernels are LZ4 (needs the lz4 tool); otherwise the
# bzImage is used.
extract_pvh_vmlinux() {
    local in=$1 out=$2 magic tool off
    grep -q '^CONFIG_PVH=y' "${in%/*}/config" 2>/dev/null || return 1
    for pair in '\x02\x21\x4c\x18:lz4 -dc' '\x28\xb5\x2f\xfd:zstd -dcq' '\xfd\x37\x7a\x58\x5a\x00:xz -dc' \
                '\x1f\x8b\x08:gzip -dc' '\x42\x5a\x68:bzip2 -dc'; do
        magic=${pair%%:*}; tool=${pair#*:}
        command -v "${tool%% *}" >/dev/null || continue
        for off in $(LC_ALL=C grep -obUaP "$magic" "$in" 2>/dev/null | head -n 3 | cut -d: -f1); do
            tail -c "+$((off + 1))" "$in" | $tool >"$out.tmp" 2>/dev/null || true
            if [[ $(head -c 4 "$out.tmp" 2>/dev/null) == $'\x7fELF' ]]; then
                mv "$out.tmp" "$out"; return 0
            fi
        done
    done
    rm -f "$out.tmp"; return 1
}

ensure_kernel() {   # sets KDIR
    local pkg; pkg=$(resolve_kernel_pkg)
    local marker
    marker=$(ls -d "$CACHE/kernel/${pkg}_"*/ 2>/dev/null | head -n1 || true)
    if [[ -n $marker && -s $marker/vmlinuz && $(cat "$marker/wanted" 2>/dev/null) == "$WANT_MODULES" && ${VM_REFRESH:-0} != 1 ]]; then
        KDIR=${marker%/}; return
    fi
    local tmp; tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
    chmod 755 "$tmp"
    log "downloading $pkg"
    (cd "$tmp" && apt-get download -q=2 "$pkg" 2>&1 | grep -v "unsandboxed" >&2) || true
    local deb; deb=$(ls "$tmp"/"$pkg"_*.deb 2>/dev/null | head -n1)
    if [[ -z $deb ]]; then
        apt_update_once
        (cd "$tmp" && apt-get download -q=2 "$pkg" 2>&1 | grep -v "unsandboxed" >&2) || true
        deb=$(ls "$tmp"/"$pkg"_*.deb 2>/dev/null | head -n1)
    fi
    [[ -n $deb ]] || die "apt-get download $pkg failed"
    local ver; ver=$(dpkg-deb -f "$deb" Version)
    mkdir -p "$tmp/x"
    # Only the kernel image, drivers/{virtio,block,char,net} and net/ (for
    # WANT_MODULES's few) are needed.
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards \
        './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*' \
        './lib/modules/*/kernel/drivers/block/*' './lib/modules/*/kernel/drivers/char/*' \
        './lib/modules/*/kernel/drivers/net/*' './lib/modules/*/kernel/net/*' './lib/modules/*/kernel/lib/*' \
        './boot/config-*' 2>/dev/null || true
    local out=$CACHE/kernel/${pkg}_${ver}
    rm -rf "$out"; mkdir -p "$out/modules"
    cp "$tmp"/x/boot/vmlinuz-* "$out/vmlinuz" || die "no vmlinuz in $deb"
    cp "$tmp"/x/boot/config-* "$out/config" 2>/dev/null || true
    # Index every extracted module by name (decompressing .ko.xz/.ko.zst/.ko.gz if needed).
    local ko name
    declare -A path=()
    while IFS= read -r ko; do
        name=${ko##*/}; name=${name%%.ko*}; name=${name//-/_}
        path[$name]=$ko
    done < <(find "$tmp/x/lib/modules" -name '*.ko*')
    modcat() { case $1 in *.xz) xz -dc "$1";; *.zst) zstd -dcq "$1";; *.gz) gzip -dc "$1";; *) cat "$1";; esac; }
    local order=() seen=" "
    visit() {   # depth-first: dependencies first
        local m=$1 d
        [[ $seen == *" $m "* ]] && return 0
        seen+="$m "
        [[ -n ${path[$m]:-} ]] || { echo "$prog: warning: module $m not found" >&2; return 0; }
        modcat "${path[$m]}" >"$out/modules/$m.ko"
        for d in $(tr '\0' '\n' <"$out/modules/$m.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
            visit "${d//-/_}"
        done
        order+=("$m")
    }
    for name in $WANT_MODULES; do visit "$name"; done
    printf '%s\n' "${order[@]}" >"$out/modules.order"
    echo "$WANT_MODULES" >"$out/wanted"
    echo "$pkg $ver" >"$out/version"
    rm -rf "$tmp"
    KDIR=$out
}

# ---------------------------------------------------------------------------
# 3. Base initramfs (busybox + modules + /init), cached by content hash.
#    The per-run part (binary, args, env, include dir) is a second, uncompressed
#    cpio appended to it: the kernel unpacks concatenated archives in order.
# ---------------------------------------------------------------------------
read -r -d '' GUEST_INIT <<'INIT_EOF' || true
#!/bin/busybox sh
# PID 1 of the test VM.  Keep it boring: any failure -> VMRUN-EXIT=125.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /tmp /run /root /scratch
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
chmod 1777 /tmp
hostname vmrun
ip link set lo up 2>/dev/null

finish() {   # $1 = exit code; report it on the console (synchronous printk) and stop the VM
    sync
    echo "<2>VMRUN-EXIT=$1" >/dev/kmsg
    reboot -f   # QEMU runs with -no-reboot, so a guest reset ends it (works with or without ACPI)
    sleep 5
}

. /vmrun/cfg
case ${CGROUP:-v2} in
v2) # cgroup v2 is the only hierarchy (kernel booted with cgroup_no_v1=all).
    mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup || finish 125
    for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
        echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || echo "init: cannot enable $c" >&2
    done
    for c in cpu memory io pids; do
        grep -qw "$c" /sys/fs/cgroup/cgroup.subtree_control || { echo "init: controller $c missing" >&2; finish 125; }
    done ;;
v1|hybrid) # one v1 hierarchy per controller group, as systemd mounts them on Debian 10 / RHEL 7
    # (cpu,cpuacct and net_cls,net_prio combined, with cpu/cpuacct/... symlinks);
    # hybrid adds a controller-less cgroup2 at /sys/fs/cgroup/unified.
    mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup || finish 125
    mkdir /sys/fs/cgroup/systemd && mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd || finish 125
    for h in cpu,cpuacct cpuset memory devices freezer blkio pids net_cls,net_prio perf_event hugetlb rdma misc; do
        c=${h%%,*}
        grep -q "^$c[[:space:]]" /proc/cgroups || continue
        mkdir "/sys/fs/cgroup/$h"
        if ! mount -t cgroup -o "$h" cgroup "/sys/fs/cgroup/$h"; then
            echo "init: cannot mount v1 $h" >&2; rmdir "/sys/fs/cgroup/$h"
            case $c in cpu|memory|blkio|pids|freezer) finish 125;; esac
            continue
        fi
        [ "$c" = "$h" ] || for l in $(echo "$h" | tr , ' '); do ln -s "$h" "/sys/fs/cgroup/$l"; done
    done
    if [ "$CGROUP" = hybrid ]; then
        mkdir /sys/fs/cgroup/unified && mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup/unified || finish 125
    fi ;;
*) echo "init: unknown CGROUP=$CGROUP" >&2; finish 125 ;;
esac

# virtio modules (cloud kernel has them as modules), in dependency order.
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || echo "init: insmod $m failed" >&2; done

# Scratch disk.
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
if [ -b /dev/vda ]; then
    export SCRATCH_DEV=/dev/vda SCRATCH_MAJMIN=$(cat /sys/block/vda/dev)
    if [ "$SCRATCH_FS" = ext4 ]; then mount -t ext4 /dev/vda /scratch || finish 125; fi
else
    echo "init: no /dev/vda" >&2
fi

# Passed-through environment and arguments (one file per item; keeps any bytes but NUL).
for f in /vmrun/env/*; do [ -f "$f" ] || continue; v=$(cat "$f"; echo x); export "${f##*/}=${v%x}"; done
set --
n=0; while [ -f /vmrun/args/$n ]; do a=$(cat /vmrun/args/$n; echo x); set -- "$@" "${a%x}"; n=$((n+1)); done

cd "$WORKDIR" || finish 125
# stdout/stderr: virtio-serial ports named "stdout"/"stderr" (not ttys: bytes pass
# unmodified, ~50x faster than a 16550 UART under TCG).
port() { for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name 2>/dev/null)" = "$1" ] && echo /dev/${p##*/}; done; }
out=$(port stdout); err=$(port stderr)
[ -c "$out" ] && [ -c "$err" ] || { echo "init: virtio-serial ports missing" >&2; finish 125; }
exec 3>"$out" 4>"$err"
echo "<5>VMRUN-START" >/dev/kmsg
/vmrun/bin "$@" </dev/null >&3 2>&4
rc=$?
exec 3>&- 4>&-
finish $rc
INIT_EOF

ensure_base_initramfs() {   # sets BASE_INITRD
    local bb=/bin/busybox
    local key; key=$( (echo "$GUEST_INIT"; cat "$KDIR/version"; sha256sum "$bb" "$KDIR"/modules/*.ko) | sha256sum | cut -c1-16)
    BASE_INITRD=$CACHE/base-$key.cpio.gz
    [[ -s $BASE_INITRD && ${VM_REFRESH:-0} != 1 ]] && return 0
    log "building base initramfs $BASE_INITRD"
    local tmp; tmp=$(mktemp -d "$CACHE/ir.XXXXXX")
    mkdir -p "$tmp"/{bin,dev,proc,sys,lib/modules,vmrun,scratch,tmp,root,run}
    cp "$bb" "$tmp/bin/busybox"
    cp "$KDIR"/modules/*.ko "$tmp/lib/modules/"
    cp "$KDIR/modules.order" "$tmp/lib/modules/order"
    printf '%s\n' "$GUEST_INIT" >"$tmp/init"; chmod 755 "$tmp/init"
    (cd "$tmp" && { find . -print; } | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$tmp.cpio.gz"
    # pad to 512 bytes (NUL padding between archives is skipped by the kernel)
    truncate -s %512 "$tmp.cpio.gz"
    mv "$tmp.cpio.gz" "$BASE_INITRD"
    rm -rf "$tmp"
}

# ---------------------------------------------------------------------------
# 4. Accelerator: KVM only when it can actually run a stock kernel.
#    /dev/kvm can exist without VT-x/AMD-V (e.g. PVM-based nested "KVM", whose
#    guests must be special PVM kernels): QEMU then hangs right after the BIOS.
#    So: require vmx/svm in /proc/cpuinfo, and probe once (cached per host kernel).
# ---------------------------------------------------------------------------
pick_accel() {
    case ${VM_ACCEL:-auto} in kvm|tcg) echo "${VM_ACCEL}"; return;; esac
    if [[ ! -w /dev/kvm ]] || ! grep -qwE 'vmx|svm' /proc/cpuinfo; then echo tcg; return; fi
    local f=$CACHE/kvm-probe-$(uname -r)
    if [[ ! -s $f ]]; then
        local p; p=$(mktemp -d)
        printf '#!/bin/sh\necho kvm-ok\n' >"$p/probe"; chmod +x "$p/probe"
        if VM_ACCEL=kvm VM_TIMEOUT=30 VM_SCRATCH_FS=none VM_CACHE_DIR=$CACHE "$BASH" "$0" "$p/probe" 2>/dev/null | grep -q kvm-ok
        then echo kvm >"$f"; else echo tcg >"$f"; fi
        rm -rf "$p"
    fi
    cat "$f"
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
ensure_packages
exec 9>"$CACHE/.lock"; flock 9          # serialise cache population between parallel runs
ensure_kernel
if [[ ! -e $KDIR/vmlinux && ! -e $KDIR/no-pvh ]]; then
    extract_pvh_vmlinux "$KDIR/vmlinuz" "$KDIR/vmlinux" || { log "no PVH vmlinux, booting bzImage"; touch "$KDIR/no-pvh"; }
fi
ensure_base_initramfs
if [[ $SCRATCH_FS == ext4 ]]; then       # pristine formatted image, copied per run
    pristine=$CACHE/scratch-ext4-$SCRATCH_SIZE.img
    if [[ ! -s $pristine ]]; then
        truncate -s "$SCRATCH_SIZE" "$pristine.tmp"
        # no lazy init: otherwise ext4lazyinit writes inode tables inside the guest and disturbs io tests
        mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$pristine.tmp"
        mv "$pristine.tmp" "$pristine"
    fi
fi
flock -u 9
accel=$(pick_accel)
t_cache=$(now)

run_dir=$(mktemp -d "${TMPDIR:-/tmp}/vmrun.XXXXXX")
cleanup() { [[ ${VM_KEEP:-0} == 1 ]] && echo "$prog: kept $run_dir" >&2 || rm -rf "$run_dir"; }
trap cleanup EXIT

# Per-run archive: /vmrun/{bin,cfg,args/N,env/NAME,include/...}
r=$run_dir/root
mkdir -p "$r/vmrun/args" "$r/vmrun/env"
cp "$bin" "$r/vmrun/bin"; chmod 755 "$r/vmrun/bin"
i=0; for a in "$@"; do printf '%s' "$a" >"$r/vmrun/args/$i"; i=$((i+1)); done
for name in ${VM_PASS_ENV:-}; do
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad env name $name"
    [[ -v $name ]] && printf '%s' "${!name}" >"$r/vmrun/env/$name"
done
workdir=${VM_WORKDIR:-}
if [[ -n ${VM_INCLUDE_DIR:-} ]]; then
    mkdir -p "$r/vmrun/include"; cp -a "$VM_INCLUDE_DIR"/. "$r/vmrun/include/"
    workdir=${workdir:-/vmrun/include}
fi
[[ $SCRATCH_FS == ext4 ]] && workdir=${workdir:-/scratch}
workdir=${workdir:-/}
[[ $workdir =~ ^[A-Za-z0-9_./-]+$ && $SCRATCH_FS =~ ^(ext4|none)$ ]] || die "bad VM_WORKDIR/VM_SCRATCH_FS"
printf 'SCRATCH_FS=%s\nWORKDIR=%s\nCGROUP=%s\n' "$SCRATCH_FS" "$workdir" "$CGROUP" >"$r/vmrun/cfg"
(cd "$r" && find . -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$run_dir/run.cpio"
cat "$BASE_INITRD" "$run_dir/run.cpio" >"$run_dir/initrd"

# Scratch disk
if [[ $SCRATCH_FS == ext4 ]]; then
    cp --sparse=always "$pristine" "$run_dir/scratch.img"
else
    truncate -s "$SCRATCH_SIZE" "$run_dir/scratch.img"
fi
t_prep=$(now)

# -cpu max under TCG exposes x86-64-v3 features (QEMU 7.2 emulates AVX2), so
# GOAMD64=v2/v3 binaries run too.
if [[ $accel == kvm ]]; then accel_args=(-accel kvm -cpu "${VM_CPU:-host}")
else accel_args=(-accel tcg,thread=multi -cpu "${VM_CPU:-max}"); fi

# quiet + loglevel keep the console short; cgroup_no_v1=all makes v2 the only hierarchy;
# printk.devkmsg=on so the exit marker is never rate limited; panic=-1 + -no-reboot
# make a crashing guest terminate QEMU instead of hanging.
append="console=ttyS0 quiet loglevel=4 panic=-1 printk.devkmsg=on rdinit=/init"
[[ $CGROUP == v2 ]] && append+=" cgroup_no_v1=all"
# cryptomgr.notests skips the crypto self-tests (~0.15 s under TCG).  (acpi=off would
# save another 0.2 s but leaves the guest with 1 CPU: no MP table on q35.)
append+=" i8042.noaux i8042.nokbd i8042.nopnp tsc=reliable no_timer_check cryptomgr.notests ${VM_APPEND:-}"

# Guest stdout/stderr go through FIFOs copied by cat, so that the host-side fds
# are used as they are (reopening /dev/fd/1 in QEMU breaks when stdout is a
# regular file opened without O_APPEND: the two file offsets overwrite each other).
# fds 7/8 keep a writer open until QEMU has exited, so the cats can't see EOF early.
mkfifo "$run_dir/out" "$run_dir/err"
exec 7<>"$run_dir/out" 8<>"$run_dir/err"
cat "$run_dir/out" 7>&- 8>&- & cat_out=$!
cat "$run_dir/err" >&2 7>&- 8>&- & cat_err=$!

kernel=$KDIR/vmlinuz
[[ -s $KDIR/vmlinux && ${VM_PVH:-1} == 1 ]] && kernel=$KDIR/vmlinux

# If this script is killed, take QEMU down too: trap TERM/INT/HUP, and
# setpriv --pdeathsig covers SIGKILL of this script (timeout) / of timeout (qemu).
pdeath=()
setpriv --pdeathsig TERM true 2>/dev/null && pdeath=(setpriv --pdeathsig TERM)
qpid=
trap '[[ -n $qpid ]] && kill -TERM "$qpid" 2>/dev/null; exit 143' TERM INT HUP

set +e
"${pdeath[@]}" timeout -k 5 "$TIMEOUT" "${pdeath[@]}" qemu-system-x86_64 \
    "${accel_args[@]}" -machine "${VM_MACHINE:-q35}" -m "$MEM" -smp "$SMP" \
    -nodefaults -no-user-config -display none -no-reboot -nic none \
    -kernel "$kernel" -initrd "$run_dir/initrd" -append "$append" \
    -chardev file,id=con,path="$run_dir/console.log" -serial chardev:con \
    -device virtio-serial-pci,id=vser \
    -chardev file,id=out,path="$run_dir/out" -device virtserialport,bus=vser.0,chardev=out,name=stdout \
    -chardev file,id=err,path="$run_dir/err" -device virtserialport,bus=vser.0,chardev=err,name=stderr \
    -drive file="$run_dir/scratch.img",if=none,id=scratch,format=raw,cache=unsafe \
    -device virtio-blk-pci,drive=scratch \
    ${VM_QEMU_ARGS:-} </dev/null 7>&- 8>&- &
qpid=$!
wait "$qpid"
qrc=$?
qpid=
exec 7>&- 8>&-
wait "$cat_out" "$cat_err"
set -e
t_end=$(now)

code=$(grep -a -o 'VMRUN-EXIT=[0-9]*' "$run_dir/console.log" 2>/dev/null | tail -n1 | cut -d= -f2 || true)
if [[ ${VM_VERBOSE:-0} == 1 ]]; then
    echo "----- console ($accel) -----" >&2; cat "$run_dir/console.log" >&2
    awk -v p="$prog" -v a="$accel" -v s="$t_start" -v c="$t_cache" -v r="$t_prep" -v e="$t_end" 'BEGIN {
        printf "%s: timings: cache/setup %.2fs, per-run prep %.2fs, qemu %.2fs, total %.2fs (accel=%s)\n", p, c-s, r-c, e-r, e-s, a }' >&2
fi
if [[ -z $code ]]; then
    if [[ $qrc == 124 || $qrc == 137 ]]; then echo "$prog: VM timed out after ${TIMEOUT}s" >&2; code=124
    else echo "$prog: VM failed (qemu rc=$qrc, accel=$accel), no exit marker" >&2; code=125; fi
    [[ ${VM_VERBOSE:-0} == 1 ]] || { echo "----- console tail -----" >&2; tail -n 40 "$run_dir/console.log" >&2 || true; }
fi
exit "$code"
