#!/usr/bin/env bash
# End to end through real containerd and ctr: a container in a QEMU VM.
#   beaconbox_e2e.sh OUTPUT_DIR [CONTAINERD_BIN_DIR]
set -euo pipefail
output=${1:?usage: beaconbox_e2e.sh OUTPUT_DIR [CONTAINERD_BIN_DIR]}
bin_dir=${2:-/usr/bin}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/lib/containerd-env.sh
source "$here/../../scripts/lib/containerd-env.sh"

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

# Nothing of container $1 may remain: shim, VM processes, sockets, mounts, bundle.
assert_nothing_left() {
  local id=$1
  [ -z "$(bbx_shim_pids)" ] || fail "$id: a shim still runs: $(bbx_shim_pids)"
  [ -z "$(ls -A "$BBX_DIR/beacon/run/vm" 2>/dev/null)" ] || fail "$id: VM run dir left: $(ls "$BBX_DIR/beacon/run/vm")"
  [ -z "$(ls -A "$BBX_DIR/beacon/run/s" 2>/dev/null)" ] || fail "$id: shim socket left"
  ! grep -q "/$id/rootfs" /proc/mounts || fail "$id: rootfs still mounted"
  [ ! -e "$BBX_DIR/state/io.containerd.runtime.v2.task/default/$id" ] || fail "$id: bundle left"
  ! ls -A /run/virtiofsd 2>/dev/null | grep -qF "${BBX_DIR//\//.}" || fail "$id: virtiofsd lock file left"
  local pid
  for pid in $(pgrep -f "beaconbox-$id " || true); do
    fail "$id: VM process $pid still runs"
  done
}

bbx_env_start "$output" "$bin_dir"
echo "containerd: $("$bin_dir/containerd" --version)"
bbx_import_demo_image

# 1. The command runs under the guest kernel, not the host's.
want_release=$(file -bL "$output/beaconbox-kernel-x86_64" | sed -n 's/.*version \([^ ]*\).*/\1/p')
got_release=$(bbx_run uname1 /bin/uname -r)
if [ "$got_release" = "$want_release" ] && [ "$got_release" != "$(uname -r)" ]; then
  pass "uname -r in the container is the guest kernel ($got_release)"
else
  fail "uname -r printed '$got_release', want the guest kernel '$want_release'"
fi
assert_nothing_left uname1

# 2. stdout, stderr and the exit status reach ctr.
set +e
bbx_run streams1 /bin/sh -c 'echo out; echo err >&2; exit 7' > "$BBX_DIR/out" 2> "$BBX_DIR/err"
status=$?
set -e
[ "$status" -eq 7 ] && pass "exit status 7" || fail "ctr exited $status, want 7"
[ "$(cat "$BBX_DIR/out")" = out ] && pass "stdout" || fail "stdout was '$(cat "$BBX_DIR/out")'"
[ "$(cat "$BBX_DIR/err")" = err ] && pass "stderr" || fail "stderr was '$(cat "$BBX_DIR/err")'"
assert_nothing_left streams1

# 3. A missing entrypoint: ctr's error names it; nothing stays.
set +e
message=$(bbx_run noent1 /no/such/binary 2>&1)
status=$?
set -e
if [ "$status" -ne 0 ] && grep -q '/no/such/binary' <<<"$message"; then
  pass "missing entrypoint is reported: $(tail -1 <<<"$message" | cut -c1-160)"
else
  fail "missing entrypoint: status $status, message: $message"
fi
bbx_ctr container rm noent1 >/dev/null 2>&1 || true
assert_nothing_left noent1

# 4. A missing kernel: one line naming the file and the config key; nothing stays.
cp "$BBX_DIR/beaconbox.toml" "$BBX_DIR/beaconbox.toml.good"
sed -i "s|^kernel_path = .*|kernel_path = \"$BBX_DIR/no-such-kernel\"|" "$BBX_DIR/beaconbox.toml"
set +e
message=$(bbx_run nokernel1 /bin/true 2>&1)
status=$?
set -e
if [ "$status" -ne 0 ] && grep -q "no-such-kernel" <<<"$message" && grep -q "vm.kernel_path" <<<"$message"; then
  pass "missing kernel is reported with its config key"
else
  fail "missing kernel: status $status, message: $message"
fi
bbx_ctr container rm nokernel1 >/dev/null 2>&1 || true
assert_nothing_left nokernel1

# 5. A guest that never connects: Create fails after the configured timeout with the
#    tail of the VM console in the error; nothing stays.
mkdir -p "$BBX_DIR/silent/bin"
cp /bin/busybox "$BBX_DIR/silent/bin/busybox"
printf '#!/bin/busybox sh\necho silent-guest-booted > /dev/console\n/bin/busybox sleep 600\n' > "$BBX_DIR/silent/init"
chmod +x "$BBX_DIR/silent/init"
(cd "$BBX_DIR/silent" && find . | cpio -o -H newc --quiet | gzip -n > "$BBX_DIR/silent.initrd")
cp "$BBX_DIR/beaconbox.toml.good" "$BBX_DIR/beaconbox.toml"
sed -i -e "s|^initrd_path = .*|initrd_path = \"$BBX_DIR/silent.initrd\"|" \
       -e "s|^guest_connect_timeout_ms = .*|guest_connect_timeout_ms = 8000|" "$BBX_DIR/beaconbox.toml"
set +e
message=$(bbx_run silent1 /bin/true 2>&1)
status=$?
set -e
if [ "$status" -ne 0 ] && grep -q "guest_connect_timeout_ms" <<<"$message" &&
   grep -q "silent-guest-booted" <<<"$message"; then
  pass "a guest that never connects fails Create with the console tail"
else
  fail "silent guest: status $status, message: $message"
fi
bbx_ctr container rm silent1 >/dev/null 2>&1 || true
assert_nothing_left silent1
cp "$BBX_DIR/beaconbox.toml.good" "$BBX_DIR/beaconbox.toml"

# 6. kill -9 of the shim takes the VM down with it; containerd's cleanup (the shim's
#    `delete` action) releases the rest.
bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime io.containerd.beaconbox.v1 "$BBX_IMAGE" killed1 /bin/sleep 600 >/dev/null
shim=$(bbx_shim_pids)
vmm=$(pgrep -f "beaconbox-killed1 " || true)
if [ -n "$shim" ] && [ -n "$vmm" ]; then
  kill -KILL "$shim"
  for _ in $(seq 50); do kill -0 "$vmm" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$vmm" 2>/dev/null; then fail "QEMU $vmm outlived its shim"; else pass "QEMU died with its shim"; fi
  bbx_ctr task delete -f killed1 >/dev/null 2>&1 || true
  bbx_ctr container rm killed1 >/dev/null 2>&1 || true
  assert_nothing_left killed1
else
  fail "killed1: no shim ($shim) or VM ($vmm) to kill"
fi

echo "VM console logs: $(ls "$BBX_DIR/beacon/log" | wc -l)"
if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -40 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
