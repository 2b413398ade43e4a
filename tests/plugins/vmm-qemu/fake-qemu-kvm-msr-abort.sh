#!/bin/sh
# FAKE QEMU (a test double, not QEMU): behaves like Debian's qemu-system-x86_64 on a
# host whose /dev/kvm belongs to a nested, paravirtual KVM (kvm_pvm): under KVM it
# prints the error real QEMU prints there with -cpu host and aborts (exit 134, as a
# shell reports SIGABRT); otherwise it runs the real QEMU with the same arguments.
#   BEACONBOX_FAKE_QEMU_PROBE_LOG  if set, a line is appended for each KVM start
#   BEACONBOX_REAL_QEMU            the real QEMU (default /usr/bin/qemu-system-x86_64)
case " $* " in
  *" kvm "* | *" -enable-kvm "* | *"accel=kvm"*)
    if [ -n "${BEACONBOX_FAKE_QEMU_PROBE_LOG:-}" ]; then
      echo "kvm start pid $$" >> "$BEACONBOX_FAKE_QEMU_PROBE_LOG"
    fi
    echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x20000c6b" >&2
    echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3161: kvm_buf_set_msrs: Assertion \`ret == cpu->kvm_msr_buf->nmsrs' failed." >&2
    exit 134
    ;;
esac
exec "${BEACONBOX_REAL_QEMU:-/usr/bin/qemu-system-x86_64}" "$@"
