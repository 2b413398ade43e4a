#!/usr/bin/env bash
# beaconbox's acceptance tests (issue 3) through real containerd and ctr: a container
# in a QEMU VM. Needs the shim, kernel, initrd and plugins in the output dir.
#   beaconbox_e2e.sh OUTPUT_DIR [system|1.7|2|CONTAINERD_BIN_DIR]
# Exit 0: all passed; 1: a check failed or beaconbox is not built; 77: containerd 1.7 or 2
# was asked for and cannot be extracted (no access to Debian's archive).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: beaconbox_e2e.sh OUTPUT_DIR [system|1.7|2|CONTAINERD_BIN_DIR]}
export BBX_CONTAINERD=${2:-system}
export BBX_RUNTIME=io.containerd.beaconbox.v1
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

bbx_require_beaconbox "$BBX_OUTPUT_DIR"
bbx_select_containerd_or_skip

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }
gone() { local _; for _ in $(seq 100); do alive "$1" || return 0; sleep 0.1; done; return 1; }

bbx_env_start
echo "containerd: $("$BBX_CONTAINERD_BIN/containerd" --version)"
bbx_import_demo_image
private_run="/proc/$BBX_CONTAINERD_PID/root/run"
# Sockets present before any container (containerd's own); later ones must go.
sockets() { find "$private_run" "$BBX_DIR/beacon" -type s 2>/dev/null | sort; }
baseline_sockets=$(sockets)

# Nothing of container $1 may remain: no process besides containerd (no shim, QEMU
# or virtiofsd), no bundle, mount, socket, or file named after it.
assert_nothing_left() {
  local id=$1 extra
  extra=$(bbx_env_pids | grep -vx "$BBX_CONTAINERD_PID" || true)
  local pid
  for pid in $extra; do fail "$id: process $pid ($(exe_of "$pid")) still runs"; done
  [ ! -e "$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/$id" ] || fail "$id: bundle left"
  extra=$(bbx_env_mounts)
  [ -z "$extra" ] || fail "$id: mounts left: $extra"
  extra=$(comm -13 <(echo "$baseline_sockets") <(sockets))
  [ -z "$extra" ] || fail "$id: sockets left: $extra"
  extra=$(find "$BBX_DIR/beacon/run" "$BBX_DIR/beacon/state" "$private_run" -name "*$id*" 2>/dev/null || true)
  [ -z "$extra" ] || fail "$id: files left: $extra"
  bbx_ctr containers ls -q | grep -qx "$id" && fail "$id: container still listed"
  return 0
}

# 1. The command runs under the guest kernel, not the host's.
want_release=$(bbx_kernel_release "$(sed -n 's/^kernel_path = "\(.*\)"$/\1/p' "$BBX_BEACONBOX_CONFIG")")
got_release=$(bbx_run uname1 /bin/uname -r) || true
if [ "$got_release" = "$want_release" ] && [ "$got_release" != "$(uname -r)" ]; then
  pass "uname -r in the container is the guest kernel's release ($got_release; host $(uname -r))"
else
  fail "uname -r printed '$got_release', want the guest kernel's '$want_release'"
fi
assert_nothing_left uname1
# The boot timeline bench/boot reads: the guest's own milestones, kernel and vminitd.
boot_line=$(grep -F "guest boot of " "$BBX_DIR/containerd.log" | grep -F "/uname1:" | tail -1)
if grep -qE "init-started [0-9.]+ ms, .*modules-loaded [0-9.]+ ms, .*hello-received [0-9.]+ ms" <<<"$boot_line"; then
  pass "the shim logs the guest's boot steps (${boot_line##*guest clock: })"
else
  fail "no guest boot steps logged for uname1: '$boot_line'"
fi

# 2. stdout, stderr and the exit status reach ctr.
set +e
bbx_run streams1 /bin/sh -c 'echo out; echo err >&2; exit 7' > "$BBX_DIR/out" 2> "$BBX_DIR/err"
status=$?
set -e
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
check "ctr exits 7 (got $status)" test "$status" -eq 7
check "stdout is 'out' (got '$(cat "$BBX_DIR/out")')" test "$(cat "$BBX_DIR/out")" = out
check "stderr is 'err' (got '$(cat "$BBX_DIR/err")')" test "$(cat "$BBX_DIR/err")" = err
assert_nothing_left streams1

# 3. While a container runs its shim has a VMM (and virtiofsd) below it; after the
#    container is deleted every one of those pids is gone.
if bbx_run_detached running1 /bin/sleep 600; then
  shim=$(bbx_shim_pid_of running1 || true)
  children=$(bbx_env_pids | { grep -vx -e "$BBX_CONTAINERD_PID" -e "${shim:-none}" || true; } | tr '\n' ' ')
  names=$(for pid in $children; do exe_of "$pid"; done | sort -u | tr '\n' ' ')
  if [ -n "$shim" ] && grep -q 'qemu-system' <<<"$names"; then
    pass "a running container has shim $shim with $names below it"
  else
    fail "running1: shim '$shim', processes below it: '$names' (want qemu-system-*)"
  fi
  bbx_remove running1
  for pid in ${shim:-} $children; do gone "$pid" || fail "running1: pid $pid ($(exe_of "$pid")) outlived the delete"; done
  assert_nothing_left running1
else
  fail "ctr run -d running1 failed"
fi

# 4. A missing entrypoint: ctr's error names it; nothing stays.
set +e
message=$(bbx_run noent1 /no/such/binary 2>&1)
status=$?
set -e
if [ "$status" -ne 0 ] && grep -q '/no/such/binary' <<<"$message"; then
  pass "missing entrypoint is reported: $(tail -1 <<<"$message" | cut -c1-160)"
else
  fail "missing entrypoint: status $status, message: $message"
fi
bbx_remove noent1
assert_nothing_left noent1

# 5. A missing kernel: one line naming the file and its config key; nothing stays.
cp "$BBX_BEACONBOX_CONFIG" "$BBX_DIR/beaconbox.toml.good"
sed -i "s|^kernel_path = .*|kernel_path = \"$BBX_DIR/no-such-kernel\"|" "$BBX_BEACONBOX_CONFIG"
set +e
message=$(bbx_run nokernel1 /bin/true 2>&1)
status=$?
set -e
if [ "$status" -ne 0 ] && grep -q "no-such-kernel" <<<"$message" && grep -q "vm.kernel_path" <<<"$message"; then
  pass "missing kernel is reported with its config key"
else
  fail "missing kernel: status $status, message: $message"
fi
bbx_remove nokernel1
assert_nothing_left nokernel1

# 6. A guest that never connects: Create fails after the configured timeout with the
#    tail of the VM console in the error; nothing stays.
mkdir -p "$BBX_DIR/silent/bin"
cp /bin/busybox "$BBX_DIR/silent/bin/busybox"
printf '#!/bin/busybox sh\necho silent-guest-booted > /dev/console\n/bin/busybox sleep 600\n' > "$BBX_DIR/silent/init"
chmod +x "$BBX_DIR/silent/init"
(cd "$BBX_DIR/silent" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -n > "$BBX_DIR/silent.initrd")
cp "$BBX_DIR/beaconbox.toml.good" "$BBX_BEACONBOX_CONFIG"
sed -i -e "s|^initrd_path = .*|initrd_path = \"$BBX_DIR/silent.initrd\"|" \
       -e "s|^guest_connect_timeout_ms = .*|guest_connect_timeout_ms = 20000|" "$BBX_BEACONBOX_CONFIG"
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
bbx_remove silent1
assert_nothing_left silent1
cp "$BBX_DIR/beaconbox.toml.good" "$BBX_BEACONBOX_CONFIG"

# 7. kill -9 of the shim takes the VM down with it; containerd's cleanup (the shim's
#    `delete` action) releases the rest.
if bbx_run_detached killed1 /bin/sleep 600; then
  shim=$(bbx_shim_pid_of killed1 || true)
  children=$(bbx_env_pids | { grep -vx -e "$BBX_CONTAINERD_PID" -e "${shim:-none}" || true; } | tr '\n' ' ')
  if [ -n "$shim" ] && [ -n "$children" ]; then
    declare -A name_of=()
    for pid in $children; do name_of[$pid]=$(exe_of "$pid"); done
    kill -KILL "$shim"
    for pid in $children; do
      check "pid $pid (${name_of[$pid]}) dies with its shim" gone "$pid"
    done
  else
    fail "killed1: no shim ($shim) or nothing below it ($children)"
  fi
  bbx_remove killed1
  # containerd runs the dead shim's cleanup (its `delete` action, which removes the
  # socket and the shim record) on its own after it saw the shim go, not inside `ctr
  # task delete`: wait for it (up to 10 s, as crash_cleanup_e2e does) before looking.
  record="$BBX_DIR/beacon/state/shim/$BBX_NS--killed1.json"
  for _ in $(seq 100); do
    [ -z "$(comm -13 <(echo "$baseline_sockets") <(sockets))" ] && [ ! -e "$record" ] && break
    sleep 0.1
  done
  # containerd 1.7 may remove the bundle before its cleanup runs the `delete` action in
  # it, which then never runs (a race); the next shim start sweeps what that dead shim
  # left. Said here; section 8's container is that next start, and killed1 is checked
  # strictly after it, under every containerd.
  if [ -e "$record" ]; then
    echo "note: killed1: containerd's cleanup did not run the shim's delete (bundle gone first); the next start must sweep it"
  fi
else
  fail "ctr run -d killed1 failed"
fi

# 8. Kernel modules on demand (critest "Privileged is true"): in a privileged container
#    brctl addbr makes the guest kernel ask for "bridge" and ip link add type dummy for
#    "rtnl-link-dummy"; the guest's modprobe helper loads both from its on-demand list.
#    A module not on the list (nlmon) is still refused.
set +e
message=$(bbx_ctr run --rm --privileged --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" \
  "$BBX_IMAGE" privmod1 /bin/sh -c '
    brctl addbr foobar || echo "brctl addbr failed"
    ip link add name dummy0 type dummy || echo "ip link add type dummy failed"
    ip -o link show foobar | grep -q foobar && echo "have-foobar"
    ip -o link show dummy0 | grep -q dummy0 && echo "have-dummy0"
    ip link add name nl0 type nlmon 2>/dev/null && echo "nlmon-link-made"
    grep -q "^nlmon " /proc/modules && echo "nlmon-loaded"
    grep -q "^bridge " /proc/modules && echo "bridge-loaded"
    exit 0' < /dev/null 2>&1)
status=$?
set -e
if [ "$status" -eq 0 ] && grep -qx have-foobar <<<"$message" && grep -qx have-dummy0 <<<"$message" &&
   grep -qx bridge-loaded <<<"$message"; then
  pass "a privileged container makes a bridge (brctl addbr) and a dummy link: modules bridge, dummy loaded on demand"
else
  fail "modules on demand: status $status, output: $message"
fi
if [ "$status" -eq 0 ] && ! grep -q -e nlmon-link-made -e nlmon-loaded <<<"$message"; then
  pass "a module not on the guest's on-demand list (nlmon) is refused"
else
  fail "module nlmon (not on the on-demand list): status $status, output: $message"
fi
bbx_remove privmod1
# The dead shim of section 7 is gone too, whether containerd ran its `delete` or the
# start of privmod1's shim swept it (shim record under the state dir).
assert_nothing_left killed1
assert_nothing_left privmod1

bbx_e2e_finish "beaconbox end-to-end: all checks passed under $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}')"
