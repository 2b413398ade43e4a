#!/usr/bin/env bash
# Exec round trip through containerd: `ctr task exec TASK /bin/true`, from ctr's start
# to its exit (Exec, Start, the process's run, its exit event, Delete), into one
# running container with runc's shim and with beaconbox, in one run under one private
# containerd (scripts/lib/containerd-env.sh). Prints each runtime's median and range.
#   bench/exec/run.sh [-n ITERATIONS] [-o OUTPUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=20
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
while getopts 'n:o:' opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    o) output=$OPTARG ;;
    *) echo "usage: run.sh [-n ITERATIONS] [-o OUTPUT_DIR]" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=system
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$iterations"

mapfile -t runtimes < <(bbx_measured_runtimes "$output")

bbx_bench_start any

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] " ms (min " a[1] ", max " a[NR] ")"}'; }

echo "exec round trip of \`ctr task exec TASK /bin/true\`, $iterations runs (output: $output)"
for runtime in "${runtimes[@]}"; do
  id="exec-bench-${runtime//./-}"
  BBX_RUNTIME=$runtime bbx_run_detached "$id" /bin/sleep 3600
  # The first exec after the start is not measured (the task may still settle).
  bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id warm "$id" /bin/true </dev/null
  times=()
  for i in $(seq "$iterations"); do
    start=$(date +%s%N)
    bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "e$i" "$id" /bin/true </dev/null
    times+=($((($(date +%s%N) - start) / 1000000)))
  done
  printf '%-28s median %s\n' "$runtime" "$(printf '%s\n' "${times[@]}" | median)"
  bbx_remove "$id"
done
