#!/bin/sh
# FAKE QEMU (a test double, not QEMU): under KVM it behaves like QEMU on a nested KVM
# where Debian's kernel never prints: it runs on, silent, until killed. Otherwise it
# runs the real QEMU with the same arguments.
#   BEACONBOX_FAKE_QEMU_PROBE_LOG  if set, the pid of each KVM start is appended
#   BEACONBOX_REAL_QEMU            the real QEMU (default /usr/bin/qemu-system-x86_64)
case " $* " in
  *" kvm "* | *" -enable-kvm "* | *"accel=kvm"*)
    if [ -n "${BEACONBOX_FAKE_QEMU_PROBE_LOG:-}" ]; then
      echo "kvm start pid $$" >> "$BEACONBOX_FAKE_QEMU_PROBE_LOG"
    fi
    exec sleep 600
    ;;
esac
exec "${BEACONBOX_REAL_QEMU:-/usr/bin/qemu-system-x86_64}" "$@"
