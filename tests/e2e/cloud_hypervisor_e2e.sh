#!/usr/bin/env bash
# The cloud-hypervisor VMM plugin through real containerd and ctr (issue 14), with
# vmm = "cloud-hypervisor" and nothing else changed in the config:
#   1. ctr run --rm of the demo image prints the container's output; its exit code
#      and stderr reach ctr.
#   2. a running container's shim has the VMM (and virtiofsd) below it; exec works.
#   3. kill + delete leave no process, socket, mount or file behind.
#   4. switched back to vmm = "qemu" (that line only) under the same containerd, the
#      next container runs in QEMU; exec and delete as before.
# The VMM is the TEST DOUBLE fake-cloud-hypervisor (QEMU TCG underneath; its README)
# unless BBX_CLOUD_HYPERVISOR names a binary (the real-part variant,
# cloud_hypervisor_real_e2e.sh).
#   cloud_hypervisor_e2e.sh OUTPUT_DIR [system|1.7]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: cloud_hypervisor_e2e.sh OUTPUT_DIR [system|1.7]}
export BBX_CONTAINERD=${2:-system}
build_dir=${BEACONBOX_BUILD_DIR:-$repo/_build}
vmm_binary=${BBX_CLOUD_HYPERVISOR:-$build_dir/tests/fake-cloud-hypervisor}
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

bbx_require_beaconbox "$BBX_OUTPUT_DIR" plugins/vmm-cloudhypervisor.so
[ -x "$vmm_binary" ] ||
  { echo "FAIL: the Cloud Hypervisor FAKE $vmm_binary is not built (cmake --build _build)" >&2; exit 1; }
bbx_select_containerd_or_skip

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }
gone() { local _; for _ in $(seq 100); do alive "$1" || return 0; sleep 0.1; done; return 1; }
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

bbx_env_start
# The generated config with the VMM switched: `vmm` and the plugin's own table only.
sed -i 's/^vmm = "qemu"$/vmm = "cloud-hypervisor"/' "$BBX_BEACONBOX_CONFIG"
cat >> "$BBX_BEACONBOX_CONFIG" <<EOC

[plugins.vmm.cloud-hypervisor]
path = "$BBX_OUTPUT_DIR/plugins/vmm-cloudhypervisor.so"
[plugins.vmm.cloud-hypervisor.config]
binary = "$vmm_binary"
EOC
grep -qx 'vmm = "cloud-hypervisor"' "$BBX_BEACONBOX_CONFIG" || { echo "FAIL: cannot switch vmm in $BBX_BEACONBOX_CONFIG" >&2; exit 1; }
echo "containerd: $("$BBX_CONTAINERD_BIN/containerd" --version); VMM: $vmm_binary"
bbx_import_demo_image
private_run="/proc/$BBX_CONTAINERD_PID/root/run"
sockets() { find "$private_run" "$BBX_DIR/beacon" -type s 2>/dev/null | sort; }
baseline_sockets=$(sockets)

assert_nothing_left() {
  local id=$1 extra pid
  extra=$(bbx_env_pids | grep -vx "$BBX_CONTAINERD_PID" || true)
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

# 1. Output, stderr and the exit code through ctr run --rm.
set +e
bbx_run streams1 /bin/sh -c 'echo out; cat /etc/hostname >/dev/null; echo err >&2; exit 7' \
  > "$BBX_DIR/out" 2> "$BBX_DIR/err"
status=$?
set -e
check "ctr run --rm exits 7 (got $status)" test "$status" -eq 7
check "stdout is 'out' (got '$(cat "$BBX_DIR/out")')" test "$(cat "$BBX_DIR/out")" = out
check "stderr is 'err' (got '$(head -c 300 "$BBX_DIR/err")')" test "$(cat "$BBX_DIR/err")" = err
assert_nothing_left streams1

# 2. A running container: the VMM below its shim, exec, then kill + delete.
if bbx_run_detached running1 /bin/sleep 600; then
  shim=$(bbx_shim_pid_of running1 || true)
  children=$(bbx_env_pids | { grep -vx -e "$BBX_CONTAINERD_PID" -e "${shim:-none}" || true; } | tr '\n' ' ')
  names=$(for pid in $children; do exe_of "$pid"; done | sort -u | tr '\n' ' ')
  want=$(basename "$vmm_binary")
  if [ -n "$shim" ] && grep -qw -- "$want" <<<"$names"; then
    pass "running1: shim $shim has $names below it"
  else
    fail "running1: shim '$shim', processes below it: '$names' (want $want)"
  fi
  out=$(timeout 120 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
          task exec --fifo-dir "$BBX_DIR/fifo" --exec-id e1 running1 /bin/sh -c 'echo exec-ok; exit 3' \
          </dev/null 2>&1) && status=0 || status=$?
  check "exec prints exec-ok (got '$out')" test "$out" = exec-ok
  check "exec's exit code 3 reaches ctr (got $status)" test "$status" -eq 3
  bbx_remove running1
  for pid in ${shim:-} $children; do
    gone "$pid" || fail "running1: pid $pid ($(exe_of "$pid")) outlived the delete"
  done
  assert_nothing_left running1
else
  fail "ctr run -d running1 failed: $(tail -5 "$BBX_DIR/containerd.log" | tr '\n' ' ' | cut -c1-600)"
fi

# 3. Back to vmm = "qemu" under the same containerd: the one line changes, the next
#    container's VM is QEMU's (no CH below its shim), exec and delete as before.
cp "$BBX_BEACONBOX_CONFIG" "$BBX_DIR/config-cloud-hypervisor.toml"
sed -i 's/^vmm = "cloud-hypervisor"$/vmm = "qemu"/' "$BBX_BEACONBOX_CONFIG"
changed=$(diff "$BBX_DIR/config-cloud-hypervisor.toml" "$BBX_BEACONBOX_CONFIG" | grep '^[<>]' | tr '\n' '|' || true)
check "switching back changes the vmm line only (diff: $changed)" \
  test "$changed" = '< vmm = "cloud-hypervisor"|> vmm = "qemu"|'
if bbx_run_detached qemu1 /bin/sleep 600; then
  shim=$(bbx_shim_pid_of qemu1 || true)
  children=$(bbx_env_pids | { grep -vx -e "$BBX_CONTAINERD_PID" -e "${shim:-none}" || true; } | tr '\n' ' ')
  names=$(for pid in $children; do exe_of "$pid"; done | sort -u | tr '\n' ' ')
  if [ -n "$shim" ] && grep -qw -- qemu-system-x86_64 <<<"$names" &&
     ! grep -qw -- "$(basename "$vmm_binary")" <<<"$names"; then
    pass "qemu1 (vmm = \"qemu\"): shim $shim has $names below it"
  else
    fail "qemu1 (vmm = \"qemu\"): shim '$shim', processes below it: '$names' (want qemu-system-x86_64, no $(basename "$vmm_binary"))"
  fi
  out=$(timeout 120 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
          task exec --fifo-dir "$BBX_DIR/fifo" --exec-id e1 qemu1 /bin/sh -c 'echo exec-ok; exit 3' \
          </dev/null 2>&1) && status=0 || status=$?
  check "qemu1: exec prints exec-ok (got '$out')" test "$out" = exec-ok
  check "qemu1: exec's exit code 3 reaches ctr (got $status)" test "$status" -eq 3
  bbx_remove qemu1
  for pid in ${shim:-} $children; do
    gone "$pid" || fail "qemu1: pid $pid ($(exe_of "$pid")) outlived the delete"
  done
  assert_nothing_left qemu1
else
  fail "ctr run -d qemu1 (vmm = \"qemu\") failed: $(tail -5 "$BBX_DIR/containerd.log" | tr '\n' ' ' | cut -c1-600)"
fi

if [ "$failures" -ne 0 ]; then
  echo "containerd log tail:" >&2
  grep -i 'beaconbox\|cloud' "$BBX_DIR/containerd.log" | tail -20 >&2 || true
fi
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
