#!/usr/bin/env bash
# A hand-run reproduction loop for VMs dying after a memory hot-add (issue 16 area;
# the flake of e2e_beaconbox_update): boots a VM the way tests/e2e/update_e2e.sh
# sizes its `grow` container (annotations vcpus=1, memory_mib=640), hot-adds memory
# the same way (Tasks.Update of the memory limit to 1 GiB: one 512 MiB DIMM, VM
# 1152 MiB), then a vCPU (cpu quota 2 CPUs), watching the task for WATCH seconds
# after each. A VM that dies is reported with the plugin's evidence (QEMU's exit
# status or signal, its log and the console's tail: "ended without being asked to").
# Not a test (not in make test): run it by hand, under the host's load or -l's.
#   bench/hotadd-loop/run.sh [-n RUNS] [-o OUTPUT_DIR] [-c system|1.7] [-l BUSY_LOOPS]
#                            [-f true|false] [-t TB_MIB] [-w WATCH_SECONDS] [-k CMDLINE]
#   -f: vmm-qemu's free_page_reporting (default: the plugin's default)
#   -t: vmm-qemu's tcg_tb_size_mib (4: two TCG regions for max_vcpus 2, the window in
#       which a hot-added vCPU finds no region is open about half the time)
#   -k: extra guest kernel command line ([vm] kernel_cmdline)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=5 output=${BEACONBOX_OUTPUT_DIR:-$repo/_output} containerd_choice=system
busy=0 fpr="" tb="" watch=15 kcmdline=""
while getopts 'n:o:c:l:f:t:w:k:' opt; do
  case $opt in
    n) runs=$OPTARG ;;
    o) output=$OPTARG ;;
    c) containerd_choice=$OPTARG ;;
    l) busy=$OPTARG ;;
    f) fpr=$OPTARG ;;
    t) tb=$OPTARG ;;
    w) watch=$OPTARG ;;
    k) kcmdline=$OPTARG ;;
    *) echo "usage: run.sh [-n RUNS] [-o OUTPUT_DIR] [-c system|1.7] [-l BUSY_LOOPS] [-f true|false] [-t TB_MIB] [-w SECONDS] [-k CMDLINE]" >&2
       exit 2 ;;
  esac
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -n wants a positive count" >&2; exit 2; }
[[ $busy =~ ^[0-9]+$ ]] || { echo "run.sh: -l wants a count of busy loops" >&2; exit 2; }
[[ $watch =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -w wants seconds" >&2; exit 2; }
case $fpr in ""|true|false) ;; *) echo "run.sh: -f wants true or false" >&2; exit 2 ;; esac
[[ $tb =~ ^[0-9]*$ ]] || { echo "run.sh: -t wants MiB" >&2; exit 2; }
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=$containerd_choice
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_require_beaconbox "$output"
tool=$("$repo/tests/e2e/task_client/build.sh")
MiB=1048576

busy_pids=()
bbx_on_stop() {  # run by bbx_env_stop; ends only the busy loops this script started
  local pid
  for pid in "${busy_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
bbx_env_start
bbx_import_demo_image
if [ -n "$fpr$tb$kcmdline" ]; then
  # Read by each shim at its start: written before the first container.
  config=$(cat "$BBX_BEACONBOX_CONFIG")
  if [ -n "$kcmdline" ]; then config=${config/\[vm\]/[vm]$'\n'kernel_cmdline = \"$kcmdline\"}; fi
  printf '%s\n' "$config" > "$BBX_BEACONBOX_CONFIG"
  if [ -n "$fpr$tb" ]; then
    {
      printf '\n[plugins.vmm.qemu.config]\n'
      [ -z "$fpr" ] || printf 'free_page_reporting = %s\n' "$fpr"
      [ -z "$tb" ] || printf 'tcg_tb_size_mib = %s\n' "$tb"
    } >> "$BBX_BEACONBOX_CONFIG"
  fi
fi
for _ in $(seq "$busy"); do
  nice -n 19 sh -c 'while :; do :; done' &
  busy_pids+=("$!")
done

log=$BBX_DIR/containerd.log
state_of() { bbx_ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }
# alive ID SECONDS: the task stays RUNNING for SECONDS.
alive() {
  local i
  for i in $(seq "$(($2 * 2))"); do
    [ "$(state_of "$1")" = RUNNING ] || return 1
    sleep 0.5
  done
}
deaths=0 done_runs=0
for run in $(seq "$runs"); do
  id=hot$run
  start=$(date +%s)
  if ! bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime io.containerd.beaconbox.v1 \
         --annotation io.beaconbox.vm.vcpus=1 --annotation io.beaconbox.vm.memory_mib=640 \
         "$BBX_IMAGE" "$id" /bin/sh -c 'while :; do cat /proc/meminfo > /dev/null; sleep 1; done' \
         < /dev/null > /dev/null 2> "$BBX_DIR/$id.err"; then
    echo "run $run: ctr run failed: $(head -c 300 "$BBX_DIR/$id.err")"
    bbx_remove "$id"
    continue
  fi
  what=""
  if ! out=$(timeout 300 "$tool" "$BBX_SOCK" "$BBX_NS" update --memory-limit $((1024 * MiB)) "$id" 2>&1); then
    what="memory update failed: $out"
  elif ! alive "$id" "$watch"; then
    what="died within ${watch} s of the memory hot-add"
  elif ! out=$(timeout 300 "$tool" "$BBX_SOCK" "$BBX_NS" update --cpu-quota 200000 --cpu-period 100000 "$id" 2>&1); then
    what="cpu update failed: $out"
  elif ! alive "$id" "$watch"; then
    what="died within ${watch} s of the vCPU hot-add"
  fi
  done_runs=$((done_runs + 1))
  if [ -n "$what" ]; then
    deaths=$((deaths + 1))
    echo "run $run: DEATH: $what (state '$(state_of "$id")', $(($(date +%s) - start)) s after ctr run)"
    grep -a "hot-added in\|ended without being asked\|$id.*connection closed" "$log" | tail -n 6 | cut -c1-9000 | sed 's/^/    /'
    # `ctr run -d`: the stopped task keeps its VM directory until it is deleted.
    while IFS= read -r f; do
      echo "    $f: $(tail -c 2000 "$f" | tr '\n' '|')"
    done < <(find "$BBX_DIR/beacon/run" -name qemu.log 2>/dev/null)
    console=$(find "$BBX_DIR/beacon/log" -name "vm-*$id*.log" -type f 2>/dev/null | head -1)
    echo "    console ${console:-not found}: $([ -z "$console" ] || tail -c 1500 "$console" | tr '\n' '|')"
  else
    echo "run $run: ok ($(grep -ao 'memory hot-added in [0-9]* ms' "$log" | tail -n 1), $(($(date +%s) - start)) s)"
  fi
  bbx_remove "$id"
done
echo "SUMMARY: $deaths death(s) in $done_runs run(s) (busy loops $busy, free_page_reporting ${fpr:-default}, tcg_tb_size_mib ${tb:-default}, kernel_cmdline '${kcmdline}', containerd $containerd_choice)"
