#!/usr/bin/env bash
# The beaconbox end-to-end checks again, under containerd 1.7 extracted from Debian
# trixie's package by scripts/fetch-containerd.sh (exit 77, skipped, when it cannot be).
#   containerd_1_7_e2e.sh OUTPUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/beaconbox_e2e.sh" "${1:?usage: containerd_1_7_e2e.sh OUTPUT_DIR}" 1.7
