#!/usr/bin/env bash
# Image layers as EROFS (storage-erofs, issue 13) against the virtio-fs rootfs and
# runc, in one run under one private containerd (scripts/lib/containerd-env.sh), with
# the 3-layer image of tests/e2e/erofs_image (a BIG_MIB file, a tree of TREE_FILES
# small files). For each of runc, beaconbox virtiofs, erofs transport blk and erofs
# transport virtiofs:
#   - `ctr run --rm` wall time of the first container (erofs: the cache emptied
#     first, so conversion is included) and of the next ITERATIONS ones (cache hits);
#   - inside the container: reading the big file (sha256sum) and walking /data/tree
#     (find | wc -l), timed with /proc/uptime (10 ms resolution);
#   - the shim's own per-layer figures from its log: conversion time (with each
#     layer's size: ms per MB) and the host-side time of a cache hit (goal: < 5 ms).
#   - VmRSS of the shim + QEMU + virtiofsd while a container sleeps.
#   bench/erofs/run.sh [-n ITERATIONS] [-o OUTPUT_DIR] [-b BIG_MIB] [-t TREE_FILES]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=2 big_mib=100 tree_files=10000
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
while getopts 'n:o:b:t:' opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    o) output=$OPTARG ;;
    b) big_mib=$OPTARG ;;
    t) tree_files=$OPTARG ;;
    *) echo "usage: run.sh [-n ITERATIONS] [-o OUTPUT_DIR] [-b BIG_MIB] [-t TREE_FILES]" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=system
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$iterations"
bbx_bench_number b "$big_mib"
bbx_bench_number t "$tree_files"

bbx_bench_start beaconbox plugins/storage-erofs.so
tar="$BBX_DIR/layered.tar"
BBX_IMAGE=$(BBX_BIG_MIB=$big_mib BBX_TREE_FILES=$tree_files \
            "$repo/tests/e2e/erofs_image/build_layered_image.sh" "$tar" docker.io/beaconbox/layered:bench)
bbx_ctr image import "$tar" >/dev/null
base_config=$(cat "$BBX_BEACONBOX_CONFIG")
cache_dir="$BBX_DIR/beacon/state/erofs"

use() {  # use virtiofs|blk|erofs-virtiofs: rewrites the shims' config
  case $1 in
    virtiofs) printf '%s\n' "$base_config" > "$BBX_BEACONBOX_CONFIG" ;;
    *) printf '%s\n' "$base_config" | sed 's/^driver = "virtiofs"$/driver = "erofs"/' > "$BBX_BEACONBOX_CONFIG"
       printf '\n[plugins.storage.erofs]\npath = "%s"\n[plugins.storage.erofs.config]\ntransport = "%s"\n' \
         "$output/plugins/storage-erofs.so" "$([ "$1" = blk ] && echo blk || echo virtiofs)" >> "$BBX_BEACONBOX_CONFIG" ;;
  esac
}

inside='t() { read -r u _ < /proc/uptime; echo "${u%.*}${u#*.}"; }
a=$(t); sha256sum /data/big >/dev/null; b=$(t); n=$(find /data/tree | wc -l); c=$(t)
echo "read $(( (b - a) * 10 )) walk $(( (c - b) * 10 )) files $n"'

one_run() {  # RUNTIME ID -> "wall_ms read_ms walk_ms"
  local start end out
  start=$(date +%s%N)
  out=$(BBX_RUNTIME=$1 bbx_run "$2" /bin/sh -c "$inside")
  end=$(date +%s%N)
  set -- $out
  echo "$(((end - start) / 1000000)) $2 $4"
}

rss_kib() {  # RUNTIME -> KiB of every process of the environment but containerd, one container sleeping
  BBX_RUNTIME=$1 bbx_run_detached rss /bin/sleep 600
  sleep 3
  local pid total=0 kib
  for pid in $(bbx_env_pids); do
    [ "$pid" = "$BBX_CONTAINERD_PID" ] && continue
    kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${kib:-0}))
  done
  bbx_remove rss
  echo "$total"
}

printf '%-22s %-10s %9s %9s %9s\n' config run wall_ms read_ms walk_ms
for config in runc virtiofs blk erofs-virtiofs; do
  runtime=$BBX_BEACONBOX_RUNTIME
  [ "$config" = runc ] && runtime=io.containerd.runc.v2 || use "$config"
  rm -rf "$cache_dir"
  mark=$(wc -l < "$BBX_DIR/containerd.log")
  for i in $(seq 0 "$iterations"); do
    read -r wall read walk < <(one_run "$runtime" "b-$config-$i")
    printf '%-22s %-10s %9s %9s %9s\n' "$config" "$([ "$i" = 0 ] && echo first || echo "next$i")" "$wall" "$read" "$walk"
  done
  if [ "$config" = blk ] || [ "$config" = erofs-virtiofs ]; then
    tail -n +"$mark" "$BBX_DIR/containerd.log" | grep -o 'erofs layer [^ ]*: converted in [0-9.]* ms' |
      while read -r _ _ dir _ _ ms _; do
        mb=$(du -sm "${dir%:}" | cut -f1)
        echo "  $config conversion: layer of ${mb} MB in $ms ms"
      done
    tail -n +"$mark" "$BBX_DIR/containerd.log" | grep -o 'cache hit in [0-9.]*' | awk -v c="$config" '
      { s += $4; if ($4 > m) m = $4; n++ } END { if (n) printf "  %s cache hit, host side: %d layers, mean %.3f ms, max %.3f ms per layer (goal < 5 ms)\n", c, n, s / n, m }'
  fi
  echo "  $config memory (shim + VMM + helpers, one sleeping container): $(rss_kib "$runtime") KiB"
done
