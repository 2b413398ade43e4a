#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here.
# shellcheck disable=SC2015
# The shim killed (SIGKILL) after each step of Create (issue 9): containerd's cleanup
# -- the shim's `delete` action, run from the state file the dead shim left in the
# bundle -- and `ctr task delete` / `ctr c rm` must leave nothing behind: no shim, QEMU
# or virtiofsd process, no TAP, no lease, no rootfs mount, no VM directory, no socket,
# no state file. Network mode "bridge" inside the test's own network namespace, so the
# network steps are covered too. The crash comes from the shim's test hook
# (host/shim/test_hooks.h): BEACONBOX_TEST_HOOKS=1 in containerd's environment, and the
# container's annotation beaconbox.test/crash-after=<step>.
#   crash_cleanup_e2e.sh OUTPUT_DIR
set -euo pipefail
output=${1:?usage: crash_cleanup_e2e.sh OUTPUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
export BBX_OUTPUT_DIR=$output BBX_RUNTIME=io.containerd.beaconbox.v1 BBX_NETWORK_MODE=bridge
export BEACONBOX_TEST_HOOKS=1
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$here/../../scripts/lib/containerd-env.sh"
bbx_require_beaconbox "$output" plugins/net-bridge.so

# The steps of Create, in order (kCreateSteps in host/shim/sandbox.h).
steps=(rootfs-prepared network-attached vm-created guest-connected guest-network-configured
       bundle-created task-created)

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
ctl() { nsenter --net="/run/netns/$BBX_NETNS" "$output/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" "$@"; }

bbx_env_start
bbx_import_demo_image
private_run="/proc/$BBX_CONTAINERD_PID/root/run"
sockets() { find "$private_run" "$BBX_DIR/beacon" -type s 2>/dev/null | sort; }
baseline_sockets=$(sockets)

for step in "${steps[@]}"; do
  id="crash-$step"
  bundle="$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/$id"
  hooks_before=$(grep -c "crash-after=$step: killing the shim" "$BBX_DIR/containerd.log" || true)
  if bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" \
       --annotation "beaconbox.test/crash-after=$step" "$BBX_IMAGE" "$id" /bin/sleep 600 \
       < /dev/null > "$BBX_DIR/run.out" 2>&1; then
    fail "$step: ctr run succeeded although the shim was to die"
  fi
  # containerd logs the shim's last words; the hook's line proves where it died.
  for _ in $(seq 50); do
    [ "$(grep -c "crash-after=$step: killing the shim" "$BBX_DIR/containerd.log" || true)" -gt "$hooks_before" ] && break
    sleep 0.1
  done
  [ "$(grep -c "crash-after=$step: killing the shim" "$BBX_DIR/containerd.log" || true)" -gt "$hooks_before" ] &&
    pass "$step: the shim was killed after that step" ||
    fail "$step: no trace of the test hook in containerd's log; ctr said: $(tail -2 "$BBX_DIR/run.out")"

  # containerd's own cleanup, as a user would finish it.
  bbx_ctr task delete "$id" > /dev/null 2>&1 || true
  bbx_ctr container rm "$id" > /dev/null 2>&1 || true

  left=""
  for _ in $(seq 100); do
    left=$(others || true)
    [ -z "$left" ] && break
    sleep 0.1
  done
  [ -z "$left" ] && pass "$step: no shim, VMM or virtiofsd process left" ||
    fail "$step: processes left: $(for p in $left; do echo -n "$p($(exe_of "$p")) "; done)"
  taps=$(in_netns ip -br link | grep '^beacon-' || true)
  [ -z "$taps" ] && pass "$step: no TAP left" || fail "$step: TAPs left: $taps"
  leases=$(ctl net leases | tail -n +2 || true)
  [ -z "$leases" ] && pass "$step: no lease left" || fail "$step: leases left: $leases"
  mounts=$(bbx_env_mounts || true)
  [ -z "$mounts" ] && pass "$step: no mount left" || fail "$step: mounts left: $mounts"
  vm_dirs=$(find "$BBX_DIR/beacon/run/vm" -mindepth 1 -maxdepth 1 2>/dev/null || true)
  [ -z "$vm_dirs" ] && pass "$step: no VM directory left" || fail "$step: VM directories left: $vm_dirs"
  extra=$(comm -13 <(echo "$baseline_sockets") <(sockets))
  [ -z "$extra" ] && pass "$step: no socket left" || fail "$step: sockets left: $extra"
  [ ! -e "$bundle/beaconbox-state.json" ] && [ ! -e "$bundle" ] &&
    pass "$step: no state file, no bundle left" || fail "$step: bundle or state file left in $bundle"
  bbx_ctr containers ls -q | grep -qx "$id" && fail "$step: container still listed"
done

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -60 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
echo "crash cleanup end-to-end: nothing left after a shim killed at any of ${#steps[@]} steps"
