#!/usr/bin/env bash
# `make demo`: one container in a QEMU VM under a private containerd (its own root,
# state, socket and network namespace), from an image built here from Debian's
# busybox-static; prints what the container printed, then removes everything.
#
#   scripts/demo.sh
#
# BEACONBOX_OUTPUT_DIR  where `make` put the shim (default <repo>/_output)
# BBX_DEMO_RUNTIME      the runtime (default io.containerd.beaconbox.v1;
#                       io.containerd.runc.v2 runs the same demo with runc)
# BBX_CONTAINERD        system (default: Debian's 1.6) or 1.7 (see fetch-containerd.sh)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

BBX_OUTPUT_DIR=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
BBX_RUNTIME=${BBX_DEMO_RUNTIME:-$BBX_BEACONBOX_RUNTIME}
export BBX_OUTPUT_DIR BBX_RUNTIME

if [ "$BBX_RUNTIME" = "$BBX_BEACONBOX_RUNTIME" ]; then
  missing=$(bbx_beaconbox_missing "$BBX_OUTPUT_DIR")
  if [ -n "$missing" ]; then
    echo "demo: not built yet (run make):" >&2
    while read -r path; do echo "  missing: $path" >&2; done <<<"$missing"
    exit 1
  fi
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: containerd needs root: run make demo as root" >&2
  exit 1
fi

bbx_env_start
echo "== containerd $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}'), private (netns $BBX_NETNS, root $BBX_DIR)"
bbx_import_demo_image
echo "== image $BBX_IMAGE imported (busybox-static, built locally)"
id="demo-${BBX_DIR##*.}"
id=$(tr '[:upper:]' '[:lower:]' <<<"$id")

echo "== host kernel: $(uname -r)"
echo "\$ ctr run --rm --runtime $BBX_RUNTIME $BBX_IMAGE $id /bin/uname -r"
start=$(date +%s%N)
release=$(bbx_run "$id" /bin/uname -r)
end=$(date +%s%N)
echo "$release"
echo "== the container's kernel: $release ($(( (end - start) / 1000000 )) ms for the whole ctr run)"

echo "\$ ctr run --rm --runtime $BBX_RUNTIME $BBX_IMAGE $id-hello /bin/sh -c '...'"
# shellcheck disable=SC2016 # expanded by the container's shell
bbx_run "$id-hello" /bin/sh -c \
  'echo "hello from $(hostname), pid $$, $(nproc) cpu(s), $(free -m | awk "/Mem:/ {print \$2}") MiB of memory, kernel $(uname -r)"'

echo "== cleaning up"
bbx_env_stop
left=$(bbx_env_leftovers)
if [ -n "$left" ]; then
  echo "demo: left behind:" >&2
  echo "$left" >&2
  exit 1
fi
echo "== done: containerd, its network namespace and every directory are gone"
