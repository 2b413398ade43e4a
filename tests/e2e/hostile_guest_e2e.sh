#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here.
# shellcheck disable=SC2015
# A hostile guest cannot hurt the host (issue 10, deliverable 6). One private containerd
# whose beaconbox config boots the TEST ONLY hostile initrd
# (tests/guest/hostile_agent: vminitd's image with a misbehaving agent as /init); the
# container id picks the misbehaviour. For each scenario, through real containerd + ctr:
#   - `ctr run -d` creates and starts the container;
#   - the shim's RSS stays under RSS_BOUND_KIB while the guest misbehaves (VmRSS sampled
#     from /proc/<shim>/status, and the shim's VmHWM peak);
#   - `ctr task kill -s SIGKILL` and `ctr task delete` finish within KILL_BOUND_S and
#     DELETE_BOUND_S, the exit containerd is told is 137 (runc's for a killed task) or,
#     for bogus exit statuses, at least a real one (0..255);
#   - nothing is left: no shim, QEMU or virtiofsd process, mount, VM directory, socket,
#     bundle or state file (network mode none: no TAP exists to leak).
# Scenarios (the agent's header comment has the details):
#   flood-1    ReadOutput answered with almost 4 MiB (4 x what the shim asks), endless
#              4 MiB data frames on the ReadOutput ids and the pending Wait's stream id,
#              frames announcing 4 MiB + 1 and 64 MiB
#   garbage-1  a valid prefix, then random bytes without end
#   nowait-1   acknowledges Kill, never answers Wait, ignores PowerOff
#   bogus-pid0, bogus-pid1, bogus-pidmax
#              responses on stream ids never asked for, pid 0 / 1 / 4294967295, exit
#              status 4294967295, Exec answered with an almost 4 MiB multi-line error
#              with escape sequences:
#              containerd must see a host pid of the container's own, and `ctr task
#              exec` one bounded line
#   console-1  writes to the serial console without end: the console log stays under
#              the configured cap (vm-qemu console_log_max_bytes), when the build has one
#   hostile_guest_e2e.sh OUTPUT_DIR
set -euo pipefail
output=${1:?usage: hostile_guest_e2e.sh OUTPUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
hostile_initrd="$output/beaconbox-hostile-test-initrd"
export BBX_OUTPUT_DIR=$output BBX_RUNTIME=io.containerd.beaconbox.v1 BBX_NETWORK_MODE=none
export BBX_INITRD_PATH=$hostile_initrd
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
missing=$(bbx_beaconbox_missing "$output")
[ -e "$hostile_initrd" ] || missing+=" $hostile_initrd (target hostile_guest_image)"
if [ -n "${missing// /}" ]; then
  echo "FAIL: beaconbox is not built in $output (run make); missing: $(tr '\n' ' ' <<<"$missing")" >&2
  exit 1
fi

# The shim's memory bound. What a guest can make the shim hold: one frame being read
# (at most the 4 MiB maximum; larger ones are skipped, never allocated) and, per
# output stream of the init process (stdout, stderr), one ReadOutput answer of at
# most 4 MiB in flight (stdio is pulled, one call per stream) held up to three times
# (frame, parsed message, the copy being written to the FIFO): 4 + 2 x 12 = 28 MiB;
# with a server stream instead, its queue of unread messages bounded at 4 x 4 MiB
# (2 x 16 + 4 + 2 x 4 = 44 MiB). Above a quiet shim's ~10 MiB that stays under 64 MiB
# with room for the allocator's slack. With the bounds lifted (the stream queues of
# common/ttrpc made unbounded) this test measured 329 MiB; the issue's probe reached
# 1.2 GiB with 300 frames on a pending Wait.
RSS_BOUND_KIB=${RSS_BOUND_KIB:-65536}
# Generous hang detectors, not timing assertions: under TCG and a loaded machine a guest
# call may take seconds. The shim's own guest call deadline is 10 s.
KILL_BOUND_S=${KILL_BOUND_S:-60}
DELETE_BOUND_S=${DELETE_BOUND_S:-90}
CONSOLE_CAP_BYTES=1048576

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
kib_of() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status" 2>/dev/null || true; }
now_ms() { date +%s%3N; }

# The console log cap (branch sealed) is tested only when the build knows the key.
console_cap_known=false
if grep -q 'console_log_max_bytes' "$repo/config/config.toml"; then console_cap_known=true; fi

events_pid=""
bbx_on_stop() {
  if [ -n "$events_pid" ]; then kill "$events_pid" 2>/dev/null || true; wait "$events_pid" 2>/dev/null || true; fi
}

bbx_env_start
if $console_cap_known; then
  printf '\n[plugins.vmm.qemu.config]\nconsole_log_max_bytes = %s\n' "$CONSOLE_CAP_BYTES" >> "$BBX_BEACONBOX_CONFIG"
fi
bbx_import_demo_image
private_run="/proc/$BBX_CONTAINERD_PID/root/run"
sockets() { find "$private_run" "$BBX_DIR/beacon" -type s 2>/dev/null | sort; }
baseline_sockets=$(sockets)
bbx_ctr events > "$BBX_DIR/events.log" 2>&1 &
events_pid=$!

# Exit status containerd was told for container $1 (TaskExit of its init); "" if none.
# JSON leaves a 0 out.
exit_status_of() {
  local line
  line=$(grep '/tasks/exit' "$BBX_DIR/events.log" | grep "\"container_id\":\"$1\"" |
         grep "\"id\":\"$1\"" | tail -1 || true)
  [ -n "$line" ] || return 0
  grep -o '"exit_status":[0-9]*' <<<"$line" | cut -d: -f2 | grep . || echo 0
}

# Removes whatever container $1 left after a failed check, by pid, so the next
# scenario starts clean (the failure is already counted).
force_cleanup() {
  local id=$1 pid
  timeout 30 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
    task delete -f "$id" > /dev/null 2>&1 || true
  for pid in $(others); do kill -KILL "$pid" 2>/dev/null || true; done
  timeout 30 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
    task delete "$id" > /dev/null 2>&1 || true
  timeout 30 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
    container rm "$id" > /dev/null 2>&1 || true
}

# Samples the shim's VmRSS every 0.2 s for $2 seconds; prints the largest (KiB).
sample_rss() {
  local shim=$1 seconds=$2 max=0 rss end
  end=$(($(now_ms) + seconds * 1000))
  while [ "$(now_ms)" -lt "$end" ]; do
    rss=$(kib_of "$shim" VmRSS)
    [ -z "$rss" ] && break
    [ "$rss" -gt "$max" ] && max=$rss
    sleep 0.2
  done
  echo "$max"
}

assert_nothing_left() {
  local id=$1 bundle="$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/$1" left _ extra
  left=""
  for _ in $(seq 100); do
    left=$(others)
    [ -z "$left" ] && break
    sleep 0.1
  done
  [ -z "$left" ] && pass "$id: no shim, QEMU or virtiofsd process left" ||
    fail "$id: processes left: $(for p in $left; do echo -n "$p($(exe_of "$p")) "; done)"
  extra=$(bbx_env_mounts || true)
  [ -z "$extra" ] && pass "$id: no mount left" || fail "$id: mounts left: $extra"
  extra=$(find "$BBX_DIR/beacon/run/vm" -mindepth 1 -maxdepth 1 2>/dev/null || true)
  [ -z "$extra" ] && pass "$id: no VM directory left" || fail "$id: VM directories left: $extra"
  extra=$(comm -13 <(echo "$baseline_sockets") <(sockets))
  [ -z "$extra" ] && pass "$id: no socket left" || fail "$id: sockets left: $extra"
  extra=$(find "$BBX_DIR/beacon/run" "$BBX_DIR/beacon/state" "$private_run" -name "*$id*" 2>/dev/null || true)
  [ -z "$extra" ] && [ ! -e "$bundle" ] && pass "$id: no bundle, state file or socket named after it" ||
    fail "$id: files left: $extra $( [ -e "$bundle" ] && echo "$bundle")"
  bbx_ctr containers ls -q | grep -qx "$id" && fail "$id: container still listed"
  return 0
}

# scenario ID SAMPLE_SECONDS WANT_EXIT(137|range): the common part of every scenario;
# scenario-specific checks go in check_<prefix> (called while the guest misbehaves).
rss_report=()
scenario() {
  local id=$1 seconds=$2 want_exit=$3 shim rss hwm started elapsed status out deleted
  echo "--- $id"
  if ! out=$(timeout 300 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
               run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" "$BBX_IMAGE" "$id" \
               /bin/sleep 600 < /dev/null 2>&1); then
    fail "$id: ctr run -d failed: $(tail -c 600 <<<"$out")"
    force_cleanup "$id"
    assert_nothing_left "$id"
    return 0
  fi
  pass "$id: ctr run -d created and started the container"
  shim=$(bbx_shim_pid_of "$id" || true)
  # A reader that lags: the container's stdout FIFO held open, never read, while the
  # RSS is sampled, so what the shim holds for stdout is at its bound (the flood starts
  # 2 s after Start). Without it the shim drops the output as fast as it comes.
  local fifo lagging_reader=""
  fifo=$(find "$BBX_DIR/fifo" -path "*$id-stdout" -type p 2>/dev/null | head -1)
  if [ -n "$fifo" ]; then exec {lagging_reader}<>"$fifo"; fi
  if [ -z "$shim" ]; then
    fail "$id: no shim serving it"
  else
    rss=$(sample_rss "$shim" "$seconds")
    # VmHWM, the kernel's peak, is only synced now and then: the larger of the two.
    hwm=$(kib_of "$shim" VmHWM)
    [ -n "$hwm" ] && [ "$hwm" -lt "$rss" ] && hwm=$rss
    rss_report+=("$id: shim VmRSS max $rss KiB (sampled ${seconds} s), VmHWM ${hwm:-?} KiB")
    [ -n "$hwm" ] && [ "$hwm" -le "$RSS_BOUND_KIB" ] && [ "$rss" -le "$RSS_BOUND_KIB" ] &&
      pass "$id: shim RSS max $rss KiB, peak $hwm KiB <= $RSS_BOUND_KIB KiB" ||
      fail "$id: shim RSS max $rss KiB, peak ${hwm:-?} KiB: over the bound of $RSS_BOUND_KIB KiB (or the shim died)"
  fi
  if [ -n "$lagging_reader" ]; then exec {lagging_reader}<&-; fi
  local check="check_${id%%-*}"
  if declare -F "$check" > /dev/null; then "$check" "$id" "$shim"; fi

  started=$(now_ms)
  set +e
  out=$(timeout "$KILL_BOUND_S" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
          task kill -s SIGKILL "$id" 2>&1)
  status=$?
  set -e
  elapsed=$(($(now_ms) - started))
  if [ "$status" -eq 124 ]; then
    fail "$id: ctr task kill -s SIGKILL did not return within $KILL_BOUND_S s"
  else
    # A task the guest already made exit may refuse the kill ("not found"): still done.
    pass "$id: ctr task kill returned in $elapsed ms (status $status${out:+: $(head -c 200 <<<"$out")})"
  fi

  started=$(now_ms)
  deleted=false
  while [ $(($(now_ms) - started)) -lt $((DELETE_BOUND_S * 1000)) ]; do
    if out=$(timeout "$DELETE_BOUND_S" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" \
               --namespace "$BBX_NS" task delete "$id" 2>&1) ||
       ! bbx_ctr task ls -q 2>/dev/null | grep -qx "$id"; then
      deleted=true
      break
    fi
    sleep 0.5
  done
  elapsed=$(($(now_ms) - started))
  $deleted && pass "$id: ctr task delete finished in $elapsed ms after the kill" ||
    fail "$id: ctr task delete did not succeed within $DELETE_BOUND_S s: $(head -c 300 <<<"$out")"

  local exit_status
  for _ in $(seq 20); do
    exit_status=$(exit_status_of "$id")
    [ -n "$exit_status" ] && break
    sleep 0.2
  done
  if [ -z "$exit_status" ]; then
    fail "$id: containerd saw no exit of the task"
  elif [ "$want_exit" = range ]; then
    [ "$exit_status" -le 255 ] && pass "$id: exit status $exit_status is a real one (0..255)" ||
      fail "$id: containerd was told exit status $exit_status (want 0..255)"
  else
    [ "$exit_status" -eq "$want_exit" ] && pass "$id: exit status $exit_status" ||
      fail "$id: containerd was told exit status $exit_status (want $want_exit)"
  fi
  $deleted || force_cleanup "$id"
  bbx_ctr container rm "$id" > /dev/null 2>&1 || true
  assert_nothing_left "$id"
}

# bogus-*: the pid containerd shows must be a host process of this container (the
# guest's pid means nothing on the host; 0, 1 and 4294967295 least of all), and the
# almost 4 MiB multi-line error must reach ctr as one bounded line.
check_bogus() {
  local id=$1 shim=$2 pid out lines bytes
  pid=$(bbx_ctr task ls 2>/dev/null | awk -v id="$id" '$1 == id {print $2}')
  if [ -n "$pid" ] && [ "$pid" != 0 ] && [ "$pid" != 1 ] && [ "$pid" != 4294967295 ] &&
     others | grep -qx "$pid"; then
    pass "$id: containerd shows host pid $pid ($(exe_of "$pid")), not the guest's"
  else
    fail "$id: containerd shows pid '${pid}', not a host process of this container (shim $shim)"
  fi
  set +e
  out=$(timeout 60 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
          task exec --fifo-dir "$BBX_DIR/fifo" --exec-id huge-error "$id" /bin/true < /dev/null 2>&1)
  set -e
  lines=$(printf '%s' "$out" | grep -c '' || true)
  bytes=${#out}
  [ "$lines" -le 1 ] && [ "$bytes" -le 4096 ] && ! LC_ALL=C grep -q '[^[:print:]]' <<<"$out" &&
    grep -q 'hostile guest error' <<<"$out" &&
    pass "$id: the guest's huge error reached ctr as one printable line of $bytes bytes" ||
    fail "$id: ctr task exec printed $lines lines, $bytes bytes (want the guest's error as one printable line, <= 4096 bytes): $(head -c 200 <<<"$out" | LC_ALL=C tr -c '[:print:]' '?')"
}

# console-*: the VM's console log (and its one rotation) stays under the cap.
check_console() {
  local id=$1 size
  size=$(find "$BBX_DIR/beacon/log" -name "*$id*" -type f -printf '%s\n' 2>/dev/null |
         awk '{s += $1} END {print s + 0}')
  if $console_cap_known; then
    # The log and its one rotation, each at most the cap.
    [ "$size" -le $((2 * CONSOLE_CAP_BYTES)) ] &&
      pass "$id: console logs hold $size bytes, cap $CONSOLE_CAP_BYTES (x2 with the rotation)" ||
      fail "$id: console logs hold $size bytes, over 2 x $CONSOLE_CAP_BYTES"
  else
    echo "note: $id: console logs hold $size bytes; no console_log_max_bytes in this build, not checked"
  fi
}

# id, seconds of RSS sampling while the guest misbehaves, the exit status to see.
# flood-1's 30 s: with the queue bounds lifted the shim grew past 300 MiB in 60 s, so
# 30 s is far over the bound too; bounded, it peaks at ~21 MiB well before (was 60 s).
# HOSTILE_ONLY="id ..." runs a subset (when debugging one scenario).
scenarios=(
  "flood-1 30 137"
  "garbage-1 10 137"
  "nowait-1 5 137"
  "bogus-pid0 5 range"
  "bogus-pid1 5 range"
  "bogus-pidmax 5 range"
  "console-1 20 137"
)
for entry in "${scenarios[@]}"; do
  read -r id seconds want_exit <<<"$entry"
  if [ -n "${HOSTILE_ONLY:-}" ] && ! grep -qw -- "$id" <<<"$HOSTILE_ONLY"; then continue; fi
  scenario "$id" "$seconds" "$want_exit" < /dev/null
done

echo "shim memory (bound $RSS_BOUND_KIB KiB):"
printf '  %s\n' "${rss_report[@]}"
if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -60 "$BBX_DIR/containerd.log" | cut -c1-400 >&2
  exit 1
fi
echo "hostile guest end-to-end: every scenario stayed bounded and left nothing behind"
