#!/usr/bin/env bash
# `ctr run --rm IMAGE ID /bin/true` wall time with runc's shim and with beaconbox, in
# one run under one private containerd (scripts/lib/containerd-env.sh); then each
# shim's VmRSS while a `sleep` container runs. beaconbox is measured when its shim,
# kernel, initrd and plugins are in the output dir; otherwise only runc, and the
# beaconbox rows say what is missing.
# With -p, the cost of the KVM probe (issue 8) instead: beaconbox with FAKE-QEMU
# (tests/plugins/vmm-qemu/fake-qemu-kvm-msr-abort.sh: fails under KVM like a nested
# kvm_pvm host, runs the real QEMU otherwise) and kvm_device = /dev/null, as
# accelerator = "tcg" (no probe), "auto" on first use (the verdict removed before each
# run: every run probes) and "auto" with the cached verdict, next to runc.
# With -w, a CPU-heavy container instead (issue 16, the TCG translation cache's cost):
# `ctr run --rm` of busybox sh running WORKLOAD (default: sha256sum of 64 MiB of
# /dev/zero, then a 100000-step shell loop), with runc and with beaconbox once per
# tcg_tb_size_mib of -T (default "32 16"), the variants interleaved run by run so that
# load from other processes spreads over all of them. Reported: the median `ctr run`
# wall time and the median of the workload's own time measured in the container
# (/proc/uptime before and after it: the guest's clock for beaconbox).
#   bench/ctr-run/run.sh [-p] [-w] [-W WORKLOAD] [-T "TB_SIZES"] [-n ITERATIONS]
#                        [-o OUTPUT_DIR] [-c system|1.7|BIN_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=10
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
containerd_choice=system
probe_mode=
workload_mode=
# shellcheck disable=SC2016  # expanded by the container's sh, not here
workload='dd if=/dev/zero bs=1M count=64 2>/dev/null | sha256sum >/dev/null; i=0; while [ $i -lt 100000 ]; do i=$((i + 1)); done'
tb_sizes="32 16"
while getopts 'pwW:T:n:o:c:' opt; do
  case $opt in
    p) probe_mode=1 ;;
    w) workload_mode=1 ;;
    W) workload_mode=1 workload=$OPTARG ;;
    T) workload_mode=1 tb_sizes=$OPTARG ;;
    n) iterations=$OPTARG ;;
    o) output=$OPTARG ;;
    c) containerd_choice=$OPTARG ;;
    *) echo "usage: run.sh [-p] [-w] [-W WORKLOAD] [-T \"TB_SIZES\"] [-n ITERATIONS] [-o OUTPUT_DIR] [-c system|1.7|BIN_DIR]" >&2; exit 2 ;;
  esac
done
for tb in $tb_sizes; do
  [[ $tb =~ ^[0-9]+$ ]] || { echo "run.sh: -T takes tcg_tb_size_mib values (integers) separated by spaces, not '$tb'" >&2; exit 2; }
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=$containerd_choice
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$iterations"

runtimes=(io.containerd.runc.v2)
missing=$(bbx_beaconbox_missing "$output")
[ -z "$missing" ] && runtimes+=("$BBX_BEACONBOX_RUNTIME")

bbx_bench_start any

time_runs() {  # RUNTIME -> one wall time in ms per line; a failed run aborts
  local i start end
  for i in $(seq "$iterations"); do
    start=$(date +%s%N)
    BBX_RUNTIME=$1 bbx_run "bench-$i" /bin/true >/dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
  done
}

summary() {  # LABEL, durations (ms) on stdin
  sort -n | awk -v label="$1" '{ v[NR] = $1 } END {
    p90 = int(NR * 0.9); if (p90 < NR * 0.9) p90++; if (p90 < 1) p90 = 1
    printf "%-32s n=%-3d median %7d ms   p90 %7d ms   min %7d ms\n",
           label, NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[p90], v[1] }'
}

rss_kib() {  # RUNTIME -> VmRSS (KiB) of the shim serving a running `sleep` container
  local pid kib=
  BBX_RUNTIME=$1 bbx_run_detached rss /bin/sleep 600
  sleep 1
  if pid=$(bbx_shim_pid_of rss); then
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    echo "${kib:-?} KiB (pid $pid, $(basename "$(readlink "/proc/$pid/exe")"))"
  else
    echo "? (no shim found)"
  fi
  bbx_remove rss
}

# -p: the probe's cost, first use against cached, in the same run as runc.
probe_bench() {
  [ -z "$missing" ] || { echo "-p needs beaconbox built; missing: $(tr '\n' ' ' <<<"$missing")" >&2; return 1; }
  local fake="$BBX_DIR/fake-qemu-kvm-msr-abort.sh" base="$BBX_DIR/beaconbox.toml.base"
  local verdicts="$BBX_DIR/beacon/state/vmm-qemu/cache" mode i start end
  cp "$repo/tests/plugins/vmm-qemu/fake-qemu-kvm-msr-abort.sh" "$fake"
  cp "$BBX_BEACONBOX_CONFIG" "$base"
  echo "== ctr run --rm IMAGE ID /bin/true, $iterations runs each (after one warm-up run);"
  echo "   beaconbox with FAKE-QEMU failing KVM like kvm_pvm (MSR 0x10a), kvm_device = /dev/null"
  bbx_run bench-warmup /bin/true >/dev/null
  BBX_RUNTIME=io.containerd.runc.v2 bbx_run bench-warmup /bin/true >/dev/null
  BBX_RUNTIME=io.containerd.runc.v2 time_runs io.containerd.runc.v2 | summary io.containerd.runc.v2
  local log="$BBX_DIR/containerd.log" seen vmm_start=()
  for mode in tcg auto-first-use auto-cached; do
    seen=$(grep -c '(VMM start ' "$log" || true)
    cp "$base" "$BBX_BEACONBOX_CONFIG"
    printf '\n[plugins.vmm.qemu.config]\naccelerator = "%s"\nbinary = "%s"\nkvm_device = "/dev/null"\n' \
      "${mode%%-*}" "$fake" >> "$BBX_BEACONBOX_CONFIG"
    for i in $(seq "$iterations"); do
      [ "$mode" = auto-first-use ] && rm -f "$verdicts"/kvm-verdict-*.json
      start=$(date +%s%N)
      bbx_run "bench-$i" /bin/true >/dev/null
      end=$(date +%s%N)
      echo $(((end - start) / 1000000))
    done | summary "beaconbox $mode"
    # The shim's own split: VMM start covers the accelerator choice (and probe).
    vmm_start+=("$(grep -oE '\(VMM start [0-9]+ ms\)' "$log" | tail -n +$((seen + 1)) |
                   grep -oE '[0-9]+' | summary "  VMM start, $mode")")
  done
  printf '%s\n' "${vmm_start[@]}"
  echo "== the probe itself (the shims' 'probed in N ms'):"
  grep -E 'VM bench-[0-9]+ uses ' "$BBX_DIR/containerd.log" | grep -oE 'probed in [0-9]+ ms' | awk '{ s += $3; n++ } END {
    if (n) printf "   %d probes, mean %.1f ms\n", n, s / n }'
}
if [ -n "$probe_mode" ]; then
  probe_bench
  exit
fi

# -w: the CPU workload with runc and with each translation cache size, interleaved.
workload_bench() {
  [ -z "$missing" ] || { echo "-w needs beaconbox built; missing: $(tr '\n' ' ' <<<"$missing")" >&2; return 1; }
  local base="$BBX_DIR/beaconbox.toml.base" results="$BBX_DIR/workload-results" variant tb i
  local start end inner out runtime variants=(runc)
  cp "$BBX_BEACONBOX_CONFIG" "$base"
  for tb in $tb_sizes; do variants+=("tb$tb"); done
  # The container prints the workload's own time (centiseconds, from /proc/uptime: its
  # kernel's clock; busybox's date has no %N).
  local script="read s _ < /proc/uptime; $workload; read e _ < /proc/uptime
    echo workload-cs \$((\${e%.*}\${e#*.} - \${s%.*}\${s#*.}))"
  : > "$results"
  echo "== containerd $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}'), image $BBX_IMAGE, $(nproc) CPUs"
  echo "== CPU workload: $workload"
  echo "== ctr run --rm, $iterations runs of each variant (interleaved, after one warm-up run each)"
  echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for i in warmup $(seq "$iterations"); do
    for variant in "${variants[@]}"; do
      if [ "$variant" = runc ]; then
        runtime=io.containerd.runc.v2
      else
        runtime=$BBX_BEACONBOX_RUNTIME
        cp "$base" "$BBX_BEACONBOX_CONFIG"
        printf '\n[plugins.vmm.qemu.config]\ntcg_tb_size_mib = %s\n' "${variant#tb}" >> "$BBX_BEACONBOX_CONFIG"
      fi
      start=$(date +%s%N)
      out=$(BBX_RUNTIME=$runtime bbx_run "bench-$i" /bin/sh -c "$script")
      end=$(date +%s%N)
      inner=$(awk '$1 == "workload-cs" && $2 ~ /^[0-9]+$/ {print $2 * 10}' <<<"$out" | tail -1)
      [ -n "$inner" ] || { echo "$variant run $i: the container printed no workload time: $(head -c 300 <<<"$out")" >&2; return 1; }
      [ "$i" = warmup ] || echo "$variant $(((end - start) / 1000000)) $inner" >> "$results"
    done
  done
  echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  for variant in "${variants[@]}"; do
    local label=$variant
    [ "$variant" = runc ] && label=io.containerd.runc.v2
    [ "$variant" = runc ] || label="beaconbox tcg_tb_size_mib=${variant#tb}"
    awk -v v="$variant" '$1 == v {print $2}' "$results" | summary "$label ctr run"
    awk -v v="$variant" '$1 == v {print $3}' "$results" | summary "$label workload"
    echo "  runs (ctr run/workload ms): $(awk -v v="$variant" '$1 == v {printf "%s/%s ", $2, $3}' "$results")"
  done
  cp "$base" "$BBX_BEACONBOX_CONFIG"
}
if [ -n "$workload_mode" ]; then
  workload_bench
  exit
fi

echo "== containerd $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}'), image $BBX_IMAGE"
echo "== ctr run --rm IMAGE ID /bin/true, $iterations runs each (after one warm-up run)"
for runtime in "${runtimes[@]}"; do
  BBX_RUNTIME=$runtime bbx_run bench-warmup /bin/true >/dev/null
  time_runs "$runtime" | summary "$runtime"
done
[ -z "$missing" ] && echo "== beaconbox's accelerator: $(bbx_vm_accelerators | tail -1)"
[ -n "$missing" ] && echo "$BBX_BEACONBOX_RUNTIME: not measured, missing: $(tr '\n' ' ' <<<"$missing")"

echo "== shim VmRSS while a sleep container runs"
for runtime in "${runtimes[@]}"; do
  printf '%-32s %s\n' "$runtime" "$(rss_kib "$runtime")"
done
if [ -z "$missing" ]; then
  echo "== beaconbox's time split (the shim's own timing lines, last runs)"
  grep -oE '(created in the VM|deleted: teardown|timing).*' "$BBX_DIR/containerd.log" | tail -4 || true
fi
