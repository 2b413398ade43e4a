#!/usr/bin/env bash
# Density: N idle `sleep` containers (busybox demo image) started one after the other
# under one private containerd (scripts/lib/containerd-env.sh), first with runc's
# shim, then with beaconbox, in the same run. For each runtime it reports:
#   - the wall time of `ctr run -d` for the first and the N-th container;
#   - per container, the PSS (/proc/<pid>/smaps_rollup) of the shim and of each
#     process below the shim (found from the shim's pid through the parent links,
#     never by name): for beaconbox the VMM and virtiofsd, for runc the container's
#     own process (reported apart: it is the workload, not the runtime);
#   - the shim's RSS;
#   - host memory used: MemAvailable before the first start minus MemAvailable
#     after the last one (after a settle time), in total and per container.
# Everything it starts is removed before the next runtime and on exit.
# With -n larger than the machine holds, it stops starting containers once
# MemAvailable drops below the reserve (-r) or a start fails, and says how many ran.
#   bench/density/run.sh [-n N] [-s SETTLE_S] [-r RESERVE_MIB] [-t RUNTIMES]
#                        [-x QEMU_CONFIG_TOML] [-k KERNEL_ARGS] [-o OUTPUT_DIR] [-c system|1.7|2|BIN_DIR]
#   -t: runc, beaconbox or both (default both)
#   -x: lines appended under [plugins.vmm.qemu.config] of the generated beaconbox
#       config (e.g. 'tcg_tb_size_mib = 32'), for comparing VMM settings
#   -k: the generated config's vm.kernel_cmdline (guest kernel arguments)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
count=20
settle=15
reserve_mib=2048
which_runtimes=both
qemu_extra=
kernel_args=
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
containerd_choice=system
usage="usage: run.sh [-n N] [-s SETTLE_S] [-r RESERVE_MIB] [-t runc|beaconbox|both] [-x QEMU_CONFIG_TOML] [-k KERNEL_ARGS] [-o OUTPUT_DIR] [-c system|1.7|2|BIN_DIR]"
while getopts 'n:s:r:t:x:k:o:c:' opt; do
  case $opt in
    n) count=$OPTARG ;;
    s) settle=$OPTARG ;;
    r) reserve_mib=$OPTARG ;;
    t) which_runtimes=$OPTARG ;;
    x) qemu_extra=$OPTARG ;;
    k) kernel_args=$OPTARG ;;
    o) output=$OPTARG ;;
    c) containerd_choice=$OPTARG ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
[[ $kernel_args != *[\"\\]* ]] || { echo "run.sh: -k takes no quotes or backslashes" >&2; exit 2; }
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=$containerd_choice
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$count"
bbx_bench_number s "$settle" 0
bbx_bench_number r "$reserve_mib" 0

bbx_bench_runtimes "$which_runtimes"
started=()  # container ids of the runtime being measured
declare -A shim_of  # container id -> its shim's pid
bbx_on_stop() {
  local id
  for id in "${started[@]}"; do bbx_ctr task kill -s KILL "$id" >/dev/null 2>&1 || true; done
  for id in "${started[@]}"; do bbx_remove "$id"; done
  started=()
}

if [ "$which_runtimes" = runc ]; then bbx_bench_start any; else bbx_bench_start beaconbox; fi
if [ -n "$kernel_args" ]; then
  sed -i "/^\[vm\]\$/a kernel_cmdline = \"$kernel_args\"" "$BBX_BEACONBOX_CONFIG"
fi
if [ -n "$qemu_extra" ]; then
  printf '\n[plugins.vmm.qemu.config]\n%s\n' "$qemu_extra" >> "$BBX_BEACONBOX_CONFIG"
fi

mem_available_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }

# PID -> "Pss Rss" in KiB from smaps_rollup; "0 0" when it vanished.
pss_rss_kib() {
  awk '/^Pss:/ {p = $2} /^Rss:/ {r = $2} END {print p + 0, r + 0}' "/proc/$1/smaps_rollup" 2>/dev/null ||
    echo "0 0"
}

# PID -> its descendants, one a line (parent links of every process).
descendants() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { line = $0; sub(/^.*\) /, "", line); split(line, f, " "); parent[$1] = f[2] }
    END {
      mark[root] = 1
      do { changed = 0
           for (pid in parent) if (!(pid in mark) && (parent[pid] in mark)) { mark[pid] = 1; changed = 1 }
      } while (changed)
      for (pid in mark) if (pid != root) print pid
    }'
}

# One container's processes: "shim_pss shim_rss vmm_pss virtiofsd_pss other_pss"
# (KiB). The VMM and virtiofsd are told apart by the executable the beaconbox config
# names (the shim's descendants were found by pid, not by name).
container_kib() {
  local id=$1 shim=${shim_of[$1]:-} pid exe pr pss
  local shim_pss=0 shim_rss=0 vmm=0 vfs=0 other=0
  [ -n "$shim" ] || { echo "? ? ? ? ?"; return; }
  read -r shim_pss shim_rss < <(pss_rss_kib "$shim")
  for pid in $(descendants "$shim"); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    pr=$(pss_rss_kib "$pid")
    pss=${pr%% *}
    case ${exe##*/} in
      qemu-system-*) vmm=$((vmm + pss)) ;;
      virtiofsd) vfs=$((vfs + pss)) ;;
      *) other=$((other + pss)) ;;
    esac
  done
  echo "$shim_pss $shim_rss $vmm $vfs $other"
}

measure() {  # RUNTIME
  local runtime=$1 i id start end ms before after n=0 first_ms=0 last_ms=0 stop_reason=
  started=()
  sync
  echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || true
  sleep 2
  before=$(mem_available_kib)
  for i in $(seq "$count"); do
    if [ $(($(mem_available_kib) / 1024)) -lt "$reserve_mib" ]; then
      stop_reason="MemAvailable below the ${reserve_mib} MiB reserve"
      break
    fi
    id="density-$i"
    start=$(date +%s%N)
    if ! BBX_RUNTIME=$runtime bbx_run_detached "$id" /bin/sleep 36000 2> "$BBX_DIR/start-$i.err"; then
      stop_reason="start $i failed: $(head -c 300 "$BBX_DIR/start-$i.err" | tr '\n' ' ')"
      bbx_remove "$id"
      break
    fi
    end=$(date +%s%N)
    started+=("$id")
    ms=$(((end - start) / 1000000))
    n=$i
    [ "$i" -eq 1 ] && first_ms=$ms
    last_ms=$ms
    echo "  started $id in $ms ms (MemAvailable $(($(mem_available_kib) / 1024)) MiB)" >&2
  done
  sleep "$settle"
  after=$(mem_available_kib)
  echo "== $runtime: $n idle containers (asked for $count)${stop_reason:+; stopped: $stop_reason}"
  [ "$n" -gt 0 ] || return 0
  echo "   start time: container 1 $first_ms ms, container $n $last_ms ms"
  # Each container's shim: the shim whose working directory is its bundle (as
  # bbx_shim_pid_of, with the environment's processes listed once).
  local pid bundle
  shim_of=()
  for pid in $(bbx_shim_pids); do
    bundle=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
    shim_of[${bundle##*/}]=$pid
  done
  local line rows=()
  for id in "${started[@]}"; do
    line=$(container_kib "$id")
    rows+=("$line")
  done
  printf '%s\n' "${rows[@]}" | awk -v n="$n" -v used=$((before - after)) '
    $1 != "?" { k++; s += $1; r += $2; v += $3; f += $4; o += $5
                t = $1 + $3 + $4; tot += t; if (t > mx) mx = t; if (mn == "" || t < mn) mn = t }
    END {
      if (!k) { print "   no shim found"; exit }
      printf "   per container PSS (MiB, mean of %d): shim %.1f  VMM %.1f  virtiofsd %.1f  = %.1f (min %.1f, max %.1f)\n",
             k, s / k / 1024, v / k / 1024, f / k / 1024, tot / k / 1024, mn / 1024, mx / 1024
      printf "   shim RSS %.1f MiB; container processes below the shim (not counted): PSS %.1f MiB\n",
             r / k / 1024, o / k / 1024
      printf "   host MemAvailable drop: %.0f MiB in total, %.1f MiB per container\n",
             used / 1024, used / 1024 / n
    }'
  # The guest's own view (beaconbox: the VM's kernel; runc: the host's).
  if [ "$runtime" = "$BBX_BEACONBOX_RUNTIME" ]; then
    bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id meminfo "${started[0]}" \
      /bin/cat /proc/meminfo < /dev/null 2>/dev/null |
      awk '/^(MemTotal|MemFree|MemAvailable|Cached|Shmem|Slab|KernelStack|PageTables):/ {
             printf "%s %.0f MiB  ", $1, $2 / 1024 } END { if (NR) print "" }' |
      sed 's/^/   guest of the 1st container: /' || true
  fi
  local t0 t1
  t0=$(date +%s%N)
  bbx_on_stop
  t1=$(date +%s%N)
  echo "   removed in $(((t1 - t0) / 1000000)) ms"
}

echo "== containerd $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}'), image $BBX_IMAGE," \
     "$(nproc) CPUs, MemTotal $(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024)) MiB"
[ -n "$qemu_extra" ] && echo "== [plugins.vmm.qemu.config] $(tr '\n' ' ' <<<"$qemu_extra")"
[ -n "$kernel_args" ] && echo "== vm.kernel_cmdline = \"$kernel_args\""
for runtime in "${BBX_RUNTIMES[@]}"; do
  measure "$runtime"
done
if [ "$which_runtimes" != runc ]; then
  echo "== beaconbox's accelerator: $(bbx_vm_accelerators | tail -1)"
fi
