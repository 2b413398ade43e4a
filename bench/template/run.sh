#!/usr/bin/env bash
# VM templating (issue 16 item 3) against a cold boot, next to runc, in one run under
# one private containerd (scripts/lib/containerd-env.sh):
#   - `ctr run --rm IMAGE ID /bin/true` wall time: runc, beaconbox cold, beaconbox
#     from a template (the template is built by a warm-up run first);
#   - VMM start to agent ready (the shim's "Hello answered N ms after the VMM
#     started" line), cold against template;
#   - PSS of the VMM (QEMU) per VM while N idle `sleep` containers run, cold against
#     template (smaps_rollup), with the shim's and virtiofsd's PSS.
#   bench/template/run.sh [-n ITERATIONS] [-d DENSITY] [-o OUTPUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=5
density=3
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
while getopts 'n:d:o:' opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    d) density=$OPTARG ;;
    o) output=$OPTARG ;;
    *) echo "usage: run.sh [-n ITERATIONS] [-d DENSITY] [-o OUTPUT_DIR]" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=system BBX_GUEST_TIMEOUT_MS=300000
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$iterations"
bbx_bench_number d "$density"
bbx_bench_start beaconbox
base="$BBX_DIR/beaconbox.toml.base"
cp "$BBX_BEACONBOX_CONFIG" "$base"
use_template() {  # true|false
  cp "$base" "$BBX_BEACONBOX_CONFIG"
  printf '\n[plugins.vmm.qemu.config]\ntemplate = %s\ntemplate_dir = "%s"\n' "$1" \
    "${BBX_TEMPLATE_DIR:-/dev/shm/bbx-bench-template.$$}" >> "$BBX_BEACONBOX_CONFIG"
}
trap 'bbx_env_stop; rm -rf "/dev/shm/bbx-bench-template.$$"' EXIT

summary() {  # LABEL, values on stdin
  sort -n | awk -v label="$1" '{ v[NR] = $1 } END {
    if (!NR) { printf "%-34s none\n", label; exit }
    printf "%-34s n=%-3d median %7d   min %7d   max %7d\n",
           label, NR, (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2), v[1], v[NR] }'
}
time_runs() {  # RUNTIME LABEL
  local i start end seen
  seen=$(grep -c 'Hello answered' "$BBX_DIR/containerd.log" || true)
  for i in $(seq "$iterations"); do
    start=$(date +%s%N)
    BBX_RUNTIME=$1 bbx_run "bench-$i" /bin/true >/dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
  done | summary "ctr run /bin/true ms, $2"
  { grep -oE 'Hello answered [0-9]+ ms after the VMM started' "$BBX_DIR/containerd.log" || true; } |
    tail -n +$((seen + 1)) | { grep -oE '[0-9]+' || true; } | summary "  VMM start to agent ready ms, $2"
}
pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# PID -> its 4 largest mappings by PSS (KiB): "pss/rss name" (smaps; [anon] for none).
top_mappings() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6 ? $6 : "[anon]"); next }
       /^Rss:/ { rss[name] += $2 } /^Pss:/ { pss[name] += $2 }
       END { for (n in pss) printf "%d %d %s\n", pss[n], rss[n], n }' "/proc/$1/smaps" 2>/dev/null |
    sort -rn | head -4 | awk '{ printf "%s%s %d/%d KiB", (NR > 1 ? ", " : ""), $3, $1, $2 } END { print "" }'
}
density_pss() {  # LABEL: N idle containers, then PSS of each VM's QEMU (and virtiofsd, shim)
  local i pid exe qemu=0 fsd=0 shim=0 nq=0
  for i in $(seq "$density"); do BBX_RUNTIME=$BBX_BEACONBOX_RUNTIME bbx_run_detached "idle-$i" /bin/sleep 600; done
  sleep 5
  for pid in $(bbx_env_pids); do
    exe=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null) || continue
    case $exe in
      qemu-system-*) qemu=$((qemu + $(pss_kib "$pid"))); nq=$((nq + 1)) ;;
      virtiofsd) fsd=$((fsd + $(pss_kib "$pid"))) ;;
      containerd-shim-beaconbox-v1) shim=$((shim + $(pss_kib "$pid"))) ;;
    esac
  done
  printf '%-34s %d VMs: QEMU PSS %d MiB/VM, virtiofsd %d MiB/VM, shim %d MiB/VM\n' "$1" "$nq" \
    $((qemu / 1024 / (nq ? nq : 1))) $((fsd / 1024 / (nq ? nq : 1))) $((shim / 1024 / (nq ? nq : 1)))
  # Where one virtiofsd's PSS lies (issue 16: ~9 MiB in a virtio-fs clone, ~1.5 cold).
  for pid in $(bbx_env_pids); do
    exe=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null) || continue
    if [ "$exe" = virtiofsd ]; then
      echo "  one virtiofsd's largest mappings, PSS/RSS: $(top_mappings "$pid")"
      break
    fi
  done
  for i in $(seq "$density"); do bbx_remove "idle-$i"; done
}

echo "== $(nproc) CPUs, $iterations runs each; accelerator: TCG unless the log says otherwise"
BBX_RUNTIME=io.containerd.runc.v2 bbx_run warm /bin/true >/dev/null
time_runs io.containerd.runc.v2 runc | grep -v 'VMM start'
use_template false
BBX_RUNTIME=$BBX_BEACONBOX_RUNTIME bbx_run warm /bin/true >/dev/null
time_runs "$BBX_BEACONBOX_RUNTIME" "beaconbox cold"
use_template true
start=$(date +%s%N)
BBX_RUNTIME=$BBX_BEACONBOX_RUNTIME bbx_run warm-template /bin/true >/dev/null
echo "template build + first clone: $((($(date +%s%N) - start) / 1000000)) ms"
time_runs "$BBX_BEACONBOX_RUNTIME" "beaconbox template"
use_template false
density_pss "idle busybox, cold"
use_template true
density_pss "idle busybox, template"
# Clones without virtio-fs (storage erofs on hot-added virtio-blk disks) map the
# template's memory copy-on-write: pages shared by all clones (issue 16 item 3).
if command -v mkfs.erofs >/dev/null && [ -e "$output/plugins/storage-erofs.so" ]; then
  use_template true
  bbx_use_erofs blk
  density_pss "idle busybox, template, erofs"
else
  echo "idle busybox, template, erofs: not measured (no mkfs.erofs or $output/plugins/storage-erofs.so)"
fi
