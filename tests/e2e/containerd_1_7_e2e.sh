#!/usr/bin/env bash
# The end-to-end checks again, under containerd 1.7 from Debian trixie's package.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
output=${1:?usage: containerd_1_7_e2e.sh OUTPUT_DIR CACHE_DIR}
cache=${2:?usage: containerd_1_7_e2e.sh OUTPUT_DIR CACHE_DIR}
if ! bin_dir=$("$here/../../scripts/fetch-containerd.sh" "$cache"); then
  echo "SKIP: containerd 1.7 could not be fetched from Debian trixie (no access to the archive?)"
  exit 77
fi
exec bash "$here/beaconbox_e2e.sh" "$output" "$bin_dir"
