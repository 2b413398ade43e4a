#!/usr/bin/env bash
# Container stdout throughput through containerd: `yes | head -c 100000000` in a
# container, read by ctr into wc -c, with runc's shim and with beaconbox in one run
# under one private containerd (scripts/lib/containerd-env.sh). Prints MB/s per run
# and the median per runtime. To compare two builds, run it once per output dir.
# Then where the time goes, with execs into one running container per runtime (no
# start in the figure): the same command to /dev/null in the container (the CPU of
# making the bytes, in the guest for beaconbox) and to ctr's stdout (plus the relay:
# the guest's pipe, the shim's pulls over vsock, containerd's FIFO, ctr), each less
# the round trip of an exec of /bin/true; the relay's share is their difference.
#   bench/io-throughput/run.sh [-n ITERATIONS] [-o OUTPUT_DIR] [-b BYTES]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=3
bytes=100000000
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
while getopts 'n:o:b:' opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    o) output=$OPTARG ;;
    b) bytes=$OPTARG ;;
    *) echo "usage: run.sh [-n ITERATIONS] [-o OUTPUT_DIR] [-b BYTES]" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=system
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$iterations"
bbx_bench_number b "$bytes"

mapfile -t runtimes < <(bbx_measured_runtimes "$output")

bbx_bench_start any

echo "stdout throughput of \`yes | head -c $bytes\` through ctr (output: $output)"
for runtime in "${runtimes[@]}"; do
  rates=()
  for i in $(seq "$iterations"); do
    # The wall time includes the container's start; a run without any container
    # output is timed too and subtracted, so the figure is the copy alone.
    start=$(date +%s%N)
    BBX_RUNTIME=$runtime bbx_run "idle-$i" /bin/true >/dev/null
    idle_ns=$(($(date +%s%N) - start))
    start=$(date +%s%N)
    got=$(BBX_RUNTIME=$runtime bbx_run "tput-$i" /bin/sh -c "yes | head -c $bytes" | wc -c)
    run_ns=$(($(date +%s%N) - start))
    [ "$got" = "$bytes" ] || echo "  $runtime run $i: got $got of $bytes bytes" >&2
    copy_ns=$((run_ns - idle_ns))
    [ "$copy_ns" -gt 0 ] || copy_ns=1
    rate=$(awk -v b="$bytes" -v ns="$copy_ns" 'BEGIN {printf "%.1f", b * 1000 / ns}')  # MB/s
    rates+=("$rate")
    printf '  %-28s run %d: %6s MB/s (run %d ms, idle start %d ms)\n' "$runtime" "$i" "$rate" \
      $((run_ns / 1000000)) $((idle_ns / 1000000))
  done
  median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-28s median %s MB/s over %d runs\n' "$runtime" "$median" "$iterations"
done

mb_per_s() { awk -v b="$bytes" -v ms="$1" 'BEGIN {printf "%.1f", b / 1000 / ms}'; }
median_of() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
exec_ms() {  # exec_ms ID EXEC_ID CMD...: ms of one ctr task exec, its stdout to wc -c
  local id=$1 exec_id=$2 start got
  shift 2
  start=$(date +%s%N)
  got=$(bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "$exec_id" "$id" "$@" </dev/null | wc -c)
  echo "$((($(date +%s%N) - start) / 1000000)) $got"
}
echo
echo "where the time goes: execs into a running container, median of $iterations each"
for runtime in "${runtimes[@]}"; do
  id="split-${runtime//./-}"
  BBX_RUNTIME=$runtime bbx_run_detached "$id" /bin/sleep 3600
  exec_ms "$id" warm /bin/true >/dev/null
  trip=() null=() relay=()
  for i in $(seq "$iterations"); do
    read -r ms _ < <(exec_ms "$id" "t$i" /bin/true)
    trip+=("$ms")
    read -r ms _ < <(exec_ms "$id" "n$i" /bin/sh -c "yes | head -c $bytes > /dev/null")
    null+=("$ms")
    read -r ms got < <(exec_ms "$id" "s$i" /bin/sh -c "yes | head -c $bytes")
    [ "$got" = "$bytes" ] || echo "  $runtime exec $i: got $got of $bytes bytes" >&2
    relay+=("$ms")
  done
  trip_ms=$(printf '%s\n' "${trip[@]}" | median_of)
  null_ms=$(printf '%s\n' "${null[@]}" | median_of)
  relay_ms=$(printf '%s\n' "${relay[@]}" | median_of)
  gen_ms=$((null_ms > trip_ms ? null_ms - trip_ms : 1))
  out_ms=$((relay_ms > trip_ms ? relay_ms - trip_ms : 1))
  printf '%-28s exec /bin/true %d ms; to /dev/null %d ms (%s MB/s); to stdout %d ms (%s MB/s); relay %d ms = %d%% of the stdout time\n' \
    "$runtime" "$trip_ms" "$gen_ms" "$(mb_per_s "$gen_ms")" "$out_ms" "$(mb_per_s "$out_ms")" \
    $((out_ms > gen_ms ? out_ms - gen_ms : 0)) $(((out_ms > gen_ms ? out_ms - gen_ms : 0) * 100 / out_ms))
  bbx_remove "$id"
done
