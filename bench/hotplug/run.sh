#!/usr/bin/env bash
# Time of a vCPU hot-add and of a memory hot-add into a running beaconbox VM, through
# a private containerd (scripts/lib/containerd-env.sh) and containerd's Tasks.Update
# (tests/e2e/task_client, its update command: the ctr of containerd 1.6/1.7 has no `task update`).
# Per VM (booted with 1 vCPU / 512 MiB by annotation, a `sleep` container):
#   - a baseline update that grows nothing (pids limit): the fixed cost of an update;
#   - a CPU quota of 2 CPUs: one vCPU hot-added, onlined, cpu.max set;
#   - memory limits growing the VM by one 128 MiB block each: a DIMM hot-added,
#     onlined by the guest kernel (memhp_default_state=online), memory.max set.
# Each line: the wall time of the Update call (containerd -> shim -> QMP -> guest
# online -> crun update), and the shim's split: the QMP hot-add, and the guest's
# online + cgroup update. Under TCG (no KVM here) the figures are TCG's.
#   bench/hotplug/run.sh [-n VMS] [-o OUTPUT_DIR] [-c system|1.7]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
vms=2
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
containerd_choice=system
while getopts 'n:o:c:' opt; do
  case $opt in
    n) vms=$OPTARG ;;
    o) output=$OPTARG ;;
    c) containerd_choice=$OPTARG ;;
    *) echo "usage: run.sh [-n VMS] [-o OUTPUT_DIR] [-c system|1.7]" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=$containerd_choice
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$vms"
tool=$("$repo/tests/e2e/task_client/build.sh")
MiB=1048576

bbx_bench_start beaconbox

timed_update() {  # FLAGS... ID -> wall ms of the Update call
  local start end
  start=$(date +%s%N)
  "$tool" "$BBX_SOCK" "$BBX_NS" update "$@" >&2
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}
# The shim's split for the last update: "<qmp ms> <guest ms>" (qmp "-" when none).
split_of() {
  local log="$BBX_DIR/containerd.log" qmp guest
  qmp=$(grep -o "hot-added in [0-9]* ms" "$log" | tail -n 1 | awk '{print $3}')
  guest=$(grep -o "guest online and cgroup update [0-9]* ms" "$log" | tail -n 1 | awk '{print $6}')
  echo "${qmp:--} ${guest:--}"
}
results="$BBX_DIR/results"
: > "$results"
record() {  # KIND WALL_MS QMP_MS GUEST_MS
  echo "$*" >> "$results"
  printf '  %-10s update %6d ms   QMP hot-add %6s ms   guest online + cgroup %6s ms\n' "$@"
}

for vm in $(seq "$vms"); do
  id="hotplug-$vm"
  bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_BEACONBOX_RUNTIME" \
    --annotation io.beaconbox.vm.vcpus=1 --annotation io.beaconbox.vm.memory_mib=512 \
    "$BBX_IMAGE" "$id" /bin/sleep 3600 < /dev/null > /dev/null
  echo "VM $vm:"
  ms=$(timed_update --pids-limit 100 "$id")
  read -r _ guest <<<"$(split_of)"
  record baseline "$ms" - "$guest"
  ms=$(timed_update --cpu-quota 200000 --cpu-period 100000 "$id")
  read -r qmp guest <<<"$(split_of)"
  record vcpu "$ms" "$qmp" "$guest"
  # 512 MiB VM, 128 MiB guest overhead: a limit of (512 + 128 k - 128) MiB needs k blocks.
  for k in 1 2 3 4; do
    ms=$(timed_update --memory-limit $(((512 + 128 * k - 128) * MiB)) "$id")
    read -r qmp guest <<<"$(split_of)"
    record memory "$ms" "$qmp" "$guest"
  done
  bbx_remove "$id"
done

echo "summary (median over all VMs; TCG guest on a shared 2-core host):"
for kind in baseline vcpu memory; do
  awk -v k="$kind" '$1 == k' "$results" | awk '{print $2, $3, $4}' | sort -n | awk -v k="$kind" '
    { w[NR] = $1; q[NR] = $2; g[NR] = $3 } END {
      if (NR == 0) exit
      m = int((NR + 1) / 2)
      printf "  %-10s n=%-3d update median %6d ms (QMP %s ms, guest %s ms at that run)\n", k, NR, w[m], q[m], g[m] }'
done
