#!/usr/bin/env bash
# Container stdio through real containerd and ctr under flow control (issue 10): with
# runc's shim first (the baseline, in the same run), then beaconbox's.
#   1. ctr's stdout reader lags 8 s behind `head -c 20000000 /dev/zero`: all bytes arrive.
#   2. While the reader of a container's stdout lags, `ctr task ps`, `ctr task exec`
#      and `ctr task kill` (of an exec) on that container still answer (no
#      head-of-line blocking of the guest connection); the reader then gets every byte.
#   3. An exec leaving a background child that holds its stdout: the exec's delete
#      (ctr task exec deletes it once it exits) finishes.
#   4. stdin: 5,000,000 bytes piped into the container arrive whole.
#   io_relay_e2e.sh OUTPUT_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: io_relay_e2e.sh OUTPUT_DIR}
export BBX_CONTAINERD=system
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

bbx_require_beaconbox "$BBX_OUTPUT_DIR"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# Generous bounds for a loaded machine running the guest under TCG: these catch a
# hang, they do not measure anything.
ctl_timeout=120

bbx_env_start
bbx_import_demo_image

run_with() {  # run_with RUNTIME ID ARGS...: ctr run --rm, stdout to our stdout
  local runtime=$1 id=$2
  shift 2
  bbx_ctr run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "$id" "$@"
}

wait_running() {  # wait_running ID: until ctr lists the task as RUNNING
  local i
  for i in $(seq 600); do
    bbx_ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}' | grep -qx RUNNING && return 0
    sleep 0.2
  done
  return 1
}

for runtime in io.containerd.runc.v2 io.containerd.beaconbox.v1; do
  name=${runtime#io.containerd.}
  name=${name%%.*}

  # 1. A reader that sleeps 8 s before reading gets all 20,000,000 bytes.
  got=$(run_with "$runtime" "slow-$name" /bin/sh -c 'head -c 20000000 /dev/zero' </dev/null |
        (sleep 8; wc -c)) || true
  if [ "$got" = 20000000 ]; then
    pass "$name: a reader lagging 8 s gets all 20000000 bytes"
  else
    fail "$name: a reader lagging 8 s got '$got' of 20000000 bytes"
  fi
  bbx_remove "slow-$name"

  # 2. ps, exec and kill answer while the container's stdout reader lags (the
  #    container is blocked on its stdout meanwhile). The reader starts reading only
  #    once $gate exists; then all bytes arrive and the container ends by itself.
  id="lag-$name" gate="$BBX_DIR/gate-$name" count="$BBX_DIR/count-$name"
  rm -f "$gate" "$count"
  (run_with "$runtime" "$id" /bin/sh -c 'head -c 20000000 /dev/zero' </dev/null |
   (while [ ! -e "$gate" ]; do sleep 0.2; done; wc -c > "$count")) &
  pipeline=$!
  if wait_running "$id"; then
    sleep 5  # lets the output fill every buffer between the container and the reader
    if out=$(timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" \
               --namespace "$BBX_NS" task ps "$id" 2>&1); then
      pass "$name: ctr task ps answers while the stdout reader lags"
    else
      fail "$name: ctr task ps while the stdout reader lags: $out"
    fi
    if out=$(timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" \
               --namespace "$BBX_NS" task exec --fifo-dir "$BBX_DIR/fifo" --exec-id e1 "$id" \
               /bin/echo exec-ok </dev/null 2>&1) && [ "$out" = exec-ok ]; then
      pass "$name: ctr task exec answers while the stdout reader lags"
    else
      fail "$name: ctr task exec while the stdout reader lags: '$out'"
    fi
    if out=$(timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" \
               --namespace "$BBX_NS" task exec -d --fifo-dir "$BBX_DIR/fifo" --exec-id s1 "$id" \
               /bin/sleep 600 </dev/null 2>&1) &&
       out=$(timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" \
               --namespace "$BBX_NS" task kill -s KILL --exec-id s1 "$id" 2>&1); then
      pass "$name: ctr task kill answers while the stdout reader lags"
    else
      fail "$name: ctr task exec -d + kill while the stdout reader lags: $out"
    fi
  else
    fail "$name: $id never ran"
  fi
  touch "$gate"
  for _ in $(seq 600); do kill -0 "$pipeline" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pipeline" 2>/dev/null; then
    fail "$name: ctr run of $id did not end once the reader read"
    bbx_remove "$id"
  fi
  wait "$pipeline" || true
  got=$(cat "$count" 2>/dev/null || true)
  if [ "$got" = 20000000 ]; then
    pass "$name: the lagging reader then got all 20000000 bytes"
  else
    fail "$name: the lagging reader got '$got' of 20000000 bytes"
  fi
  bbx_remove "$id"

  # 3. An exec whose background child keeps its stdout open: ctr task exec returns
  #    once the exec exits (ctr deletes the exec, and that delete must not hang).
  id="bg-$name"
  if bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "$id" \
       /bin/sleep 600 </dev/null >/dev/null && wait_running "$id"; then
    if out=$(timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" \
               --namespace "$BBX_NS" task exec --fifo-dir "$BBX_DIR/fifo" --exec-id bg1 "$id" \
               /bin/sh -c 'sleep 600 & echo started' </dev/null 2>&1) && [ "$out" = started ]; then
      pass "$name: an exec leaving a child on its stdout is deleted"
    else
      fail "$name: ctr task exec with a background child holding stdout: status/output '$out'"
    fi
    if timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
         task kill -s KILL "$id" >/dev/null 2>&1; then
      pass "$name: the container with the background child is killed"
    else
      fail "$name: ctr task kill of $id"
    fi
  else
    fail "$name: $id never ran"
  fi
  bbx_remove "$id"

  # 4. stdin: what goes in comes out whole.
  got=$(head -c 5000000 /dev/zero |
        timeout 300 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
          run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "in-$name" \
          /bin/sh -c 'wc -c') || true
  got=$(tr -d ' \r' <<<"$got")
  if [ "$got" = 5000000 ]; then
    pass "$name: 5000000 bytes of stdin arrive"
  else
    fail "$name: stdin: the container counted '$got' of 5000000 bytes"
  fi
  bbx_remove "in-$name"
done

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -40 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
echo "io relay end-to-end: all checks passed"
