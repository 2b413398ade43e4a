#!/usr/bin/env bash
# `ctr run --rm IMAGE ID /bin/true` wall time per VMM plugin in one run under one
# private containerd (runc's shim as the baseline, then vmm = "qemu", then vmm =
# "cloud-hypervisor"), and the cloud-hypervisor plugin's own host-side time per REST
# call (the "cloud-hypervisor API time" line it logs per VM). The CH binary is
# BBX_CLOUD_HYPERVISOR, else the TEST DOUBLE fake-cloud-hypervisor from the build
# tree (QEMU TCG underneath: its figures say nothing about CH's own speed).
#   bench/cloud-hypervisor/run.sh [-n ITERATIONS] [-o OUTPUT_DIR] [-b BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=3
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
build=${BEACONBOX_BUILD_DIR:-$repo/_build}
while getopts 'n:o:b:' opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    o) output=$OPTARG ;;
    b) build=$OPTARG ;;
    *) echo "usage: run.sh [-n ITERATIONS] [-o OUTPUT_DIR] [-b BUILD_DIR]" >&2; exit 2 ;;
  esac
done
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=system
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_bench_number n "$iterations"
vmm_binary=${BBX_CLOUD_HYPERVISOR:-$build/tests/fake-cloud-hypervisor}
[ -x "$vmm_binary" ] || { echo "run.sh: no $vmm_binary: build the fake-cloud-hypervisor target" >&2; exit 1; }
bbx_bench_start beaconbox
cat >> "$BBX_BEACONBOX_CONFIG" <<EOC

[plugins.vmm.cloud-hypervisor]
path = "$BBX_OUTPUT_DIR/plugins/vmm-cloudhypervisor.so"
[plugins.vmm.cloud-hypervisor.config]
binary = "$vmm_binary"
EOC

measure() {  # measure LABEL RUNTIME: prints LABEL and the per-run wall times
  local label=$1 runtime=$2 i start end times=()
  for i in $(seq "$iterations"); do
    start=$(date +%s%N)
    bbx_ctr run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "b-${label//[^A-Za-z0-9]/-}-$i" \
      /bin/true </dev/null >/dev/null
    end=$(date +%s%N)
    times+=("$(( (end - start) / 1000000 ))")
  done
  printf '%-28s %s ms (mean %s ms over %s runs)\n' "$label" "${times[*]}" \
    "$(( ($(IFS=+; echo "${times[*]}")) / iterations ))" "$iterations"
}

echo "ctr run --rm /bin/true, wall time per run (containerd $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}')):"
measure runc io.containerd.runc.v2
sed -i 's/^vmm = .*/vmm = "qemu"/' "$BBX_BEACONBOX_CONFIG"
measure "beaconbox vmm=qemu" io.containerd.beaconbox.v1
sed -i 's/^vmm = .*/vmm = "cloud-hypervisor"/' "$BBX_BEACONBOX_CONFIG"
measure "beaconbox vmm=cloud-hypervisor" io.containerd.beaconbox.v1
echo "VMM binary for cloud-hypervisor: $vmm_binary"
echo "cloud-hypervisor plugin, host-side time per REST call (mean over the VMs above):"
grep -o 'cloud-hypervisor API time: .*(mean per call)' "$BBX_DIR/containerd.log" |
  sed 's/^cloud-hypervisor API time: //; s/ (mean per call)$//' | tr ',' '\n' |
  awk '{ sub(/^ +/, ""); split($0, f, " "); sum[f[1]] += f[3]; n[f[1]]++ }
       END { for (c in sum) printf "  %-18s %8.2f ms\n", c, sum[c] / n[c] }' | sort
