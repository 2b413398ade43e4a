#!/usr/bin/env bash
# Checkpoint and restore through containerd and ctr (issue 19 "measure and report"),
# storage.driver erofs on virtio-blk (what a VM-level checkpoint needs), one private
# containerd: for an idle busybox container and for one holding TOUCHED MiB of
# written memory (a file in its writable layer, which lives in the VM's memory):
#   - `ctr c checkpoint --task` wall time, the shim's own save time and the size of
#     the checkpoint (containerd's content of the checkpoint image);
#   - `ctr c restore --live` wall time (into a new container id) until the task runs,
#     where the shim restores (otherwise the refusal line is printed).
# The baseline, in the same run, is runc's shim with Debian's criu on the host; where
# CRIU cannot work on this host (`criu check` fails), its first error line is printed.
#   bench/checkpoint/ctr.sh [-n ITERATIONS] [-m TOUCHED_MIB] [-o OUTPUT_DIR] [-c system|1.7|2]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=3
touched=256
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
containerd_choice=system
while getopts 'n:m:o:c:' opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    m) touched=$OPTARG ;;
    o) output=$OPTARG ;;
    c) containerd_choice=$OPTARG ;;
    *) echo "usage: ctr.sh [-n ITERATIONS] [-m TOUCHED_MIB] [-o OUTPUT_DIR] [-c system|1.7|2]" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=$containerd_choice
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$iterations"
bbx_bench_number m "$touched"
command -v mkfs.erofs >/dev/null || { echo "ctr.sh: mkfs.erofs not found: run scripts/setup.sh" >&2; exit 1; }
bbx_select_containerd_or_skip
bbx_bench_start beaconbox plugins/storage-erofs.so
bbx_use_erofs blk

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# The size ctr reports for the checkpoint image REF (its blobs: the checkpoint tar,
# config and manifest).
image_size() {
  bbx_ctr image ls | awk -v ref="$1" '$1 == ref { print $4, $5 }'
}

# A running container ID whose writable layer holds MIB of random bytes (0: idle).
start_workload() {  # RUNTIME ID MIB
  local mib=$3
  BBX_RUNTIME=$1 bbx_run_detached "$2" /bin/sh -c \
    "head -c $((mib * 1048576)) /dev/urandom > /fill && echo ready > /ready || echo failed > /ready; exec sleep 3600"
  local i state
  for i in $(seq 600); do
    state=$(bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "r$i" "$2" cat /ready </dev/null 2>/dev/null || true)
    case $state in
      ready) return 0 ;;
      failed) echo "ctr.sh: container $2 could not write $mib MiB into its writable layer" >&2; return 1 ;;
    esac
    sleep 0.5
  done
  echo "ctr.sh: container $2 never finished writing $mib MiB" >&2
  return 1
}

summary() {  # LABEL, values on stdin
  sort -n | awk -v label="$1" '{ v[NR] = $1 } END {
    if (NR == 0) { printf "%-48s no figures\n", label; exit }
    printf "%-48s n=%-2d median %6d ms   min %6d ms   max %6d ms\n",
           label, NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR] }'
}

measure() {  # RUNTIME LABEL MIB
  local runtime=$1 label=$2 mib=$3 i id ref start out status restore_note=
  : > "$BBX_DIR/ck.ms"; : > "$BBX_DIR/restore.ms"
  for i in $(seq "$iterations"); do
    id="ck-$mib-$i-${runtime##*.}"; id=${id//./-}
    ref="docker.io/beaconbox/bench-checkpoint:$id"
    start_workload "$runtime" "$id" "$mib"
    start=$(date +%s%N) status=0
    out=$(bbx_ctr container checkpoint --task "$id" "$ref" 2>&1) || status=$?
    if [ "$status" != 0 ]; then
      echo "$label: checkpoint failed: $(head -c 300 <<<"$out" | tr '\n' ' ')"
      bbx_remove "$id"
      return 0
    fi
    ms_since "$start" >> "$BBX_DIR/ck.ms"
    [ "$i" = 1 ] && echo "$label: checkpoint image $(image_size "$ref")" &&
      grep -o "checkpoint of $BBX_NS/$id written to [^;]*" "$BBX_DIR/containerd.log" | tail -1 |
      sed "s|^|$label: the shim: |"
    bbx_remove "$id"
    start=$(date +%s%N) status=0
    out=$(bbx_ctr_in_containerd_mounts container restore --live "$id-r" "$ref" </dev/null 2>&1) ||
      status=$?
    if [ "$status" = 0 ]; then
      ms_since "$start" >> "$BBX_DIR/restore.ms"
      [ "$i" = 1 ] && grep -o "restore of $BBX_NS/$id-r: [^\"]*" "$BBX_DIR/containerd.log" | tail -1 |
        sed "s|^|$label: the shim: |"
    else
      restore_note="restore refused: $(head -c 300 <<<"$out" | tr '\n' ' ')"
    fi
    bbx_remove "$id-r"
    bbx_ctr image rm "$ref" >/dev/null 2>&1 || true
  done
  summary "$label: ctr c checkpoint --task" < "$BBX_DIR/ck.ms"
  if [ -n "$restore_note" ]; then
    echo "$label: $restore_note"
  else
    summary "$label: ctr c restore --live" < "$BBX_DIR/restore.ms"
  fi
}

echo "checkpoint/restore through containerd ($(bbx_ctr version | awk '/Version/ { print $2; exit }')), $iterations runs each, TCG"
if criu_error=$(criu check 2>&1); then
  measure io.containerd.runc.v2 "runc + criu, idle" 0
  measure io.containerd.runc.v2 "runc + criu, $touched MiB written" "$touched"
else
  echo "runc + criu: not measured, criu check fails on this host: $(grep -m1 -i error <<<"$criu_error" || head -1 <<<"$criu_error")"
fi
measure "$BBX_BEACONBOX_RUNTIME" "beaconbox, idle" 0
# The writable layer is a tmpfs in the guest (half its memory by default): the guest
# gets the default 512 MiB plus what is written, the tmpfs room for it.
sed -i "s/^\[vm\]\$/[vm]\nmemory_mib = $((512 + touched))\nmax_memory_mib = $((2048 + touched))/" "$BBX_BEACONBOX_CONFIG"
printf 'writable_layer_size_mib = %s\n' "$((touched + 32))" >> "$BBX_BEACONBOX_CONFIG"
measure "$BBX_BEACONBOX_RUNTIME" "beaconbox, $touched MiB written ($((512 + touched)) MiB guest)" "$touched"
