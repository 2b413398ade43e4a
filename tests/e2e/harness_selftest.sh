#!/usr/bin/env bash
# Self-test of the end-to-end harness (scripts/lib/containerd-env.sh) with runc's
# shim, so it is known to work before beaconbox's shim runs under it: the image
# builds reproducibly and imports, ctr run gives the container's output, streams and
# exit status, the machine's /run/containerd is not used, and nothing is left after
# a normal stop, after a failing script and after SIGTERM.
#   harness_selftest.sh [system|1.7|2|CONTAINERD_BIN_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_CONTAINERD=${1:-system}
export BBX_RUNTIME=io.containerd.runc.v2
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_select_containerd_or_skip

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
# A pid is alive while it exists and is not a zombie (the machine's init may be slow
# to reap the shims reparented to it).
alive() { [ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }
gone() { local _; for _ in $(seq 50); do alive "$1" || return 0; sleep 0.1; done; return 1; }
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

host_run_before=$(find /run/containerd 2>/dev/null | sort || true)

# 1. The image is reproducible.
tmp=$(mktemp -d /tmp/bbx-selftest.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# The harness owns the EXIT trap while it runs; it calls this first.
bbx_on_stop() { [ -n "${keep_tmp:-}" ] || rm -rf "$tmp"; }
"$repo/scripts/build-demo-image.sh" "$tmp/a.tar" >/dev/null
sleep 1
"$repo/scripts/build-demo-image.sh" "$tmp/b.tar" >/dev/null
check "demo image is byte-for-byte reproducible" cmp -s "$tmp/a.tar" "$tmp/b.tar"

# 2. The environment starts and the image imports.
bbx_env_start
echo "containerd: $("$BBX_CONTAINERD_BIN/containerd" --version)"
bbx_import_demo_image
pass "image $BBX_IMAGE imported"
containerd_ns=$(readlink "/proc/$BBX_CONTAINERD_PID/ns/net")
check "containerd runs in its own network namespace" \
  test "$containerd_ns" != "$(readlink /proc/self/ns/net)"
check "containerd's namespace has only lo" \
  test "$(ip -n "$BBX_NETNS" -o link show | awk -F': ' '{print $2}')" = lo

# 3. Output, streams and exit status.
out=$(bbx_run hello1 /bin/echo hello)
check "ctr run --rm prints hello (got '$out')" test "$out" = hello
set +e
bbx_run streams1 /bin/sh -c 'echo out; echo err >&2; exit 7' >"$tmp/out" 2>"$tmp/err"
status=$?
set -e
check "ctr exits 7 (got $status)" test "$status" -eq 7
check "stdout is 'out' (got '$(cat "$tmp/out")')" test "$(cat "$tmp/out")" = out
check "stderr is 'err' (got '$(cat "$tmp/err")')" test "$(cat "$tmp/err")" = err
check "no container left after --rm" test -z "$(bbx_ctr containers ls -q)"
check "no shim left after --rm (got '$(bbx_shim_pids | tr '\n' ' ')')" test -z "$(bbx_shim_pids)"

# 4. A running container: its shim is found by pid, its rootfs is mounted only in
#    containerd's mount namespace, the machine's /run/containerd is not used.
bbx_run_detached sleeper1 /bin/sleep 600
shim=$(bbx_shim_pid_of sleeper1 || true)
check "the shim of a running container is found ($shim)" test -n "$shim"
task_pid=$(bbx_ctr task ls | awk '$1 == "sleeper1" {print $2}')
env_pids=$(bbx_env_pids | tr '\n' ' ')
check "the container's process $task_pid is one of the environment's ($env_pids)" \
  grep -qw "$task_pid" <<<"$env_pids"
check "its rootfs is mounted in containerd's namespace" \
  grep -q "/sleeper1/rootfs\$" <(bbx_env_mounts)
check "and not in the host's mount table" \
  bash -c "! grep -q '$BBX_DIR' /proc/self/mountinfo"
check "the machine's /run/containerd is unchanged" \
  test "$(find /run/containerd 2>/dev/null | sort || true)" = "$host_run_before"
# Left running on purpose: bbx_env_stop must take it down.
keep_tmp=1
bbx_env_stop
trap 'rm -rf "$tmp"' EXIT
left=$(bbx_env_leftovers)
check "nothing left after stop with a container running${left:+: $left}" test -z "$left"
for pid in $shim $task_pid; do
  check "pid $pid is gone" gone "$pid"
done

# 5. A script that fails, and one that is sent SIGTERM, with a container running:
#    the trap still removes everything.
# child.sh REPO MODE IDFILE: a harness user that dies while a container runs.
cat > "$tmp/child.sh" <<'EOS'
set -euo pipefail
source "$1/scripts/lib/containerd-env.sh"
bbx_on_stop() { [ -z "${sleeper:-}" ] || kill "$sleeper" 2>/dev/null || true; }
bbx_env_start
bbx_import_demo_image
bbx_run_detached victim /bin/sleep 600
echo "$BBX_DIR $BBX_NETNS $BBX_NS $BBX_MNTNS_ID $BBX_NETNS_ID $BBX_CONTAINERD_PID $(bbx_shim_pid_of victim)" > "$3.tmp"
mv "$3.tmp" "$3"
if [ "$2" = fail ]; then false; fi
sleep 600 &
sleeper=$!
wait "$sleeper"
EOS
check_child_left_nothing() {  # MODE IDFILE
  local mode=$1 ids=$2 shim
  read -r BBX_LAST_DIR BBX_LAST_NETNS BBX_LAST_NS BBX_LAST_MNTNS_ID BBX_LAST_NETNS_ID \
    BBX_LAST_CONTAINERD_PID shim < "$ids"
  left=$(bbx_env_leftovers)
  check "$mode: nothing left${left:+: $left}" test -z "$left"
  check "$mode: its shim ($shim) is gone" gone "${shim:-no-shim-recorded}"
}

set +e
bash "$tmp/child.sh" "$repo" fail "$tmp/ids-fail" >"$tmp/child-fail.log" 2>&1
status=$?
set -e
check "a failing harness script exits non-zero ($status)" test "$status" -ne 0
check_child_left_nothing "failing script" "$tmp/ids-fail"

bash "$tmp/child.sh" "$repo" term "$tmp/ids-term" >"$tmp/child-term.log" 2>&1 &
child_pid=$!
for _ in $(seq 300); do [ -e "$tmp/ids-term" ] && break; sleep 0.1; done
kill -TERM "$child_pid"
set +e
wait "$child_pid"
status=$?
set -e
check "SIGTERM ends the harness script ($status)" test "$status" -eq 143
check_child_left_nothing "SIGTERM" "$tmp/ids-term"

check "the machine's /run/containerd is still unchanged" \
  test "$(find /run/containerd 2>/dev/null | sort || true)" = "$host_run_before"
rm -rf "$tmp"
if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "harness self-test passed"
