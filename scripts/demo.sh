#!/usr/bin/env bash
# `make demo`: a container in a VM under a private containerd, from a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
output=${BEACONBOX_OUTPUT_DIR:-$PWD/_output}
if [ ! -x "$output/containerd-shim-beaconbox-v1" ]; then
  echo "demo: $output/containerd-shim-beaconbox-v1 is not built: run make" >&2
  exit 1
fi
# shellcheck source=lib/containerd-env.sh
source scripts/lib/containerd-env.sh
bbx_env_start "$output"
bbx_import_demo_image
id="demo-$$"
echo "== host kernel:  $(uname -r)"
echo "== ctr run --rm --runtime io.containerd.beaconbox.v1 $BBX_IMAGE $id uname -r"
start=$(date +%s.%N)
guest=$(bbx_run "$id" /bin/uname -r)
end=$(date +%s.%N)
echo "== guest kernel: $guest   ($(awk -v s="$start" -v e="$end" 'BEGIN{printf "%.1f", e-s}') s, VM boot included)"
echo "== ctr run ... /bin/sh -c 'echo hello from a VM; cat /proc/cpuinfo | grep -m1 \"model name\"'"
bbx_run "$id-2" /bin/sh -c 'echo hello from a VM; grep -m1 "model name" /proc/cpuinfo'
echo "== cleaning up"
