#!/usr/bin/env bash
# Builds the guest image from Debian packages, reproducibly and without Docker:
#   <out>/beaconbox-kernel-x86_64  the newest installed Debian cloud kernel (vmlinuz)
#   <out>/beaconbox-vmlinux-x86_64 the same kernel uncompressed (PVH ELF), when it has a
#                                  PVH entry (Debian's has: CONFIG_PVH=y)
#   <out>/beaconbox-initrd         newc cpio, uncompressed (unpacks faster than gzip -9
#                                  under TCG, README "Boot budget"): /init (vminitd),
#                                  crun with its shared libraries and loader, the kernel modules in
#                                  load order (/etc/beaconbox/modules.order), minimal /etc
# Same inputs give the same bytes: fixed mtimes (SOURCE_DATE_EPOCH, default: the
# kernel's mtime), sorted file list, owner 0:0, cpio --reproducible.
#
# usage: build-image.sh --vminitd PATH --module-order-tool PATH --output-dir DIR
set -euo pipefail

vminitd="" order_tool="" out_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --vminitd) vminitd="$2"; shift 2 ;;
    --module-order-tool) order_tool="$2"; shift 2 ;;
    --output-dir) out_dir="$2"; shift 2 ;;
    *) echo "build-image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$vminitd" ] && [ -n "$order_tool" ] && [ -n "$out_dir" ] || {
  echo "usage: build-image.sh --vminitd PATH --module-order-tool PATH --output-dir DIR" >&2; exit 2; }

die() { echo "build-image.sh: $*" >&2; exit 1; }

# Modules vminitd loads at boot (virtio transports, channel, disks, virtio-fs, EROFS,
# qemu_fw_cfg for the agent token; loop for EROFS images shared over virtio-fs;
# virtio_balloon for free page reporting, bench/density).
# Built-in ones are skipped by the resolver.
wanted_modules=(virtio_pci virtio_mmio virtio_console virtio_blk virtio_net virtio_rng
  fuse virtiofs vsock vmw_vsock_virtio_transport erofs overlay loop qemu_fw_cfg
  virtio_balloon)

kernel=$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || die "no Debian cloud kernel (/boot/vmlinuz-*-cloud-amd64): run scripts/setup.sh (installs linux-image-cloud-amd64)"
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep missing: reinstall linux-image-$kver (scripts/setup.sh)"
crun=$(command -v crun || true)
[ -n "$crun" ] || die "crun not found: run scripts/setup.sh (installs crun)"
[ -x "$vminitd" ] || die "vminitd $vminitd not built"
for tool in cpio ldd strip; do
  command -v "$tool" >/dev/null || die "$tool not found: run scripts/setup.sh"
done

epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$kernel")}
mkdir -p "$out_dir"
stage=$(mktemp -d "$out_dir/.guest-image.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root"/{dev,proc,sys,run,tmp,root,etc/beaconbox,usr/bin,usr/sbin,lib64,lib/x86_64-linux-gnu}
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
chmod 1777 "$root/tmp"

# PID 1. Stripped: the debug info stays in the build tree.
strip --strip-all -o "$root/init" "$vminitd"
chmod 0755 "$root/init"

# crun, its libraries and the dynamic loader, at the paths ldd resolves them to.
install -m 0755 "$crun" "$root/usr/bin/crun"
ldd "$crun" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]*ld-linux/{print $1}' | sort -u |
while read -r lib; do
  dest="$root$lib"
  case "$lib" in /usr/lib/*) dest="$root${lib#/usr}" ;; esac  # merged-/usr: keep /lib
  mkdir -p "$(dirname "$dest")"
  cp -L "$lib" "$dest"
  chmod 0755 "$dest"
done

# Kernel modules, dependencies first; vminitd loads the list in order.
order=$("$order_tool" "$moddir" "${wanted_modules[@]}") || die "resolving kernel modules of $kver failed"
: > "$root/etc/beaconbox/modules.order"
for rel in $order; do
  mkdir -p "$(dirname "$root$moddir/$rel")"
  cp "$moddir/$rel" "$root$moddir/$rel"
  chmod 0644 "$root$moddir/$rel"
  echo "$moddir/$rel" >> "$root/etc/beaconbox/modules.order"
done
# Modules loaded only when the kernel asks for one (request_module), e.g. for a
# privileged container's brctl addbr or ip link add type dummy: vminitd, run by the
# kernel as /usr/sbin/bbx-modprobe, loads what modules.ondemand lists and nothing else.
# One line a module, "NAME ALIAS...: PATH...", dependencies first; a dependency already
# in modules.order is loaded at boot (and its file removed), so it is left out here.
# bridge, stp, llc, veth, dummy: 774,656 bytes more initrd (and guest RAM: these files stay).
ondemand_modules=(bridge veth dummy)
: > "$root/etc/beaconbox/modules.ondemand"
for m in "${ondemand_modules[@]}"; do
  files=$("$order_tool" "$moddir" "$m") || die "resolving on-demand kernel module $m of $kver failed"
  [ -n "$files" ] || continue  # built in
  aliases=$(awk -v m="$m" '$1 == "alias" && $3 == m && $2 ~ /^[A-Za-z0-9_-]+$/ { printf " %s", $2 }' \
    "$moddir/modules.alias" 2>/dev/null)
  paths=""
  for rel in $files; do
    grep -qxF "$moddir/$rel" "$root/etc/beaconbox/modules.order" && continue
    mkdir -p "$(dirname "$root$moddir/$rel")"
    cp "$moddir/$rel" "$root$moddir/$rel"
    chmod 0644 "$root$moddir/$rel"
    paths+=" $moddir/$rel"
  done
  echo "$m$aliases:$paths" >> "$root/etc/beaconbox/modules.ondemand"
done
ln -s ../../init "$root/usr/sbin/bbx-modprobe"
echo "$kver" > "$root/etc/beaconbox/kernel-release"
# The wanted modules built into the kernel (the resolver skips them): with
# modules.order, what a plugin's check reads to tell e.g. whether the guest has erofs.
for m in "${wanted_modules[@]}"; do
  if grep -qE "/${m//_/[_-]}\.ko(\.[a-z]+)?$" "$moddir/modules.builtin" 2>/dev/null; then echo "$m"; fi
done > "$root/etc/beaconbox/builtin-modules"

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' > "$root/etc/group"
: > "$root/etc/resolv.conf"
echo beaconbox > "$root/etc/hostname"
chmod 0644 "$root"/etc/passwd "$root"/etc/group "$root"/etc/resolv.conf "$root"/etc/hostname \
  "$root"/etc/beaconbox/*

find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
  cpio -o -H newc --reproducible -R 0:0 --quiet) > "$stage/initrd"
cp "$kernel" "$stage/kernel"
chmod 0644 "$stage/initrd" "$stage/kernel"
mv -f "$stage/initrd" "$out_dir/beaconbox-initrd"
mv -f "$stage/kernel" "$out_dir/beaconbox-kernel-x86_64"
echo "build-image.sh: $out_dir/beaconbox-kernel-x86_64 ($kver), $out_dir/beaconbox-initrd"

# The same kernel uncompressed, with its PVH entry (extract-vmlinux.sh): what Cloud
# Hypervisor direct-boots. Left out, with the reason, when the kernel has no PVH entry.
vmlinux_rc=0
"$(dirname "$0")/extract-vmlinux.sh" "$kernel" "$stage/vmlinux" || vmlinux_rc=$?
case $vmlinux_rc in
  0) touch -d "@$epoch" "$stage/vmlinux"
     mv -f "$stage/vmlinux" "$out_dir/beaconbox-vmlinux-x86_64"
     echo "build-image.sh: $out_dir/beaconbox-vmlinux-x86_64 (PVH ELF, from the same kernel)" ;;
  3) rm -f "$out_dir/beaconbox-vmlinux-x86_64" ;;
  *) die "extracting the vmlinux of $kernel failed" ;;
esac
