#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here.
# shellcheck disable=SC2015
# The accelerator choice (issue 8) through a real containerd and ctr, one private
# containerd for all cases. QEMU is FAKE-QEMU (tests/plugins/vmm-qemu/
# fake-qemu-kvm-msr-abort.sh, a test double): under KVM it fails exactly as Debian's
# QEMU does on a nested, paravirtual KVM (MSR 0x10a), otherwise it runs the real QEMU.
# kvm_device = /dev/null stands in for a /dev/kvm that opens, so the probe runs here
# as on such a host, whether this host has no /dev/kvm or a good one.
#   accelerator_e2e.sh OUTPUT_DIR
set -euo pipefail
output=${1:?usage: accelerator_e2e.sh OUTPUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=$output BBX_RUNTIME=io.containerd.beaconbox.v1
# The fake appends a line per KVM start here; the harness hands BEACONBOX_* variables
# to containerd and its shims.
BEACONBOX_FAKE_QEMU_PROBE_LOG=$(mktemp /tmp/bbx-accel-probes.XXXXXX)
export BEACONBOX_FAKE_QEMU_PROBE_LOG
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_on_stop() { rm -f "$BEACONBOX_FAKE_QEMU_PROBE_LOG"; }
missing=$(bbx_beaconbox_missing "$output")
if [ -n "$missing" ] || [ ! -x "$output/beaconbox-ctl" ]; then
  rm -f "$BEACONBOX_FAKE_QEMU_PROBE_LOG"
  echo "FAIL: beaconbox is not built in $output (run make); missing: $(tr '\n' ' ' <<<"$missing")" >&2
  exit 1
fi

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
probes() { grep -c . "$BEACONBOX_FAKE_QEMU_PROBE_LOG" || true; }
shim_log() { grep -F "[beaconbox-shim $1]" "$BBX_DIR/containerd.log" || true; }

bbx_env_start
bbx_import_demo_image
fake="$BBX_DIR/fake-qemu/fake-qemu-kvm-msr-abort.sh"
mkdir -p "$(dirname "$fake")"
cp "$repo/tests/plugins/vmm-qemu/fake-qemu-kvm-msr-abort.sh" "$fake"
cp "$BBX_BEACONBOX_CONFIG" "$BBX_DIR/beaconbox.toml.base"
# use_config ACCELERATOR [BINARY [KVM_DEVICE]]: the shim reads it at every start.
use_config() {
  cp "$BBX_DIR/beaconbox.toml.base" "$BBX_BEACONBOX_CONFIG"
  printf '\n[plugins.vmm.qemu.config]\naccelerator = "%s"\nbinary = "%s"\nkvm_device = "%s"\n' \
    "$1" "${2:-$fake}" "${3:-/dev/null}" >> "$BBX_BEACONBOX_CONFIG"
}
ctl() { "$output/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" "$@"; }
# Nothing of container $1 may remain: no process besides containerd, no per-VM run
# dir, no mount, no bundle.
assert_nothing_left() {
  local id=$1 extra pid
  extra=$(bbx_env_pids | grep -vx "$BBX_CONTAINERD_PID" || true)
  for pid in $extra; do fail "$id: process $pid ($(exe_of "$pid")) still runs"; done
  extra=$(find "$BBX_DIR/beacon/run/vm" -mindepth 1 -maxdepth 1 2>/dev/null || true)
  [ -z "$extra" ] || fail "$id: VM run dirs left: $extra"
  extra=$(bbx_env_mounts)
  [ -z "$extra" ] || fail "$id: mounts left: $extra"
  [ ! -e "$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/$id" ] || fail "$id: bundle left"
  return 0
}

# (a) auto: KVM "opens" but cannot boot the guest: the container runs under TCG, the
#     shim logs one WARN line with QEMU's reason; the second container uses the
#     cached verdict (no second probe).
use_config auto
out=$(bbx_run accel1 /bin/echo ran-under-tcg 2>&1) || true
[ "$out" = ran-under-tcg ] && pass "auto: the container ran (under TCG): '$out'" ||
  fail "auto: ctr run printed '$out'"
warns=$(shim_log accel1 | grep -F '[warning]' | grep -c 'MSR 0x10a' || true)
[ "$warns" = 1 ] && pass "auto: one WARN line with QEMU's MSR 0x10a reason" ||
  fail "auto: $warns WARN lines with MSR 0x10a: $(shim_log accel1 | grep -F '[warning]')"
shim_log accel1 | grep -q 'VM [^ ]*/accel1 uses tcg ([^)]*): KVM present but cannot boot the guest: qemu-system-x86_64: error: failed to set MSR 0x10a' &&
  pass "auto: the shim logs which accelerator the VM used and why" ||
  fail "auto: no 'VM [^ ]*/accel1 uses tcg: KVM present but cannot boot the guest' line: $(shim_log accel1 | grep 'uses' || true)"
[ "$(probes)" = 1 ] && pass "auto: one KVM probe" || fail "auto: $(probes) KVM starts, want 1"
out=$(bbx_run accel2 /bin/echo second 2>&1) || true
[ "$out" = second ] && pass "auto: a second container runs" || fail "auto: second ctr run printed '$out'"
[ "$(probes)" = 1 ] && shim_log accel2 | grep -q 'VM [^ ]*/accel2 uses tcg ([^)]*): .*(cached verdict ' &&
  pass "auto: the second VM used the cached verdict, no new probe" ||
  fail "auto: second VM: $(probes) probes in all; $(shim_log accel2 | grep uses || true)"
verdicts=("$BBX_DIR"/beacon/state/vmm-qemu/cache/kvm-verdict-*.json)
[ -f "${verdicts[0]}" ] && grep -q '"usable": false' "${verdicts[0]}" &&
  pass "the verdict is cached in ${verdicts[0]#"$BBX_DIR"/}" || fail "no cached verdict file"
assert_nothing_left accel2

# (c) beaconbox-ctl check: the WARN line with the reason and what to do.
line=$(ctl check 2>&1 | grep -E '^(OK|WARN|FAIL) +kvm ' || true)
grep -q '^WARN  *kvm  *KVM present but cannot boot the guest: qemu-system-x86_64: error: failed to set MSR 0x10a.*containers use TCG (slow)' <<<"$line" &&
  pass "check: $(cut -c1-150 <<<"$line")..." || fail "check's kvm line: '$line'"

# (b) kvm: never falls back; ctr fails with one line carrying QEMU's reason, and
#     nothing stays behind.
use_config kvm
set +e
message=$(bbx_run accel3 /bin/true 2>&1)
status=$?
set -e
if [ "$status" -ne 0 ] && [ "$(grep -c 'MSR 0x10a' <<<"$message")" = 1 ] &&
   grep -q 'accelerator = "kvm" but KVM cannot boot the guest: qemu-system-x86_64: error: failed to set MSR 0x10a' <<<"$message"; then
  pass "kvm: Create fails with one line: $(grep 'MSR' <<<"$message" | cut -c1-200)..."
else
  fail "kvm: status $status, message: $message"
fi
bbx_remove accel3
assert_nothing_left accel3
line=$(ctl check 2>&1 | grep -E '^(OK|WARN|FAIL) +kvm ' || true)
grep -q '^FAIL  *kvm  *KVM present but cannot boot the guest: .*MSR 0x10a' <<<"$line" &&
  pass "check with accelerator = kvm: a FAIL line" || fail "check (kvm)'s kvm line: '$line'"

# tcg: never touches the KVM device nor probes.
use_config tcg
before=$(probes)
out=$(bbx_run accel4 /bin/echo tcg 2>&1) || true
[ "$out" = tcg ] && [ "$(probes)" = "$before" ] &&
  shim_log accel4 | grep -q 'VM [^ ]*/accel4 uses tcg ([^)]*): accelerator = "tcg" in the config' &&
  pass "tcg: runs without a probe" || fail "tcg: printed '$out', probes $before -> $(probes)"

# The real QEMU with this host's own /dev/kvm (default kvm_device).
use_config auto /usr/bin/qemu-system-x86_64 /dev/kvm
out=$(bbx_run accel5 /bin/echo real 2>&1) || true
used=$(shim_log accel5 | grep -o 'VM [^ ]*/accel5 uses .*' | cut -c1-200 || true)
if [ "$out" = real ] && [ -n "$used" ]; then
  pass "real QEMU, this host's /dev/kvm: $used"
else
  fail "real QEMU, this host's /dev/kvm: printed '$out'; $used"
fi
if [ ! -e /dev/kvm ]; then
  grep -q 'uses tcg ([^)]*): no usable /dev/kvm' <<<"$used" && pass "no /dev/kvm here: TCG without a probe" ||
    fail "no /dev/kvm here, but: $used"
fi

bbx_e2e_finish "accelerator end-to-end: all checks passed"
