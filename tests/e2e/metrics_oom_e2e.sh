#!/usr/bin/env bash
# Task metrics, OOM and process listing through real containerd and ctr (issue 11,
# items 3, 6 and 8): runc's shim first (the expected answer, same run), then beaconbox's.
#   1. `ctr task metrics` prints the cgroup v2 rows (pids.current >= 1, memory.usage
#      > 0, cpu.usage_usec > 0); --format json gives a working set (usage minus
#      inactive_file, as containerd's CRI computes it) > 0 and the IO entries. (runc's
#      shim on a cgroup v1 host answers the v1 type: its v1 rows are checked instead.)
#   2. `ctr task ps` with an exec running lists it with its exec id
#      (ProcessDetails{ExecID:e1}; ctr 1.7 prints exec_id:"e1"); beaconbox lists only host pids (the VMM's).
#   3. A container with --memory-limit 64 MiB allocating 200 MB is OOM-killed:
#      `ctr events` shows /tasks/oom with its id, and it exits 137.
# Prints the figures measured, one "measured:" line each.
#   metrics_oom_e2e.sh OUTPUT_DIR [system|1.7]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: metrics_oom_e2e.sh OUTPUT_DIR [system|1.7]}
export BBX_CONTAINERD=${2:-system}
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

bbx_require_beaconbox "$BBX_OUTPUT_DIR"
bbx_select_containerd_or_skip

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# Bounds that catch a hang on a loaded machine (guest under TCG), never a measure.
ctl_timeout=180

bbx_env_start
bbx_import_demo_image

ctr_t() { timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" "$@"; }

wait_running() {  # wait_running ID: until ctr lists the task as RUNNING
  local i
  for i in $(seq 900); do
    bbx_ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}' | grep -qx RUNNING && return 0
    sleep 0.2
  done
  return 1
}

# The value of row METRIC in `ctr task metrics` table output.
row() { awk -v m="$1" '$1 == m {print $2}' <<<"$2"; }
# A number from ctr's JSON output: the first "KEY": N.
json_number() { grep -o "\"$1\": *[0-9]*" <<<"$2" | head -1 | grep -o '[0-9]*$' || true; }

events_log="$BBX_DIR/events.log"
bbx_ctr events > "$events_log" 2>&1 < /dev/null &
events_pid=$!
stop_events() { kill "$events_pid" 2>/dev/null || true; wait "$events_pid" 2>/dev/null || true; }
trap 'stop_events; bbx_env_stop' EXIT

for runtime in io.containerd.runc.v2 io.containerd.beaconbox.v1; do
  name=${runtime#io.containerd.}
  name=${name%%.*}
  id="m-$name"

  if ! bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "$id" \
         /bin/sh -c 'x=$(head -c 4000000 /dev/zero | tr "\0" a); sleep 600' </dev/null >/dev/null ||
     ! wait_running "$id"; then
    fail "$name: $id never ran"
    bbx_remove "$id"
    continue
  fi
  task_pid=$(bbx_ctr task ls 2>/dev/null | awk -v id="$id" '$1 == id {print $2}')
  sleep 3  # lets the shell's 4 MB allocation happen

  # 1. Metrics, as a table and as JSON.
  cgroup_v1=false
  if table=$(ctr_t task metrics "$id" 2>&1); then
    pids_current=$(row pids.current "$table")
    memory_usage=$(row memory.usage "$table")
    cpu_usage=$(row cpu.usage_usec "$table")
    if [ "$name" = runc ] && [ -n "$(row memory.usage_in_bytes "$table")" ]; then
      # runc's shim on a cgroup v1 host answers the v1 type: its rows, same meaning.
      cgroup_v1=true
      memory_usage=$(row memory.usage_in_bytes "$table")
      cpu_usage=$(row cpuacct.usage "$table")
      echo "measured: runc: this host is on cgroup v1: runc answers io.containerd.cgroups.v1.Metrics"
    fi
    echo "measured: $name: pids.current=$pids_current memory.usage=$memory_usage" \
         "memory.usage_limit=$(row memory.usage_limit "$table") cpu.usage_usec=$cpu_usage" \
         "pids.limit=$(row pids.limit "$table")"
    if [ "${pids_current:-0}" -ge 1 ] && [ "${memory_usage:-0}" -gt 0 ] && [ "${cpu_usage:-0}" -gt 0 ]; then
      pass "$name: ctr task metrics: pids.current $pids_current, memory.usage $memory_usage, cpu.usage_usec $cpu_usage"
    else
      fail "$name: ctr task metrics rows implausible: $(tr '\n' ' ' <<<"$table")"
    fi
  else
    fail "$name: ctr task metrics: $(tr '\n' ' ' <<<"$table")"
  fi
  if [ "$cgroup_v1" = true ]; then
    : # v1's JSON has no flat usage/inactive_file: the table check above covers runc here
  elif json=$(ctr_t task metrics --format json "$id" 2>&1); then
    usage=$(json_number usage "$json")
    inactive_file=$(json_number inactive_file "$json")
    anon=$(json_number anon "$json")
    working_set=$(( ${usage:-0} - ${inactive_file:-0} ))
    io_entries=$(grep -c '"major"' <<<"$json" || true)
    echo "measured: $name: memory usage=$usage inactive_file=${inactive_file:-0} working_set=$working_set anon=${anon:-0} io_devices=$io_entries"
    if [ "${usage:-0}" -gt 0 ] && [ "$working_set" -gt 0 ] && [ "${anon:-0}" -gt 0 ]; then
      pass "$name: metrics JSON: working set $working_set bytes, anon ${anon} bytes"
    else
      fail "$name: metrics JSON without a working set: $(tr '\n' ' ' <<<"$json" | cut -c1-400)"
    fi
  else
    fail "$name: ctr task metrics --format json: $(tr '\n' ' ' <<<"$json")"
  fi

  # 2. ctr task ps with an exec running.
  if out=$(ctr_t task exec -d --fifo-dir "$BBX_DIR/fifo" --exec-id e1 "$id" /bin/sleep 600 </dev/null 2>&1); then
    sleep 1
    ps_out=$(ctr_t task ps "$id" 2>&1) || true
    echo "measured: $name: ctr task ps: $(tr '\n' '|' <<<"$ps_out")"
    if grep -qE 'ExecID:e1\b|exec_id:"e1"' <<<"$ps_out"; then
      pass "$name: ctr task ps lists exec e1 by its exec id"
    else
      fail "$name: ctr task ps does not show exec e1: $(tr '\n' '|' <<<"$ps_out")"
    fi
    if [ "$name" = beaconbox ]; then
      # Every pid containerd gets is a host pid: the VMM's (the task's pid).
      others_pids=$(awk 'NR > 1 {print $1}' <<<"$ps_out" | grep -vx "$task_pid" || true)
      rows=$(awk 'NR > 1' <<<"$ps_out" | wc -l)
      if [ -z "$others_pids" ] && [ "$rows" -eq 2 ] && [ "$(exe_of "$task_pid")" != "" ]; then
        pass "$name: ctr task ps lists the init and e1, each with the VMM's host pid $task_pid ($(exe_of "$task_pid"))"
      else
        fail "$name: ctr task ps rows are not the init and e1 with the VMM pid $task_pid: $(tr '\n' '|' <<<"$ps_out")"
      fi
    fi
    ctr_t task kill -s KILL --exec-id e1 "$id" >/dev/null 2>&1 || true
  else
    fail "$name: ctr task exec -d e1: $out"
  fi
  bbx_remove "$id"

  # 3. OOM: 64 MiB limit, 200 MB allocated by the container's shell.
  id="oom-$name"
  status=0
  ctr_t run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" --memory-limit 67108864 \
    "$BBX_IMAGE" "$id" /bin/sh -c 'x=$(head -c 200000000 /dev/zero | tr "\0" a); echo survived' \
    </dev/null >"$BBX_DIR/oom-$name.out" 2>&1 || status=$?
  sleep 2  # events reach ctr events asynchronously
  oom_line=$(grep -n "/tasks/oom" "$events_log" | grep "\"$id\"" | head -1 || true)
  exit_line=$(grep -n "/tasks/exit" "$events_log" | grep "\"$id\"" | head -1 || true)
  echo "measured: $name: OOM container exit status $status; events: oom line ${oom_line%%:*}, exit line ${exit_line%%:*}"
  if [ "$status" -eq 137 ]; then
    pass "$name: the OOM-killed container exits 137"
  else
    fail "$name: the OOM-killed container exited $status: $(tr '\n' ' ' <"$BBX_DIR/oom-$name.out" | cut -c1-300)"
  fi
  if [ -n "$oom_line" ]; then
    pass "$name: ctr events shows /tasks/oom for $id"
  else
    fail "$name: no /tasks/oom for $id in ctr events: $(grep "$id" "$events_log" | cut -d' ' -f3-4 | tr '\n' ' ')"
  fi
  if [ -n "$oom_line" ] && [ -n "$exit_line" ] && [ "${oom_line%%:*}" -lt "${exit_line%%:*}" ]; then
    pass "$name: /tasks/oom comes before /tasks/exit"
  else
    fail "$name: /tasks/oom (line ${oom_line%%:*}) not before /tasks/exit (line ${exit_line%%:*})"
  fi
  bbx_remove "$id"
done

stop_events
if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -40 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
echo "metrics/OOM/ps end-to-end: all checks passed"
