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
# The processes of the environment but containerd once they are gone, or after 10 s.
others_after_10s() {
  local left="" _
  for _ in $(seq 100); do
    left=$(others || true)
    [ -z "$left" ] && break
    sleep 0.1
  done
  echo "$left"
}

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

  left=$(others_after_10s)
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
  records=$(find "$BBX_DIR/beacon/state/shim" -name "*$id*" 2>/dev/null || true)
  [ -z "$records" ] && pass "$step: no shim record or state file left under the state dir" ||
    fail "$step: left under the state dir: $records"
  bbx_ctr containers ls -q | grep -qx "$id" && fail "$step: container still listed"
done

# containerd's dead-shim cleanup runs the shim's `delete` action with the bundle as its
# working directory; containerd 1.7's own task delete may remove the bundle first, and
# the action never runs (README "Troubleshooting"). Made deterministic here: containerd
# is stopped while the shim is killed and the bundle moved away, so its cleanup's exec
# fails; the next shim `start` (a new container) must release what the dead one left
# (TAP, lease, VM directory, socket, shim record) from its record under the state dir.
id=race1
bundle="$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/$id"
record="$BBX_DIR/beacon/state/shim/$BBX_NS--$id.json"
in_containerd_mounts() { nsenter --mount="/proc/$BBX_CONTAINERD_PID/ns/mnt" -- "$@"; }
if bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" "$BBX_IMAGE" "$id" \
     /bin/sleep 600 < /dev/null > "$BBX_DIR/run.out" 2>&1 && shim=$(bbx_shim_pid_of "$id"); then
  [ -f "$record" ] && pass "race: the shim record is under the state dir" ||
    fail "race: no shim record $record"
  failed_before=$(grep -c "failed to clean up after shim disconnected" "$BBX_DIR/containerd.log" || true)
  kill -STOP "$BBX_CONTAINERD_PID"
  kill -KILL "$shim"
  in_containerd_mounts mv "$bundle" "$bundle.away" || fail "race: cannot move the bundle away"
  kill -CONT "$BBX_CONTAINERD_PID"
  for _ in $(seq 100); do
    [ "$(grep -c "failed to clean up after shim disconnected" "$BBX_DIR/containerd.log" || true)" -gt "$failed_before" ] && break
    sleep 0.1
  done
  # containerd's own delete of the bundle found nothing there (as when it removed it
  # first): remove what it would have, as it would: the rootfs unmounted, the bundle and
  # its work dir removed.
  in_containerd_mounts umount -R "$bundle.away/rootfs" 2>/dev/null || true
  if in_containerd_mounts grep -qF " $bundle.away" /proc/self/mountinfo; then
    fail "race: still mounted under the bundle: $(in_containerd_mounts grep -F " $bundle.away" /proc/self/mountinfo)"
  else
    work=$(readlink "$bundle.away/work" || true)
    case $work in "$BBX_DIR/root/"*) rm -rf "$work" ;; esac
    rm -rf "$bundle.away"
  fi
  # The race reproduced: containerd's cleanup could not run the `delete` action.
  [ -f "$record" ] && [ -n "$(in_netns ip -br link | grep '^beacon-' || true)" ] &&
    pass "race: the dead shim's delete did not run (record and TAP still there)" ||
    fail "race: not reproduced: containerd's cleanup ran the delete action anyway"
  bbx_run race2 /bin/true > /dev/null 2>&1 || fail "race: the next ctr run failed"
  taps=$(in_netns ip -br link | grep '^beacon-' || true)
  [ -z "$taps" ] && pass "race: the next start swept the dead shim's TAP" || fail "race: TAPs left: $taps"
  leases=$(ctl net leases | tail -n +2 || true)
  [ -z "$leases" ] && pass "race: ... its lease" || fail "race: leases left: $leases"
  vm_dirs=$(find "$BBX_DIR/beacon/run/vm" -mindepth 1 -maxdepth 1 2>/dev/null || true)
  [ -z "$vm_dirs" ] && pass "race: ... its VM directory" || fail "race: VM directories left: $vm_dirs"
  extra=$(comm -13 <(echo "$baseline_sockets") <(sockets))
  [ -z "$extra" ] && pass "race: ... its socket" || fail "race: sockets left: $extra"
  records=$(find "$BBX_DIR/beacon/state/shim" -name "*$id*" 2>/dev/null || true)
  [ -z "$records" ] && pass "race: ... its shim record and state file" || fail "race: left: $records"
  grep -q "$BBX_NS/$id: its shim (pid $shim) is dead: releasing what it left" "$BBX_DIR/containerd.log" &&
    pass "race: the start's sweep says what it released" ||
    fail "race: no sweep line for $id in containerd's log"
else
  fail "race: ctr run -d $id failed or no shim: $(tail -2 "$BBX_DIR/run.out")"
fi
bbx_ctr task delete "$id" > /dev/null 2>&1 || true
bbx_ctr container rm "$id" > /dev/null 2>&1 || true
bbx_ctr container rm race2 > /dev/null 2>&1 || true
left=$(others_after_10s)
[ -z "$left" ] && pass "race: no process left" ||
  fail "race: processes left: $(for p in $left; do echo -n "$p($(exe_of "$p")) "; done)"
[ ! -e "$bundle" ] && [ ! -e "$bundle.away" ] && pass "race: no bundle left" || fail "race: bundle left"
mounts=$(bbx_env_mounts || true)
[ -z "$mounts" ] && pass "race: no mount left" || fail "race: mounts left: $mounts"

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -60 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
echo "crash cleanup end-to-end: nothing left after a shim killed at any of ${#steps[@]} steps"
