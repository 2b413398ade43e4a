#!/usr/bin/env bash
# `ctr run --rm IMAGE ID /bin/true` wall time, runc's shim against beaconbox, in one
# run under one private containerd; then each shim's RSS while a container runs, and
# how beaconbox's create splits (from the shim's own timing line).
#   bench/ctr-run/run.sh [OUTPUT_DIR] [ITERATIONS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
output=${1:-$here/../../_output}
iterations=${2:-5}
# shellcheck source=../../scripts/lib/containerd-env.sh
source "$here/../../scripts/lib/containerd-env.sh"
bbx_env_start "$output"
bbx_import_demo_image

time_runs() {  # runtime -> prints one duration (s) per run
  local runtime=$1 i start end
  for i in $(seq "$iterations"); do
    start=$(date +%s%N)
    bbx_ctr run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "bench-$i" /bin/true
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
  done
}

summary() {  # label, then durations (ms) on stdin
  sort -n | awk -v label="$1" '{v[NR]=$1} END {
    printf "%-28s n=%d  median %6d ms  p90 %6d ms  min %6d ms\n", label, NR, v[int((NR+1)/2)],
           v[int(NR*0.9+0.999)], v[1]}'
}

rss_kib() {  # runtime, shim binary name -> VmRSS of that shim while `sleep` runs
  local runtime=$1 shim=$2 pid=""
  bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" rss /bin/sleep 60 >/dev/null
  # The shim is the process whose working directory is the bundle and whose
  # executable is the shim binary (runc's shim records no pid file).
  for p in /proc/[0-9]*; do
    if [ "$(readlink "$p/cwd" 2>/dev/null)" = "$BBX_DIR/state/io.containerd.runtime.v2.task/default/rss" ] &&
       [ "$(basename "$(readlink "$p/exe" 2>/dev/null)")" = "$shim" ]; then
      pid=${p#/proc/}
    fi
  done
  awk '/VmRSS/ {print $2}' "/proc/$pid/status"
  bbx_ctr task kill -s KILL rss >/dev/null 2>&1 || true
  sleep 1
  bbx_ctr task delete rss >/dev/null 2>&1 || true
  bbx_ctr container rm rss >/dev/null 2>&1 || true
}

echo "== ctr run --rm $BBX_IMAGE ID /bin/true, $iterations runs each (accelerator: $( [ -w /dev/kvm ] && echo kvm || echo tcg))"
time_runs io.containerd.runc.v2 | summary "runc (containerd-shim-runc-v2)"
time_runs io.containerd.beaconbox.v1 | summary "beaconbox (QEMU VM)"
echo "== shim RSS while a container runs"
echo "containerd-shim-runc-v2:       $(rss_kib io.containerd.runc.v2 containerd-shim-runc-v2) KiB"
echo "containerd-shim-beaconbox-v1:  $(rss_kib io.containerd.beaconbox.v1 containerd-shim-beaconbox-v1) KiB"
echo "== beaconbox create split (last runs, from the shim log)"
grep -o 'created in the VM.*' "$BBX_DIR/containerd.log" | tail -3
grep -o 'deleted: teardown.*' "$BBX_DIR/containerd.log" | tail -3
