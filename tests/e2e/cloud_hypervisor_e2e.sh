#!/usr/bin/env bash
# The cloud-hypervisor VMM plugin through real containerd and ctr (issue 14), with
# vmm = "cloud-hypervisor" and nothing else changed in the config:
#   1. ctr run --rm of the demo image prints the container's output; its exit code
#      and stderr reach ctr.
#   2. a running container's shim has the VMM (and virtiofsd) below it; exec works.
#   3. kill + delete leave no process, socket, mount or file behind.
#   4. switched back to vmm = "qemu" (that line only) under the same containerd, the
#      next container runs in QEMU; exec and delete as before.
#   5. network.mode = "cni" (cni_e2e.sh's conflist: bridge + host-local + portmap +
#      firewall + tc-redirect-tap, in the test's own netns): the TAP lives in the
#      container's netns, the plugin opens it there and hands it to the VMM with
#      vm.add-net (SCM_RIGHTS); the VMM stays in the shim's netns. The container has
#      an address from host-local's range and reaches a TCP listener the test runs;
#      after delete no TAP, veth, lease, rule or netns is left.
# The VMM is the TEST DOUBLE fake-cloud-hypervisor (QEMU TCG underneath; its README)
# unless BBX_CLOUD_HYPERVISOR names a binary (the real-part variant,
# cloud_hypervisor_real_e2e.sh).
#   cloud_hypervisor_e2e.sh OUTPUT_DIR [system|1.7]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: cloud_hypervisor_e2e.sh OUTPUT_DIR [system|1.7]}
[ -d "$BBX_OUTPUT_DIR" ] && BBX_OUTPUT_DIR=$(cd "$BBX_OUTPUT_DIR" && pwd)  # BEACON_CNI_BIN_DIR
export BBX_CONTAINERD=${2:-system}
build_dir=${BEACONBOX_BUILD_DIR:-$repo/_build}
vmm_binary=${BBX_CLOUD_HYPERVISOR:-$build_dir/tests/fake-cloud-hypervisor}
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

bbx_require_beaconbox "$BBX_OUTPUT_DIR" plugins/vmm-cloudhypervisor.so plugins/net-cni.so cni/tc-redirect-tap
for plugin in bridge host-local portmap firewall; do
  [ -x "/usr/lib/cni/$plugin" ] ||
    { echo "FAIL: /usr/lib/cni/$plugin missing: apt-get install containernetworking-plugins" >&2; exit 1; }
done
command -v iptables-save >/dev/null || { echo "FAIL: iptables-save missing: apt-get install iptables" >&2; exit 1; }
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

# Step 5's CNI network (tests/e2e/lib.sh), its BEACON_CNI_* passed on by containerd.
bbx_cni_prepare "$BBX_OUTPUT_DIR"
bbx_on_stop() { bbx_cni_cleanup; }
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

# 5. network.mode = "cni" under vmm = "cloud-hypervisor": the TAP of tc-redirect-tap,
#    in the container's netns, reaches the VMM as a descriptor.
cp "$BBX_DIR/config-cloud-hypervisor.toml" "$BBX_BEACONBOX_CONFIG"
sed -i 's/^mode = "none"$/mode = "cni"/' "$BBX_BEACONBOX_CONFIG"
printf '\n[plugins.network.cni]\npath = "%s"\n' "$BBX_OUTPUT_DIR/plugins/net-cni.so" >> "$BBX_BEACONBOX_CONFIG"
grep -qx 'mode = "cni"' "$BBX_BEACONBOX_CONFIG" || fail "cannot switch network.mode in $BBX_BEACONBOX_CONFIG"
if bbx_run_detached cni1 /bin/sleep 600; then
  shim=$(bbx_shim_pid_of cni1 || true)
  children=$(bbx_env_pids | { grep -vx -e "$BBX_CONTAINERD_PID" -e "${shim:-none}" || true; } | tr '\n' ' ')
  vmm=""
  qemu=""
  for pid in $children; do
    case $(exe_of "$pid") in
      "$(basename "$vmm_binary")") vmm=$pid ;;
      qemu-system-x86_64) qemu=$pid ;;
    esac
  done
  netns_file=$BBX_DIR/beacon/run/netns/$BBX_NS--cni1
  in_mntns() { nsenter --mount="/proc/$BBX_CONTAINERD_PID/ns/mnt" -- "$@"; }
  container_netns=$(in_mntns stat -L -c %i "$netns_file" 2>/dev/null || echo none)
  vmm_netns=$(readlink "/proc/${vmm:-none}/ns/net" 2>/dev/null || echo "?")
  shim_netns=$(readlink "/proc/${shim:-none}/ns/net" 2>/dev/null || echo "!")
  check "cni1: the VMM ($vmm) is in the shim's netns ($shim_netns), not the container's (net:[$container_netns])" \
    test -n "$vmm" -a "$vmm_netns" = "$shim_netns" -a "$vmm_netns" != "net:[$container_netns]"
  links=$(in_mntns nsenter --net="$netns_file" ip -br link 2>&1 || true)
  links_ok=no
  grep -q '^tap0 ' <<<"$links" && grep -q '^eth0@' <<<"$links" && links_ok=yes
  check "cni1: tap0 (tc-redirect-tap) next to eth0 in the container's netns (links: $(tr '\n' ' ' <<<"$links"))" \
    test "$links_ok" = yes
  taps=$(find "/proc/${qemu:-none}/fd" -lname /dev/net/tun 2>/dev/null | wc -l)
  check "cni1: the VMM's QEMU ($qemu) holds the TAP descriptor ($taps /dev/net/tun)" test "$taps" -ge 1
  in_netns timeout 180 busybox nc -l -p 9090 > "$BBX_DIR/received" &
  listener=$!
  sleep 0.3
  out=$(timeout 120 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
          task exec --fifo-dir "$BBX_DIR/fifo" --exec-id e1 cni1 /bin/sh -c \
          "ip -4 -o addr show eth0; echo hello-from-ch-vm | nc $gateway 9090" </dev/null 2>&1) || true
  for _ in $(seq 50); do kill -0 "$listener" 2>/dev/null || break; sleep 0.1; done
  kill "$listener" 2>/dev/null || true
  wait "$listener" 2>/dev/null || true
  address=$(grep -o "inet $subnet_prefix\.[0-9]*" <<<"$out" | cut -d' ' -f2 || true)
  check "cni1: eth0 has $address from host-local's $subnet_prefix.0/24 (exec said: $(tr '\n' ' ' <<<"$out" | cut -c1-200))" \
    test -n "$address" -a -e "$cni_dir/ipam/$network/${address:-none}"
  check "cni1: TCP from the VM to the test's listener on $gateway:9090 (got '$(cat "$BBX_DIR/received")')" \
    test "$(cat "$BBX_DIR/received")" = hello-from-ch-vm
  bbx_remove cni1
  for pid in ${shim:-} $children; do
    gone "$pid" || fail "cni1: pid $pid ($(exe_of "$pid")) outlived the delete"
  done
  left=$(bbx_cni_leftovers "${address:-none}")
  check "cni1: after delete no lease, TAP, veth, netns, cache or rule (left: $(tr '\n' ' ' <<<"$left"))" test -z "$left"
  assert_nothing_left cni1
else
  fail "ctr run -d cni1 (network.mode = \"cni\") failed: $(tail -5 "$BBX_DIR/containerd.log" | tr '\n' ' ' | cut -c1-600)"
fi

if [ "$failures" -ne 0 ]; then
  echo "containerd log tail:" >&2
  grep -i 'beaconbox\|cloud' "$BBX_DIR/containerd.log" | tail -20 >&2 || true
fi
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
