#!/usr/bin/env bash
# Where a container's start goes (issue 16): `ctr run --rm IMAGE ID /bin/true` with
# beaconbox, split step by step from the shim's own timing lines and the guest's own
# clock (the boot steps vminitd answers Hello with, logged by the shim as "guest boot
# of ..."), next to runc's shim's whole run in the same private containerd.
#
# Per run, on one time line starting at the VMM's start (t=0):
#   host setup           shim Create until the VMM is started (rootfs, state)
#   VMM start            the VMM plugin's create (QEMU started, QMP answered)
#   before guest clock   t0 - VMM start: firmware, kernel decompression, what runs
#                        before the guest kernel's clock starts; t0 = the host's Hello
#                        answer time minus the guest's "hello-received" time
#   kernel: ...          the guest kernel's milestones from its own log
#   vminitd: ...         vminitd's steps (modules, agent token, listening)
#   agent connect        the guest listening until the shim's Hello arrived
#   container create     CreateBundle + crun create in the guest
#   rest                 ctr's wall time minus all of the above (task start, the
#                        process, exit, delete, VM teardown, ctr itself)
# Figures are medians over the runs (min and max beside). With -v LABEL=FILE (again
# for more) each variant runs too, FILE's TOML merged into beaconbox's config (its keys
# replace the same keys of the same tables, bench/boot/merge-toml.py): the "before and
# after" of a boot change in one run, e.g. [vm] kernel_path = the bzImage against the
# default PVH vmlinux.
#   bench/boot/run.sh [-n RUNS] [-o OUTPUT_DIR] [-v LABEL=TOML_FILE]...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
runs=5
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
variants=("default=")
while getopts 'n:o:v:' opt; do
  case $opt in
    n) runs=$OPTARG ;;
    o) output=$OPTARG ;;
    v) variants+=("$OPTARG") ;;
    *) echo "usage: run.sh [-n RUNS] [-o OUTPUT_DIR] [-v LABEL=TOML_FILE]..." >&2; exit 2 ;;
  esac
done
for variant in "${variants[@]:1}"; do
  file=${variant#*=}
  [[ $variant == *=* && -r $file ]] ||
    { echo "run.sh: -v $variant: want LABEL=FILE with a readable TOML file" >&2; exit 2; }
  python3 "$here/merge-toml.py" /dev/null "$file" >/dev/null || exit 2
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=system
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$runs"

bbx_bench_start beaconbox
log="$BBX_DIR/containerd.log"
base_config="$BBX_DIR/beaconbox.toml.base"
cp "$BBX_BEACONBOX_CONFIG" "$base_config"

wall_ms() {  # RUNTIME ID -> the wall time of ctr run --rm ID /bin/true
  local start end
  start=$(date +%s%N)
  BBX_RUNTIME=$1 bbx_run "$2" /bin/true >/dev/null
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}

# One line per run: "step value_ms" pairs, from the wall time and the shim's lines.
steps_of_run() {  # ID WALL_MS
  local id=$1 wall=$2 created boot
  created=$(grep -F "container " "$log" | grep -F "/$id created in the VM" | tail -1)
  boot=$(grep -F "guest boot of " "$log" | grep -F "/$id:" | tail -1)
  if [ -z "$created" ] || [ -z "$boot" ]; then echo "run.sh: no timing lines for $id in $log" >&2; return 1; fi
  awk -v wall="$wall" -v created="$created" -v boot="$boot" 'BEGIN {
    num = "[0-9]+(\\.[0-9]+)?"
    match(created, "host setup " num); host = substr(created, RSTART + 11, RLENGTH - 11)
    match(created, "VMM start to agent ready " num); ready = substr(created, RSTART + 25, RLENGTH - 25)
    match(created, "\\(VMM start " num); vmm = substr(created, RSTART + 11, RLENGTH - 11)
    match(created, "container create " num); create = substr(created, RSTART + 17, RLENGTH - 17)
    match(boot, "Hello answered " num); hello_host = substr(boot, RSTART + 15, RLENGTH - 15)
    split(substr(boot, index(boot, "guest clock: ") + 13), parts, ", ")
    for (i in parts) { n = split(parts[i], f, " "); if (n >= 2) g[f[1]] = f[2] }
    if (!("hello-received" in g)) { print "no hello-received step: guest without boot steps" > "/dev/stderr"; exit 1 }
    # t=0 at the VMM start; the host answer time of Hello is vmm + hello_host.
    t0 = vmm + hello_host - g["hello-received"]
    printf "host-setup %s vmm-start %s before-guest-clock %.1f", host, vmm, t0 - vmm
    prev = 0
    order = "initramfs-unpack-start initramfs-unpacked kernel-init-done init-started vminitd-start modules-loaded agent-token-read agent-listening hello-received"
    n = split(order, names, " ")
    for (i = 1; i <= n; i++) {
      if (!(names[i] in g)) continue
      label = names[i] == "hello-received" ? "agent-connect" : names[i]
      printf " %s %.1f", label, g[names[i]] - prev; prev = g[names[i]]
    }
    printf " container-create %s", create
    printf " rest %.1f total %s\n", wall - host - ready - create, wall
  }'
}

summarize() {  # LABEL, lines of "step value" pairs on stdin
  awk -v label="$1" '{
    for (i = 1; i < NF; i += 2) {
      if (!($i in seen)) { seen[$i] = 1; order[++n] = $i }
      v[$i, ++count[$i]] = $(i + 1)
    }
  } END {
    printf "%s (%d runs): ms since the step above, median (min-max)\n", label, NR
    for (k = 1; k <= n; k++) {
      s = order[k]; c = count[s]
      for (i = 1; i <= c; i++) a[i] = v[s, i] + 0
      for (i = 2; i <= c; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      med = c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
      printf "  %-24s %8.1f  (%.1f-%.1f)\n", s, med, a[1], a[c]
    }
  }'
}

echo "== ctr run --rm IMAGE ID /bin/true, $runs runs each after one warm-up run (output: $output)"
wall_ms io.containerd.runc.v2 boot-warmup-runc >/dev/null
for i in $(seq "$runs"); do wall_ms io.containerd.runc.v2 "boot-runc-$i"; done |
  awk '{ print "total", $1 }' | summarize "runc's shim"
for variant in "${variants[@]}"; do
  label=${variant%%=*} file=${variant#*=}
  cp "$base_config" "$BBX_BEACONBOX_CONFIG"
  if [ -n "$file" ]; then
    python3 "$here/merge-toml.py" "$base_config" "$file" > "$BBX_BEACONBOX_CONFIG"
  fi
  wall_ms "$BBX_BEACONBOX_RUNTIME" "boot-warmup-$label" >/dev/null
  for i in $(seq "$runs"); do
    id="boot-$label-$i"
    steps_of_run "$id" "$(wall_ms "$BBX_BEACONBOX_RUNTIME" "$id")"
  done | summarize "beaconbox $label"
done
echo "== $(bbx_vm_accelerators | tail -1 | cut -c1-200)"
