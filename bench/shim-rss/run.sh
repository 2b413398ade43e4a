#!/usr/bin/env bash
# The memory of one idle shim (issue 16: shim RSS <= 5 MiB), runc's shim first as the
# baseline, then beaconbox's, in one run under one private containerd
# (scripts/lib/containerd-env.sh). For each runtime it starts one idle `sleep`
# container, waits SETTLE_S, finds the container's shim by pid (bbx_shim_pid_of, never
# by name) and prints:
#   - the shim's Rss, Pss, Private (clean + dirty) from /proc/PID/smaps_rollup, its
#     anonymous and file-backed RSS, peak RSS (VmHWM) and thread count (/proc/PID/status);
#   - the RSS / PSS / private pages of each mapping from /proc/PID/smaps, summed by
#     file (binary, each .so), [heap], [stack], thread stacks and other anonymous memory,
#     largest first (-m: how many rows, default 15).
# -n N starts N idle containers of each runtime before measuring (the first one's shim
# is measured): shared library pages then weigh 1/N in its PSS, as in bench/density.
# -a also declares the other VMM and network plugins built in OUTPUT_DIR (unpicked:
# vm.vmm and network.mode stay qemu and none), as _output/config.toml does.
#   bench/shim-rss/run.sh [-n N] [-s SETTLE_S] [-m ROWS] [-t runc|beaconbox|both] [-a]
#                         [-o OUTPUT_DIR] [-c system|1.7|2|BIN_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
count=1
settle=10
rows=15
which_runtimes=both
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
containerd_choice=system
declare_unpicked=
usage="usage: run.sh [-n N] [-s SETTLE_S] [-m ROWS] [-t runc|beaconbox|both] [-a] [-o OUTPUT_DIR] [-c system|1.7|2|BIN_DIR]"
while getopts 'n:s:m:t:ao:c:' opt; do
  case $opt in
    n) count=$OPTARG ;;
    s) settle=$OPTARG ;;
    m) rows=$OPTARG ;;
    t) which_runtimes=$OPTARG ;;
    a) declare_unpicked=1 ;;
    o) output=$OPTARG ;;
    c) containerd_choice=$OPTARG ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=$containerd_choice BBX_GUEST_TIMEOUT_MS=300000
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$count"
bbx_bench_number s "$settle" 0
bbx_bench_number m "$rows"
bbx_bench_runtimes "$which_runtimes"

started=()
bbx_on_stop() {
  local id
  for id in "${started[@]}"; do bbx_remove "$id"; done
  started=()
}

if [ "$which_runtimes" = runc ]; then bbx_bench_start any; else bbx_bench_start beaconbox; fi
if [ -n "$declare_unpicked" ]; then
  for plugin in vmm.cloud-hypervisor:vmm-cloudhypervisor network.bridge:net-bridge network.cni:net-cni; do
    [ -e "$output/plugins/${plugin#*:}.so" ] || continue
    printf '\n[plugins.%s]\npath = "%s"\n' "${plugin%%:*}" "$output/plugins/${plugin#*:}.so" >> "$BBX_BEACONBOX_CONFIG"
  done
fi

# PID -> the smaps_rollup and status figures, one line.
summary_line() {
  local pid=$1
  awk '/^Rss:/ {r = $2} /^Pss:/ {p = $2} /^Private_(Clean|Dirty):/ {v += $2}
       END {printf "RSS %.2f MiB  PSS %.2f MiB  private %.2f MiB", r / 1024, p / 1024, v / 1024}' \
    "/proc/$pid/smaps_rollup"
  awk '/^VmHWM:/ {h = $2} /^Threads:/ {t = $2} /^RssAnon:/ {a = $2} /^RssFile:/ {f = $2}
       END {printf "  (anon %.2f, file %.2f)  peak RSS %.2f MiB  threads %d\n", a / 1024, f / 1024, h / 1024, t}' \
    "/proc/$pid/status"
}

# PID -> RSS/PSS/private KiB per mapping name, largest RSS first. A mapping without a
# name is "[anon]"; the kernel names thread stacks nothing, so the anonymous mappings
# right below a guard page (a ---p mapping) are counted as "[thread stacks]".
per_mapping() {
  local pid=$1
  awk -v rows="$rows" '
    /^[0-9a-f]+-[0-9a-f]+ / {
      perms = $2; name = ""
      for (i = 6; i <= NF; i++) name = name (i > 6 ? " " : "") $i
      if (name == "") name = (prev_perms == "---p" ? "[thread stacks]" : "[anon]")
      sub(/.*\//, "", name)
      prev_perms = perms
      next
    }
    /^Rss:/ { rss[name] += $2 }
    /^Pss:/ { pss[name] += $2 }
    /^Private_(Clean|Dirty):/ { priv[name] += $2 }
    END {
      for (n in rss) printf "%d\t%d\t%d\t%s\n", rss[n], pss[n], priv[n], n
    }' "/proc/$pid/smaps" | sort -t$'\t' -k1,1nr | awk -F'\t' -v rows="$rows" '
    NR <= rows { printf "     %7.2f %7.2f %7.2f  %s\n", $1 / 1024, $2 / 1024, $3 / 1024, $4; next }
    { r += $1; p += $2; v += $3; k++ }
    END { if (k) printf "     %7.2f %7.2f %7.2f  (%d more)\n", r / 1024, p / 1024, v / 1024, k }'
}

measure() {  # RUNTIME
  local runtime=$1 i id pid
  started=()
  for i in $(seq "$count"); do
    id="shim-rss-$i"
    if ! BBX_RUNTIME=$runtime bbx_run_detached "$id" /bin/sleep 36000 2> "$BBX_DIR/start-$i.err"; then
      echo "== $runtime: start $i failed: $(head -c 300 "$BBX_DIR/start-$i.err" | tr '\n' ' ')"
      bbx_remove "$id"
      bbx_on_stop
      return 1
    fi
    started+=("$id")
  done
  sleep "$settle"
  if ! pid=$(bbx_shim_pid_of shim-rss-1); then
    echo "== $runtime: no shim found for shim-rss-1"
    bbx_on_stop
    return 1
  fi
  echo "== $runtime, $count idle container(s), shim $(readlink "/proc/$pid/exe" 2>/dev/null || echo '?')"
  echo "   $(summary_line "$pid")"
  echo "     RSS MiB PSS MiB private  mapping"
  per_mapping "$pid"
  bbx_on_stop
}

echo "== containerd $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}'), image $BBX_IMAGE," \
     "$(nproc) CPUs, settle ${settle} s"
status=0
for runtime in "${BBX_RUNTIMES[@]}"; do
  measure "$runtime" || status=1
done
exit "$status"
