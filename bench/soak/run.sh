#!/usr/bin/env bash
# Soak: N create/start/exec/kill/delete cycles through one private containerd
# (scripts/lib/containerd-env.sh, network mode bridge in its own netns), with
# SIGKILL of the shim in every K-th cycle and of the VMM (QEMU) in the cycle after
# it. Reports what leaked -- processes, TAPs, leases, mounts, VM dirs, sockets,
# containerd's fds -- and the memory of containerd and of the shims, next to the same
# cycles with runc's shim (no VMM to kill there) in the same run.
#   bench/soak/run.sh [-n CYCLES] [-k EVERY] [-r RUNC_CYCLES] [-o OUTPUT_DIR] [-c system|1.7|BIN_DIR]
# Not part of make test: 1000 cycles under TCG take about two hours.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cycles=100
kill_every=10
runc_cycles=
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
containerd_choice=system
while getopts 'n:k:r:o:c:' opt; do
  case $opt in
    n) cycles=$OPTARG ;;
    k) kill_every=$OPTARG ;;
    r) runc_cycles=$OPTARG ;;
    o) output=$OPTARG ;;
    c) containerd_choice=$OPTARG ;;
    *) echo "usage: run.sh [-n CYCLES] [-k EVERY] [-r RUNC_CYCLES] [-o OUTPUT_DIR] [-c system|1.7|BIN_DIR]" >&2
       exit 2 ;;
  esac
done
runc_cycles=${runc_cycles:-$cycles}
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=$containerd_choice BBX_NETWORK_MODE=bridge
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$cycles"
bbx_bench_number k "$kill_every"
bbx_bench_number r "$runc_cycles" 0

bbx_bench_start beaconbox plugins/net-bridge.so
private_run="/proc/$BBX_CONTAINERD_PID/root/run"

ctl() { nsenter --net="/run/netns/$BBX_NETNS" "$output/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" "$@"; }
exe_of() { basename "$(readlink "/proc/$1/exe" 2>/dev/null)" 2>/dev/null || true; }
others() { { bbx_env_pids || true; } | { grep -vx "$BBX_CONTAINERD_PID" || true; }; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
count() { grep -c . || true; }

# One line of what the environment holds now (the leak figures are differences).
snapshot() {
  local procs taps leases mounts vm_dirs sockets fds rss
  procs=$(others | count)
  taps=$(ip netns exec "$BBX_NETNS" ip -br link | grep -c '^beacon-' || true)
  leases=$(ctl net leases 2>/dev/null | tail -n +2 | count)
  mounts=$(bbx_env_mounts | count)
  vm_dirs=$(find "$BBX_DIR/beacon/run/vm" -mindepth 1 -maxdepth 1 2>/dev/null | count)
  sockets=$(find "$private_run" "$BBX_DIR/beacon" -type s 2>/dev/null | count)
  fds=$(find "/proc/$BBX_CONTAINERD_PID/fd" -mindepth 1 2>/dev/null | count)
  rss=$(rss_kib "$BBX_CONTAINERD_PID")
  echo "$procs $taps $leases $mounts $vm_dirs $sockets $fds $rss"
}

# Waits until the task of ID is gone from containerd (the shim's delete ran).
delete_task() {
  local id=$1 i
  for i in $(seq 100); do
    bbx_ctr task delete "$id" >/dev/null 2>&1 || true
    bbx_ctr task ls -q 2>/dev/null | grep -qx "$id" || break
    sleep 0.2
  done
  bbx_ctr container rm "$id" >/dev/null 2>&1 || true
  ! bbx_ctr containers ls -q | grep -qx "$id"
}

failures=0
shim_rss=()
cycle_ms=()
# One cycle: run -d, exec, then by the cycle's number a plain kill, SIGKILL of the
# shim, or SIGKILL of the VMM; delete. Prints nothing; counts failures.
cycle() {
  local runtime=$1 i=$2 id="soak-$1-$2" start shim vmm pid status
  start=$(date +%s%N)
  if ! BBX_RUNTIME=$runtime bbx_run_detached "$id" /bin/sleep 600; then
    echo "cycle $i ($runtime): ctr run failed" >&2
    failures=$((failures + 1))
    delete_task "$id" || true
    return
  fi
  if ! status=$(bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "e$i" "$id" /bin/sh -c 'exit 7' </dev/null >/dev/null 2>&1; echo $?) ||
     [ "$status" != 7 ]; then
    echo "cycle $i ($runtime): exec exit status '$status', wanted 7" >&2
    failures=$((failures + 1))
  fi
  shim=$(bbx_shim_pid_of "$id" || true)
  [ -n "$shim" ] && shim_rss+=("$(rss_kib "$shim")")
  if [ $((i % kill_every)) -eq 0 ] && [ -n "$shim" ]; then
    kill -KILL "$shim"
  elif [ $((i % kill_every)) -eq 1 ] && [ "$runtime" != io.containerd.runc.v2 ] && [ -n "$shim" ]; then
    vmm=
    for pid in $(others); do
      case $(exe_of "$pid") in qemu-system-*) [ "$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)" = "$shim" ] && vmm=$pid ;; esac
    done
    if [ -n "$vmm" ]; then kill -KILL "$vmm"; else echo "cycle $i: no VMM found under shim $shim" >&2; fi
  else
    bbx_ctr task kill -s KILL "$id" >/dev/null 2>&1 || true
  fi
  if ! delete_task "$id"; then
    echo "cycle $i ($runtime): container $id not deleted" >&2
    failures=$((failures + 1))
  fi
  cycle_ms+=($((($(date +%s%N) - start) / 1000000)))
}

summary() {  # LABEL, numbers on stdin
  sort -n | awk -v label="$1" '{ v[NR] = $1 } END {
    if (!NR) { printf "%-40s -\n", label; exit }
    printf "%-40s n=%-4d median %7d   max %7d   min %7d\n",
           label, NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[NR], v[1] }'
}

report_leaks() {  # LABEL BEFORE AFTER
  local names=(processes TAPs leases mounts vm-dirs sockets containerd-fds containerd-rss-KiB)
  local -a before after
  read -ra before <<<"$2"
  read -ra after <<<"$3"
  local k line="$1:"
  for k in "${!names[@]}"; do line+=" ${names[$k]} ${before[$k]}->${after[$k]}"; done
  echo "$line"
}

settle() { sleep 2; }  # containerd reaps the shims it was told about

echo "== containerd $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}'), image $BBX_IMAGE"
echo "== $cycles beaconbox cycles, $runc_cycles runc cycles; every cycle numbered a multiple of ${kill_every}: SIGKILL of the shim, the next: SIGKILL of the VMM"
for runtime in io.containerd.runc.v2 "$BBX_BEACONBOX_RUNTIME"; do
  n=$cycles
  [ "$runtime" = io.containerd.runc.v2 ] && n=$runc_cycles
  [ "$n" -gt 0 ] || continue
  shim_rss=()
  cycle_ms=()
  failures_before=$failures
  before=$(snapshot)
  started=$(date +%s)
  for i in $(seq "$n"); do
    cycle "$runtime" "$i"
    if [ $((i % 50)) -eq 0 ]; then
      echo "   $runtime: $i cycles, $((failures - failures_before)) failures, $(($(date +%s) - started)) s; now: $(snapshot)" >&2
    fi
  done
  settle
  after=$(snapshot)
  echo "-- $runtime: $n cycles in $(($(date +%s) - started)) s, $((failures - failures_before)) failed"
  report_leaks "   held before -> after" "$before" "$after"
  printf '%s\n' "${cycle_ms[@]}" | summary "   cycle wall time (ms)"
  printf '%s\n' "${shim_rss[@]}" | summary "   shim VmRSS while running (KiB)"
done
left=$(others)
[ -z "$left" ] || echo "processes left at the end: $(for p in $left; do echo -n "$p($(exe_of "$p")) "; done)"
exit $((failures > 0))
