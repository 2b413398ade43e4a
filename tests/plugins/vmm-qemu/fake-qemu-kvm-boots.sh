#!/bin/sh
# FAKE QEMU (a test double, not QEMU): under KVM it behaves like QEMU on a good KVM
# host as far as the probe can tell: the serial console file (-serial file:PATH) gets
# the kernel's "Run /init as init process" line, then it runs on until killed.
# Otherwise it runs the real QEMU with the same arguments.
#   BEACONBOX_FAKE_QEMU_PROBE_LOG  if set, the pid of each KVM start is appended
case " $* " in
  *" kvm "* | *" -enable-kvm "* | *"accel=kvm"*)
    if [ -n "${BEACONBOX_FAKE_QEMU_PROBE_LOG:-}" ]; then
      echo "kvm start pid $$" >> "$BEACONBOX_FAKE_QEMU_PROBE_LOG"
    fi
    console=
    previous=
    for arg in "$@"; do
      if [ "$previous" = -serial ]; then console=${arg#file:}; fi
      previous=$arg
    done
    [ -n "$console" ] && printf '[    0.412345] Run /init as init process\n' >> "$console"
    exec sleep 600
    ;;
esac
exec "${BEACONBOX_REAL_QEMU:-/usr/bin/qemu-system-x86_64}" "$@"
