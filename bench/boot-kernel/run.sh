#!/usr/bin/env bash
# Guest boot to agent ready under a VMM plugin with the compressed bzImage
# (beaconbox-kernel-x86_64) against the same kernel uncompressed with its PVH entry
# (beaconbox-vmlinux-x86_64, guest/extract-vmlinux.sh), alternating in one run so
# that both see the same machine load. Each boot is one beaconbox-vmm-conformance run
# (the plugin driven as the shim drives it); the figure is its "agent/hello ... N ms
# after create began" (vm_create until the agent answers Hello with the token).
#   bench/boot-kernel/run.sh [-n ITERATIONS] [-p PLUGIN_SO] [-o OUTPUT_DIR]
# Default plugin: vmm-qemu (TCG here). Timing only: no pass/fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=3
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
plugin=""
while getopts 'n:p:o:' opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    p) plugin=$OPTARG ;;
    o) output=$OPTARG ;;
    *) echo "usage: run.sh [-n ITERATIONS] [-p PLUGIN_SO] [-o OUTPUT_DIR]" >&2; exit 2 ;;
  esac
done
[[ $iterations =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -n wants a positive count" >&2; exit 2; }
plugin=${plugin:-$output/plugins/vmm-qemu.so}
conformance=$output/beaconbox-vmm-conformance
for f in "$conformance" "$plugin" "$output/beaconbox-kernel-x86_64" "$output/beaconbox-initrd"; do
  [ -e "$f" ] || { echo "run.sh: $f missing: build first (make)" >&2; exit 1; }
done
[ -e "$output/beaconbox-vmlinux-x86_64" ] ||
  { echo "run.sh: no $output/beaconbox-vmlinux-x86_64 (guest/build-image.sh writes it when the kernel has a PVH entry)" >&2; exit 1; }

boot_ms() {  # boot_ms KERNEL: one boot, prints the ms to agent ready
  local out
  out=$("$conformance" --plugin "$plugin" --kernel "$1" --initrd "$output/beaconbox-initrd" \
          --skip pause --skip resize 2>&1) || { echo "run.sh: conformance run failed: $out" >&2; exit 1; }
  sed -n 's/^PASS agent\/hello: .*, \([0-9]*\) ms after create began$/\1/p' <<<"$out"
}

declare -A all=([bzImage]="" [vmlinux]="")
for ((i = 1; i <= iterations; i++)); do
  for kind in bzImage vmlinux; do
    kernel=$output/beaconbox-kernel-x86_64
    [ "$kind" = vmlinux ] && kernel=$output/beaconbox-vmlinux-x86_64
    ms=$(boot_ms "$kernel")
    echo "run $i $kind: $ms ms"
    all[$kind]+="$ms "
  done
done
for kind in bzImage vmlinux; do
  # shellcheck disable=SC2086
  awk -v k="$kind" '{ n = split($0, t, " "); s = 0; min = t[1]; max = t[1];
    for (i = 1; i <= n; i++) { s += t[i]; if (t[i] < min) min = t[i]; if (t[i] > max) max = t[i] }
    printf "%s: mean %.0f ms, min %d, max %d over %d boots (%s)\n", k, s / n, min, max, n, $0 }' <<<"${all[$kind]}"
done
echo "plugin $(basename "$plugin"), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
