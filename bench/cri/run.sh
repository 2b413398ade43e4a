#!/usr/bin/env bash
# Pods through containerd's CRI plugin (issue 17), driven by bbx-cri (tests/e2e/cri_client)
# under one private containerd (scripts/lib/containerd-env.sh, bbx_cri_prepare): the
# runc handler first (the baseline), then beaconbox, in the same run. Per handler,
# -n pods one after the other, each measured and removed before the next:
#   - pod start: RunPodSandbox + CreateContainer + StartContainer of one container
#     (wall time of the bbx-cri calls; RunPodSandbox also on its own);
#   - the second container of the same pod: CreateContainer + StartContainer;
#   - host memory of the pod: the PSS sum (/proc/<pid>/smaps_rollup) of this
#     environment's processes but containerd (shims, pause, containers; for beaconbox
#     also the VMs and virtiofsd) with one container, then with three, after -s seconds
#     of settling each.
# Prints each pod's figures, then min / median / max per handler. A handler whose step
# fails is reported with bbx-cri's one-line error and not measured further.
#   bench/cri/run.sh [-n N] [-s SETTLE_S] [-t runc|beaconbox|both] [-o OUTPUT_DIR]
#                    [-b BBX_CRI] [-c system|1.7|2]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
count=5
settle=5
which_handlers=both
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
cri_client=${BBX_CRI_CLIENT:-$repo/_build/tests/bbx-cri}
containerd_choice=system
usage="usage: run.sh [-n N] [-s SETTLE_S] [-t runc|beaconbox|both] [-o OUTPUT_DIR] [-b BBX_CRI] [-c system|1.7|2]"
while getopts 'n:s:t:o:b:c:' opt; do
  case $opt in
    n) count=$OPTARG ;;
    s) settle=$OPTARG ;;
    t) which_handlers=$OPTARG ;;
    o) output=$OPTARG ;;
    b) cri_client=$OPTARG ;;
    c) containerd_choice=$OPTARG ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=$containerd_choice
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$count"
bbx_bench_number s "$settle" 0
case $which_handlers in
  runc) handlers=(runc) ;;
  beaconbox) handlers=(beaconbox) ;;
  both) handlers=(runc beaconbox) ;;
  *) echo "run.sh: -t wants runc, beaconbox or both" >&2; exit 2 ;;
esac
[ -x "$cri_client" ] ||
  { echo "run.sh: no bbx-cri at $cri_client: build the target bbx-cri (needs libgrpc++-dev) or pass -b" >&2; exit 1; }

work=$(mktemp -d /tmp/bbx-cri-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cgroup_parent=/bbx-cri-bench-$(tr '[:upper:]' '[:lower:]' <<<"${work##*.}")
bbx_cri_prepare "$work"
cri() { "$cri_client" "$BBX_SOCK" "$@"; }
# Before containerd stops: remove what CRI still has (its CNI teardown needs containerd).
bbx_on_stop() { bbx_cri_remove_pods "$cri_client"; }
# After containerd stopped: the cgroup parent and the work dir.
remove_work() {
  bbx_cri_remove_cgroup_parent "$cgroup_parent"
  rm -rf "$work"
}
if [[ " ${handlers[*]} " == *" beaconbox "* ]]; then bbx_bench_start beaconbox; else bbx_env_start; fi
trap 'status=$?; bbx_env_stop || true; remove_work; exit $status' EXIT
bbx_cri_import_images "$cri_client"

ms_now() { date +%s%3N; }
# PSS in KiB of this environment's processes but containerd.
env_pss_kib() {
  local pid total=0 pss
  for pid in $(bbx_env_pids); do
    [ "$pid" = "$BBX_CONTAINERD_PID" ] && continue
    pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || true)
    total=$((total + ${pss:-0}))
  done
  echo "$total"
}
# min median max of the numbers on stdin.
summary() { sort -n | awk '{v[NR] = $1} END {if (NR) print v[1], v[int((NR + 1) / 2)], v[NR]; else print "- - -"}'; }
# container POD NAME: creates and starts a sleeping container, prints its id.
container() {
  local id
  id=$(cri create "$1" "$2" "$BBX_IMAGE" -- /bin/sleep 2147483647) || return 1
  cri start "$id" || return 1
  echo "$id"
}

echo "containerd $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}'), $count pod(s) per handler, settle ${settle}s"
for handler in "${handlers[@]}"; do
  : > "$work/$handler.results"
  for i in $(seq "$count"); do
    t0=$(ms_now)
    if ! pod=$(cri run-pod "bench-$handler-$i" --handler "$handler" --cgroup-parent "$cgroup_parent" 2>&1); then
      echo "$handler: RunPodSandbox failed: $pod"
      break
    fi
    tp=$(ms_now)
    if ! said=$(container "$pod" first 2>&1); then
      echo "$handler: RunPodSandbox $((tp - t0)) ms, then the first container failed: $said"
      cri stop-pod "$pod" > /dev/null 2>&1 || true; cri rm-pod "$pod" > /dev/null 2>&1 || true
      break
    fi
    t1=$(ms_now)
    if ! said=$(container "$pod" second 2>&1); then
      echo "$handler: the second container failed: $said"
      cri stop-pod "$pod" > /dev/null 2>&1 || true; cri rm-pod "$pod" > /dev/null 2>&1 || true
      break
    fi
    t2=$(ms_now)
    # Memory with one container: the second one is stopped and removed first.
    cri stop "$said" --timeout 5 > /dev/null && cri rm "$said" > /dev/null
    sleep "$settle"
    pss1=$(env_pss_kib)
    if ! said=$( { container "$pod" second && container "$pod" third; } 2>&1 > /dev/null); then
      echo "$handler: a container of the three-container pod failed: $said"
      cri stop-pod "$pod" > /dev/null 2>&1 || true; cri rm-pod "$pod" > /dev/null 2>&1 || true
      break
    fi
    sleep "$settle"
    pss3=$(env_pss_kib)
    cri stop-pod "$pod" > /dev/null && cri rm-pod "$pod" > /dev/null
    echo "$handler pod $i: RunPodSandbox $((tp - t0)) ms, pod start $((t1 - t0)) ms, second container $((t2 - t1)) ms, PSS with 1 container $pss1 KiB, with 3 $pss3 KiB"
    echo "$((tp - t0)) $((t1 - t0)) $((t2 - t1)) $pss1 $pss3" >> "$work/$handler.results"
  done
done

echo "summary (min median max):"
for handler in "${handlers[@]}"; do
  [ -s "$work/$handler.results" ] || { echo "  $handler: not measured (see above)"; continue; }
  echo "  $handler: RunPodSandbox ms $(cut -d' ' -f1 "$work/$handler.results" | summary);" \
       "pod start ms $(cut -d' ' -f2 "$work/$handler.results" | summary);" \
       "second container ms $(cut -d' ' -f3 "$work/$handler.results" | summary);" \
       "PSS KiB 1 container $(cut -d' ' -f4 "$work/$handler.results" | summary)," \
       "3 containers $(cut -d' ' -f5 "$work/$handler.results" | summary)"
done
