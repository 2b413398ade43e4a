#!/usr/bin/env bash
# The real-part variant of cloud_hypervisor_e2e.sh (issue 14, item 6): the same
# checks against a real `cloud-hypervisor` (CLOUD_HYPERVISOR_PATH, else PATH) on a
# working /dev/kvm. Where either is missing it prints why and exits 77 (skipped).
#   cloud_hypervisor_real_e2e.sh OUTPUT_DIR [system|1.7]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${CLOUD_HYPERVISOR_PATH:-$(command -v cloud-hypervisor || true)}
if [ -z "$binary" ] || [ ! -x "$binary" ]; then
  echo "SKIP: no cloud-hypervisor binary (set CLOUD_HYPERVISOR_PATH or put it on PATH; Debian does not package it)"
  exit 77
fi
# A working KVM: /dev/kvm opens and creates a VM (KVM_CREATE_VM); CH has no fallback.
if ! kvm=$(python3 - <<'PY' 2>&1
import fcntl, os, sys
try:
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
except OSError as e:
    sys.exit("cannot open /dev/kvm: %s" % e.strerror)
try:
    vm = fcntl.ioctl(fd, 0xAE01, 0)  # KVM_CREATE_VM
    os.close(vm)
except OSError as e:
    sys.exit("/dev/kvm cannot create a VM: %s" % e.strerror)
PY
); then
  echo "SKIP: no working KVM for cloud-hypervisor: $kvm"
  exit 77
fi
echo "real cloud-hypervisor: $binary ($("$binary" --version 2>&1 | head -1))"
BBX_CLOUD_HYPERVISOR=$binary exec bash "$here/cloud_hypervisor_e2e.sh" "$@"
