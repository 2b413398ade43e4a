#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here.
# shellcheck disable=SC2015
# VM sizing and Task.Update with VM hotplug (issue 11, items 4 and 5), through a
# private real containerd and ctr with QEMU guests. runc's shim first: its cgroup
# values after the same updates are the expected answer. Then beaconbox:
#   1. `ctr run --memory-limit 768 MiB --cpus 1.5`: the VM has 2 vCPUs (nproc) and
#      768 + 128 MiB (MemTotal), the container's memory.max is the limit;
#   2. annotations io.beaconbox.vm.vcpus=1 / memory_mib=640 size the VM explicitly;
#   3. a limit or annotation beyond the maxima is refused at create with one line
#      naming the config key, and nothing is left;
#   4. Tasks.Update (task_client update: neither 1.6's nor 1.7's ctr has `task update`)
#      of the memory limit past the VM's memory hot-adds memory (MemTotal grows) and
#      sets memory.max; a CPU quota of 2 CPUs hot-adds a vCPU (nproc grows) and sets
#      cpu.max; the pids limit sets pids.max; a lower limit lowers memory.max only;
#      an update beyond the maxima is refused with one line and changes nothing.
# The containers print their nproc, MemTotal and cgroup files (a read-only cgroup
# mount) every second on stdout (read through `ctr run`): exec output is another part
# of issue 11. runc's values are read from the host's cgroup (v1 or v2).
#   update_e2e.sh OUTPUT_DIR [system|1.7]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: update_e2e.sh OUTPUT_DIR [system|1.7]}
export BBX_CONTAINERD=${2:-system}
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_require_beaconbox "$BBX_OUTPUT_DIR"
bbx_select_containerd_or_skip
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"
task_client=$("$here/task_client/build.sh") || { echo "FAIL: task_client did not build" >&2; exit 1; }
MiB=1048576

bbx_env_start
bbx_import_demo_image

# What each container prints every second: one line of key=value.
# shellcheck disable=SC2016
probe='while true; do
  p=$(cut -d: -f3 /proc/self/cgroup | head -1); d=/sys/fs/cgroup$p; [ -r "$d/memory.max" ] || d=/sys/fs/cgroup
  echo "nproc=$(nproc) memtotal_kb=$(awk "/MemTotal/ {print \$2}" /proc/meminfo) memory.max=$(cat $d/memory.max) cpu.max=$(cat $d/cpu.max | tr " " _) pids.max=$(cat $d/pids.max)"
  sleep 1; done'

start_probe() {  # start_probe RUNTIME ID CTR_RUN_FLAGS...: runs the probe, stdout to $BBX_DIR/ID.out
  local runtime=$1 id=$2
  shift 2
  # ctr's default spec mounts no cgroup filesystem: the probe's own, read-only.
  bbx_ctr run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$@" \
    --mount type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:noexec:nodev "$BBX_IMAGE" "$id" \
    /bin/sh -c "$probe" < /dev/null > "$BBX_DIR/$id.out" 2> "$BBX_DIR/$id.err" &
  probe_pids+=("$!")
  probe_pid_of[$id]=$!
}
probe_pids=()
declare -A probe_pid_of=() dead=()
latest() { tail -n 1 "$BBX_DIR/$1.out" 2>/dev/null; }
value() { latest "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
# probe_dead ID: true once the probe's task ended (its VM died: the shim reports the
# exit, `ctr run --rm` deletes the task and returns; or the task is listed as STOPPED).
# Said once, with the ends of the shim's log (containerd's) and of the VM's console.
probe_dead() {
  [ -n "${dead[$1]:-}" ] && return 0
  local pid=${probe_pid_of[$1]:-} status
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    status=$(bbx_ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}')
    [ "$status" = STOPPED ] || return 1
  fi
  dead[$1]=1
  fail "$1: the task is no longer running (ctr run: $(tr '\n' ' ' < "$BBX_DIR/$1.err" | cut -c1-300)); not waiting for it"
  echo "--- the end of the shim's log (containerd.log) ---" >&2
  tail -c 6000 "$BBX_DIR/containerd.log" >&2 || true
  local console
  console=$(find "$BBX_DIR/beacon/log" -name "vm-*$1*.log" -type f 2>/dev/null | head -1)
  echo "--- the end of the VM's console (${console:-not found}) ---" >&2
  [ -z "$console" ] || tail -c 4000 "$console" >&2 || true
  echo "---" >&2
  return 0
}
# wait_value ID KEY WANT: until the probe's KEY is WANT (5 minutes at most, TCG), or
# at once when the task ended.
wait_value() {
  local _
  for _ in $(seq 600); do
    [ "$(value "$1" "$2")" = "$3" ] && return 0
    probe_dead "$1" && return 1
    sleep 0.5
  done
  return 1
}
wait_line() {
  local _
  for _ in $(seq 600); do
    [ -n "$(latest "$1")" ] && return 0
    probe_dead "$1" && return 1
    sleep 0.5
  done
  return 1
}
update() {  # update ID FLAGS...: Tasks.Update through containerd; its output
  local id=$1
  shift
  timeout 300 "$task_client" "$BBX_SOCK" "$BBX_NS" update "$@" "$id" 2>&1
}
check_value() {  # check_value WHAT ID KEY WANT
  wait_value "$2" "$3" "$4" && pass "$1: $3 = $4" || fail "$1: $3 = '$(value "$2" "$3")', want '$4' (last: $(latest "$2"))"
}
memtotal_mib() { echo $(( $(value "$1" memtotal_kb) / 1024 )); }
# MemTotal of a VM with MIB MiB is below MIB (kernel, reserved) but not far.
check_memtotal() {  # check_memtotal WHAT ID MIB
  local got
  got=$(memtotal_mib "$2")
  [ "$got" -le "$3" ] && [ "$got" -gt $(($3 - 160)) ] && pass "$1: MemTotal $got MiB for a $3 MiB VM" ||
    fail "$1: MemTotal $got MiB, want in ($(($3 - 160)), $3] for a $3 MiB VM"
}
stop_probe() { bbx_remove "$1"; }

# --- runc: the expected cgroup values ---------------------------------------------
# Read on the host, from the container's cgroup (v1 or v2 as the host has it), in the
# probe's v2 spelling: memory.max, cpu.max as QUOTA_PERIOD, pids.max.
runc_value() {  # runc_value ID KEY
  local pid path v1=/sys/fs/cgroup
  pid=$(bbx_ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}')
  if grep -q '^0::' "/proc/$pid/cgroup" && [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    path=/sys/fs/cgroup$(awk -F: '$1 == 0 {print $3}' "/proc/$pid/cgroup")
    case $2 in cpu.max) tr ' ' _ < "$path/cpu.max" ;; *) cat "$path/$2" ;; esac
    return
  fi
  case $2 in
    memory.max) cat "$v1/memory$(awk -F: '$2 == "memory" {print $3}' "/proc/$pid/cgroup")/memory.limit_in_bytes" ;;
    cpu.max) path=$v1/cpu$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3}' "/proc/$pid/cgroup")
             echo "$(cat "$path/cpu.cfs_quota_us")_$(cat "$path/cpu.cfs_period_us")" ;;
    pids.max) cat "$v1/pids$(awk -F: '$2 == "pids" {print $3}' "/proc/$pid/cgroup")/pids.max" ;;
  esac
}
bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime io.containerd.runc.v2 --memory-limit $((256 * MiB)) \
  --cpus 0.5 "$BBX_IMAGE" runc1 /bin/sleep 600 < /dev/null > /dev/null
declare -A want
if [ -n "$(runc_value runc1 memory.max 2>/dev/null)" ]; then
  out=$(update runc1 --memory-limit $((1024 * MiB)) --cpu-quota 200000 --cpu-period 100000 --pids-limit 50) &&
    pass "runc: update accepted" || fail "runc: update: $out"
  for key in memory.max cpu.max pids.max; do want[$key]=$(runc_value runc1 "$key"); done
  out=$(update runc1 --memory-limit $((256 * MiB))) || fail "runc: shrink: $out"
  want[shrunk]=$(runc_value runc1 memory.max)
  pass "runc's answer: memory.max=${want[memory.max]} cpu.max=${want[cpu.max]} pids.max=${want[pids.max]}, after the shrink memory.max=${want[shrunk]}"
else
  fail "runc: no cgroup found for runc1"
fi
bbx_remove runc1
[ "${want[memory.max]:-}" = $((1024 * MiB)) ] && [ "${want[cpu.max]:-}" = 200000_100000 ] &&
  [ "${want[pids.max]:-}" = 50 ] && [ "${want[shrunk]:-}" = $((256 * MiB)) ] ||
  fail "runc's values are not the expected ones: ${want[*]:-none}"

# --- 3. out of range: one line, nothing left -----------------------------------------
baseline_vm_dirs=$(find "$BBX_DIR/beacon/run/vm" -mindepth 1 -maxdepth 1 2>/dev/null | sort || true)
refused() {  # refused WHAT KEY CTR_RUN_FLAGS...
  local what=$1 key=$2 out status
  shift 2
  set +e
  out=$(timeout 300 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" run --rm \
          --fifo-dir "$BBX_DIR/fifo" --runtime io.containerd.beaconbox.v1 "$@" "$BBX_IMAGE" big /bin/true \
          < /dev/null 2>&1)
  status=$?
  set -e
  local line
  line=$(grep -c . <<<"$out")
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && grep -q "$key" <<<"$out" && [ "$line" -eq 1 ] &&
    pass "$what refused in one line: $(cut -c1-220 <<<"$out")" ||
    fail "$what: status $status, $line lines, want one naming $key: $out"
  bbx_remove big
  local left=""
  for _ in $(seq 300); do left=$(others || true); [ -z "$left" ] && break; sleep 0.1; done
  [ -z "$left" ] && pass "$what: no process left" ||
    fail "$what: processes left: $(for p in $left; do echo -n "$p($(exe_of "$p")) "; done)"
  [ "$(find "$BBX_DIR/beacon/run/vm" -mindepth 1 -maxdepth 1 2>/dev/null | sort || true)" = "$baseline_vm_dirs" ] &&
    pass "$what: no VM directory left" || fail "$what: a VM directory is left"
  [ -z "$(bbx_env_mounts || true)" ] && pass "$what: no mount left" || fail "$what: mounts left: $(bbx_env_mounts)"
}
refused "a 4 GiB memory limit (maximum 2048 MiB)" vm.max_memory_mib --memory-limit $((4096 * MiB))
refused "--cpus 3 (maximum 2 vCPUs)" vm.max_vcpus --cpus 3
refused "annotation io.beaconbox.vm.vcpus=3" vm.max_vcpus --annotation io.beaconbox.vm.vcpus=3

# --- 1. the VM follows the container's limits ---------------------------------------
start_probe io.containerd.beaconbox.v1 sized --memory-limit $((768 * MiB)) --cpus 1.5
if wait_line sized; then
  check_value "--cpus 1.5" sized nproc 2
  check_value "--memory-limit 768 MiB" sized memory.max $((768 * MiB))
  check_memtotal "--memory-limit 768 MiB (+128 MiB overhead)" sized 896
  check_value "--cpus 1.5" sized cpu.max 150000_100000
else
  fail "sized: the probe printed nothing: $(cat "$BBX_DIR/sized.err")"
fi
stop_probe sized

# --- 2 and 4. annotations, then updates growing the VM ------------------------------
start_probe io.containerd.beaconbox.v1 grow --annotation io.beaconbox.vm.vcpus=1 \
  --annotation io.beaconbox.vm.memory_mib=640
if wait_line grow; then
  check_value "annotation vcpus=1" grow nproc 1
  check_memtotal "annotation memory_mib=640" grow 640
  before=$(memtotal_mib grow)

  # Beyond the maxima: one line, nothing changes.
  set +e
  out=$(update grow --memory-limit $((4096 * MiB)))
  status=$?
  set -e
  [ "$status" -ne 0 ] && grep -q vm.max_memory_mib <<<"$out" && [ "$(grep -c . <<<"$out")" -eq 1 ] &&
    pass "an update beyond vm.max_memory_mib is refused in one line: $(cut -c1-200 <<<"$out")" ||
    fail "update to 4 GiB: status $status: $out"

  # Memory past the VM's: 1024 + 128 MiB needs 512 MiB more (four 128 MiB blocks).
  out=$(update grow --memory-limit $((1024 * MiB))) && pass "update --memory-limit 1 GiB accepted" ||
    fail "update --memory-limit 1 GiB: $out"
  check_value "update --memory-limit 1 GiB" grow memory.max "${want[memory.max]:-$((1024 * MiB))}"
  # A probe line reads MemTotal before memory.max: wait for a line after the update.
  for _ in $(seq 120); do
    [ "$(memtotal_mib grow)" -ge $((before + 480)) ] || probe_dead grow && break
    sleep 0.5
  done
  after=$(memtotal_mib grow)
  [ "$after" -ge $((before + 480)) ] && pass "memory hot-added: MemTotal $before -> $after MiB" ||
    fail "MemTotal $before -> $after MiB, want +512 MiB"
  check_memtotal "after the memory hot-add" grow 1152

  # Two CPUs of quota: a vCPU is hot-added.
  out=$(update grow --cpu-quota 200000 --cpu-period 100000 --pids-limit 50) &&
    pass "update --cpu-quota 200000 --pids-limit 50 accepted" || fail "update --cpu-quota: $out"
  check_value "vCPU hot-added" grow nproc 2
  check_value "update --cpu-quota 200000 (runc's value)" grow cpu.max "${want[cpu.max]:-200000_100000}"
  check_value "update --pids-limit 50 (runc's value)" grow pids.max "${want[pids.max]:-50}"

  # Shrinking lowers the cgroup limit only.
  out=$(update grow --memory-limit $((256 * MiB))) && pass "update --memory-limit 256 MiB accepted" ||
    fail "shrink: $out"
  check_value "shrink (runc's value)" grow memory.max "${want[shrunk]:-$((256 * MiB))}"
  check_memtotal "the VM keeps its memory after a shrink" grow 1152
else
  fail "grow: the probe printed nothing: $(cat "$BBX_DIR/grow.err")"
fi
grep -o 'VM [^ ]*: [a-zA-Z]* hot-added in [0-9]* ms[^"]*' "$BBX_DIR/containerd.log" | sed 's/^/  /' || true
stop_probe grow

for pid in "${probe_pids[@]}"; do wait "$pid" || true; done  # the `ctr run` of each probe
if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -60 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
echo "update end-to-end: all checks passed"
