#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here.
# shellcheck disable=SC2015
# The shim's authority over the VM (issue 10), through a private real containerd and
# ctr with QEMU guests, network mode "bridge" in the test's own network namespace:
#   1. the pid containerd reports (`ctr task ls`, `ctr task ps`) is the VMM's, a host
#      process: /proc/<pid>/exe is QEMU;
#   2. an exec whose start fails (`ctr task exec` of a missing binary) returns an
#      error instead of hanging;
#   3. kill -9 of a container whose guest never answers (its QEMU frozen with SIGSTOP:
#      no guest reply can come) completes: the shim stops the VM itself, the task
#      exits 137, `ctr task delete` finishes, nothing is left;
#   4. stdio that is not a FIFO (containerd's file:// and binary:// log URIs) is
#      refused at create with one line, and nothing is left;
#   5. SIGTERM to the serving shim (its pid from the bundle's shim.pid) tears down the
#      VM, virtiofsd and the network (TAP) before the shim exits.
#   authority_e2e.sh OUTPUT_DIR
set -euo pipefail
output=${1:?usage: authority_e2e.sh OUTPUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
export BBX_OUTPUT_DIR=$output BBX_RUNTIME=io.containerd.beaconbox.v1 BBX_NETWORK_MODE=bridge
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$here/../../scripts/lib/containerd-env.sh"
bbx_require_beaconbox "$output" plugins/net-bridge.so

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
exe_path() { readlink "/proc/$1/exe" 2>/dev/null || true; }
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }
gone() { local _; for _ in $(seq 300); do alive "$1" || return 0; sleep 0.1; done; return 1; }
bundle_of() { echo "$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/$1"; }
task_pid() { bbx_ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }
task_status() { bbx_ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }
# A stopped process (SIGSTOP) left behind by a failed check must not outlive the test.
frozen=""
bbx_on_stop() { local pid; for pid in $frozen; do kill -CONT "$pid" 2>/dev/null || true; done; }

bbx_env_start
bbx_import_demo_image
private_run="/proc/$BBX_CONTAINERD_PID/root/run"
sockets() { find "$private_run" "$BBX_DIR/beacon" -type s 2>/dev/null | sort; }
baseline_sockets=$(sockets)

# Nothing of container $1 may remain: no process but containerd, no TAP, lease, mount,
# VM directory, socket, bundle or container.
assert_nothing_left() {
  local id=$1 left="" _
  for _ in $(seq 100); do
    left=$(others || true)
    [ -z "$left" ] && break
    sleep 0.1
  done
  [ -z "$left" ] && pass "$id: no shim, VMM or virtiofsd process left" ||
    fail "$id: processes left: $(for p in $left; do echo -n "$p($(exe_of "$p")) "; done)"
  local taps mounts vm_dirs extra
  taps=$(in_netns ip -br link | grep '^beacon-' || true)
  [ -z "$taps" ] && pass "$id: no TAP left" || fail "$id: TAPs left: $taps"
  mounts=$(bbx_env_mounts || true)
  [ -z "$mounts" ] && pass "$id: no mount left" || fail "$id: mounts left: $mounts"
  vm_dirs=$(find "$BBX_DIR/beacon/run/vm" -mindepth 1 -maxdepth 1 2>/dev/null || true)
  [ -z "$vm_dirs" ] && pass "$id: no VM directory left" || fail "$id: VM directories left: $vm_dirs"
  extra=$(comm -13 <(echo "$baseline_sockets") <(sockets))
  [ -z "$extra" ] && pass "$id: no socket left" || fail "$id: sockets left: $extra"
  [ ! -e "$(bundle_of "$id")" ] && pass "$id: no bundle left" || fail "$id: bundle left: $(bundle_of "$id")"
  ! bbx_ctr containers ls -q | grep -qx "$id" && pass "$id: container removed" ||
    fail "$id: container still listed"
}

# 1. The reported pid is QEMU's.
if bbx_run_detached auth1 /bin/sleep 600; then
  pid=$(task_pid auth1)
  exe=$(exe_path "${pid:-0}")
  [[ $(basename "$exe") == qemu-system-* ]] && pass "ctr task ls: pid $pid is $exe" ||
    fail "ctr task ls: pid '$pid' is '$exe', want the VMM (qemu-system-*)"
  ps_pids=$(bbx_ctr task ps auth1 | awk 'NR > 1 {print $1}' | tr '\n' ' ')
  [ "$ps_pids" = "$pid " ] && pass "ctr task ps lists the VMM's pid $pid" ||
    fail "ctr task ps lists '$ps_pids', want '$pid '"

  # 2. An exec whose start fails returns (its Wait does not hang).
  set +e
  message=$(timeout 120 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
              task exec --fifo-dir "$BBX_DIR/fifo" --exec-id bad1 auth1 /no/such/binary < /dev/null 2>&1)
  status=$?
  set -e
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && grep -q /no/such/binary <<<"$message" &&
    pass "a failed exec start returns (ctr: $(tail -1 <<<"$message" | cut -c1-120))" ||
    fail "ctr task exec of a missing binary: status $status (124: hung), output: $message"
  # Its Wait returned: the exec is stopped and can be deleted (containerd did).
  grep -q "waiting for process 'bad1'" "$BBX_DIR/containerd.log" &&
    fail "the shim's exit waiter of bad1 ran although it never started" || true
  [ "$(task_status auth1)" = RUNNING ] && pass "the container runs on after the failed exec" ||
    fail "auth1 is '$(task_status auth1)' after the failed exec"

  # 3. kill -9 while the guest cannot answer: QEMU frozen. Its pid is looked up among
  #    the environment's processes, not taken from containerd.
  pid=$(for p in $(others); do [[ $(exe_of "$p") == qemu-system-* ]] && echo "$p"; done | head -1)
  if [ -n "$pid" ] && alive "$pid"; then
    shim=$(cat "$(bundle_of auth1)/shim.pid" 2>/dev/null || true)
    kill -STOP "$pid"
    frozen=$pid
    set +e
    message=$(timeout 120 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
                task kill -s KILL auth1 2>&1)
    status=$?
    set -e
    [ "$status" -eq 0 ] && pass "ctr task kill -s KILL returns with the guest frozen" ||
      fail "ctr task kill -s KILL with the guest frozen: status $status (124: hung): $message"
    state=""
    for _ in $(seq 300); do
      state=$(task_status auth1)
      [ "$state" = STOPPED ] && break
      sleep 0.1
    done
    [ "$state" = STOPPED ] && pass "the task is stopped" || fail "the task is '$state', want STOPPED"
    gone "$pid" && pass "the frozen VMM $pid was ended by the shim" ||
      fail "the frozen VMM $pid still runs"
    set +e
    message=$(timeout 120 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
                task delete auth1 2>&1)
    status=$?
    set -e
    [ "$status" -ne 124 ] && pass "ctr task delete finishes" ||
      fail "ctr task delete hung: $message"
    # ctr 1.6 warns "exit with non-zero exit code 137"; later ones exit with it.
    [ "$status" -eq 137 ] || grep -q "exit code 137" <<<"$message" && pass "the task exited 137" ||
      fail "ctr task delete: status $status, want the task's 137: $message"
    grep -q "did not report the exit of .*auth1.* within [0-9]* ms of SIGKILL" "$BBX_DIR/containerd.log" &&
      pass "the shim logged why it stopped the VM" || fail "no line of the shim about stopping the VM"
    [ -n "$shim" ] && gone "$shim" && pass "the shim $shim exited" || fail "the shim '$shim' still runs"
    frozen=""
  else
    fail "auth1: no live VMM pid to freeze"
  fi
  bbx_remove auth1
  assert_nothing_left auth1
else
  fail "ctr run -d auth1 failed"
fi

# 4. stdio that is not a FIFO: containerd's log URIs.
echo "#!/bin/sh" > "$BBX_DIR/logger"
chmod +x "$BBX_DIR/logger"
for uri in "file://$BBX_DIR/container.log" "binary://$BBX_DIR/logger"; do
  id="logs-${uri%%://*}"
  set +e
  message=$(bbx_ctr run -d --runtime "$BBX_RUNTIME" --log-uri "$uri" "$BBX_IMAGE" "$id" \
              /bin/true < /dev/null 2>&1)
  status=$?
  set -e
  [ "$status" -ne 0 ] && grep -q "is the log URI ${uri%%://*}://" <<<"$message" &&
    pass "--log-uri ${uri%%://*}:// is refused: $(grep -o 'stdout is the log URI.*' <<<"$message" | head -1 | cut -c1-160)" ||
    fail "--log-uri $uri: status $status, message: $message"
  bbx_remove "$id"
  assert_nothing_left "$id"
done

# 5. SIGTERM to the serving shim: the VM, virtiofsd and the TAP go before it exits.
if bbx_run_detached term1 /bin/sleep 600; then
  shim=$(cat "$(bundle_of term1)/shim.pid" 2>/dev/null || true)
  children=$(others | { grep -vx "${shim:-none}" || true; } | tr '\n' ' ')
  taps=$(in_netns ip -br link | grep '^beacon-' || true)
  if [ -n "$shim" ] && alive "$shim" && [ -n "$children" ] && [ -n "$taps" ]; then
    kill -TERM "$shim"
    gone "$shim" && pass "the shim $shim exited on SIGTERM" || fail "the shim $shim outlived SIGTERM"
    for pid in $children; do
      gone "$pid" && pass "pid $pid is gone with its shim" || fail "pid $pid outlived the shim's SIGTERM"
    done
    taps=$(in_netns ip -br link | grep '^beacon-' || true)
    [ -z "$taps" ] && pass "no TAP left after the shim's SIGTERM" ||
      fail "TAP left by the shim's SIGTERM (no teardown): $taps"
    [ ! -e "$(bundle_of term1)/beaconbox-state.json" ] &&
      pass "no state file left after the shim's SIGTERM" || fail "state file left: no teardown ran"
    # containerd's cleanup of a dead shim also releases the TAP and state: the
    # shim's own line tells that the shim tore down, not the default action of SIGTERM.
    grep -q "\[beaconbox-shim term1\] \[info\] signal 15: shutting down" "$BBX_DIR/containerd.log" &&
      pass "the shim tore down on SIGTERM (its log says so)" ||
      fail "no 'signal 15: shutting down' in the shim's log: SIGTERM killed it without teardown"
  else
    fail "term1: shim '$shim', children '$children', TAP '$taps'"
  fi
  bbx_remove term1
  assert_nothing_left term1
else
  fail "ctr run -d term1 failed"
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -60 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
echo "authority end-to-end: all checks passed"
