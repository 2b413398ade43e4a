#!/usr/bin/env bash
# The Task API a containerd user reaches for (issue 11, items 1, 2 and 9): through
# real containerd and ctr, runc's shim first (its answers are the expected ones, in
# the same run), then beaconbox's, several checks per container to keep VM boots few.
#   1. ctr task exec: stdout, stderr and the exit status as runc's; stdin and its end
#      (CloseIO); eight execs at once on one task; exec -t (a terminal): output, exit
#      status, `stty size` following the host terminal (ResizePty), also when the
#      window changes; ResizePty of processes without a terminal succeeds.
#   2. exec into a task whose init exited: runc's error.
#   3. A task created, never started, SIGKILLed: /tasks/exit, Wait and Delete report
#      137; created with runc's shim options, the shim is in their ShimCgroup.
#   4. The shim's OOM score is containerd's + 1.
#   5. OCI hooks prestart, createRuntime, poststart, poststop run on the host with the
#      state on stdin; beaconbox's state pid is the VM's (its VMM process).
# Task API calls ctr cannot make go through containerd's Go client (task_client/).
#   task_api_e2e.sh OUTPUT_DIR [system|1.7|2|CONTAINERD_BIN_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: task_api_e2e.sh OUTPUT_DIR [system|1.7|2|CONTAINERD_BIN_DIR]}
export BBX_CONTAINERD=${2:-system}
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

bbx_require_beaconbox "$BBX_OUTPUT_DIR"
bbx_select_containerd_or_skip
# Before containerd starts: the first build of the Go client takes minutes.
task_client=$("$here/task_client/build.sh") || { echo "FAIL: task_client did not build" >&2; exit 1; }

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"
# Bounds that only catch a hang on a loaded machine running the guest under TCG.
ctl_timeout=300

# The group named in the shim options: in the cgroup v2 root, else (v1, hybrid) in
# every v1 hierarchy, as runc's shim wants it.
shim_cgroup=/bbx-task-api-$$
cgroup_dirs=()
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  cgroup_dirs=("/sys/fs/cgroup$shim_cgroup")
else
  for hierarchy in /sys/fs/cgroup/*; do
    [ -L "$hierarchy" ] || [ "${hierarchy##*/}" = unified ] || [ ! -e "$hierarchy/cgroup.procs" ] ||
      cgroup_dirs+=("$hierarchy$shim_cgroup")
  done
fi
bbx_on_stop() { local dir; for dir in "${cgroup_dirs[@]}"; do rmdir "$dir" 2>/dev/null || true; done; }
bbx_env_start
bbx_import_demo_image
mkdir "${cgroup_dirs[@]}"
for dir in "${cgroup_dirs[@]}"; do
  # A v1 cpuset group takes no process before it has cpus and mems (its parent's).
  if [ -e "$dir/cpuset.cpus" ]; then
    cat "$(dirname "$dir")/cpuset.cpus" > "$dir/cpuset.cpus"
    cat "$(dirname "$dir")/cpuset.mems" > "$dir/cpuset.mems"
  fi
done
# A score of containerd's own that no shim has by chance: each must get it + 1.
# (Raised: lowering it needs CAP_SYS_RESOURCE, which a CI container may lack.)
containerd_oom=$(( $(cat "/proc/$BBX_CONTAINERD_PID/oom_score_adj") + 100 ))
[ "$containerd_oom" -le 999 ] || containerd_oom=999
echo "$containerd_oom" > "/proc/$BBX_CONTAINERD_PID/oom_score_adj"

ctr_t() { timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" "$@"; }
exec_in() {  # exec_in ID EXEC_ID CMD...: ctr task exec, stdin from /dev/null
  local id=$1 exec_id=$2
  shift 2
  ctr_t task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "$exec_id" "$id" "$@" </dev/null
}
client() { timeout "$ctl_timeout" "$task_client" "$BBX_SOCK" "$BBX_NS" "$@"; }
wait_status() {  # wait_status ID STATUS: until ctr lists the task so
  local i
  for i in $(seq 1200); do
    bbx_ctr task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}' | grep -qx "$2" && return 0
    sleep 0.25
  done
  return 1
}
# Compares beaconbox's answer KEY with runc's (recorded in $BBX_DIR/expect/KEY).
expect_dir="$BBX_DIR/expect"
mkdir -p "$expect_dir"
same_as_runc() {  # same_as_runc NAME KEY WHAT VALUE [RUNC_MUST_SAY]
  local name=$1 key=$2 what=$3 value=$4
  if [ "$name" = runc ]; then
    printf '%s' "$value" > "$expect_dir/$key"
    if [ $# -ge 5 ] && [ "$value" != "$5" ]; then
      fail "runc: $what: '$(tr '\n' '|' <<<"$value")', expected '$(tr '\n' '|' <<<"$5")'"
    else
      pass "runc: $what: $(head -c 200 <<<"$value" | tr '\n' '|')"
    fi
  elif [ "$value" = "$(cat "$expect_dir/$key")" ]; then
    pass "$name: $what as runc's: $(head -c 200 <<<"$value" | tr '\n' '|')"
  else
    fail "$name: $what: '$(tr '\n' '|' <<<"$value")', runc's: '$(tr '\n' '|' < "$expect_dir/$key")'"
  fi
}
hook="$BBX_DIR/hook.sh"
cat > "$hook" <<'EOH'
#!/bin/sh
# hook.sh KIND DIR: the state from stdin to DIR/KIND.json, and what its pid runs.
state=$(cat)
printf '%s\n' "$state" > "$2/$1.json"
pid=$(printf '%s' "$state" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || exe=none
printf '%s\n' "${exe##*/}" > "$2/$1.exe"
EOH
chmod 0755 "$hook"

for runtime in io.containerd.runc.v2 io.containerd.beaconbox.v1; do
  name=${runtime#io.containerd.}
  name=${name%%.*}
  # --- one long-running container for every exec check
  id="t-$name"
  if ! bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "$id" \
         /bin/sleep 3600 </dev/null >/dev/null || ! wait_status "$id" RUNNING; then
    fail "$name: $id never ran"
    bbx_remove "$id"
    continue
  fi
  out=$(exec_in "$id" e1 /bin/echo hi 2>&1) && status=0 || status=$?
  same_as_runc "$name" echo "exec /bin/echo hi (output, status)" "$out $status" "hi 0"

  exec_in "$id" e2 /bin/sh -c 'echo out; echo err >&2; exit 3' \
    >"$BBX_DIR/e2.out" 2>"$BBX_DIR/e2.err" && status=0 || status=$?
  same_as_runc "$name" streams "exec stdout, stderr, status" \
    "$(cat "$BBX_DIR/e2.out") / $(cat "$BBX_DIR/e2.err") / $status" "out / err / 3"

  out=$(echo hi | ctr_t task exec --fifo-dir "$BBX_DIR/fifo" --exec-id i1 "$id" /bin/cat 2>&1) &&
    status=0 || status=$?
  same_as_runc "$name" stdin "echo hi | exec cat (stdin, its end)" "$out $status" "hi 0"
  out=$(printf 'a\nb\nc\n' |
        ctr_t task exec --fifo-dir "$BBX_DIR/fifo" --exec-id i2 "$id" /bin/wc -l 2>&1) &&
    status=0 || status=$?
  same_as_runc "$name" stdin-eof "printf 'a\\nb\\nc\\n' | exec wc -l (EOF ends it)" \
    "$(tr -d ' ' <<<"$out") $status" "3 0"

  eight_execs() {  # eight_execs ROUND: "output:status " of each
    local round=$1 n pids=() many="" status
    for n in 1 2 3 4 5 6 7 8; do
      exec_in "$id" "p$round$n" /bin/sh -c "echo exec-$n; exit $n" >"$BBX_DIR/p$round$n.out" 2>&1 &
      pids+=($!)
    done
    for n in 1 2 3 4 5 6 7 8; do
      wait "${pids[$((n - 1))]}" && status=0 || status=$?
      many+="$(cat "$BBX_DIR/p$round$n.out"):$status "
    done
    printf '%s' "$many"
  }
  eight="exec-1:1 exec-2:2 exec-3:3 exec-4:4 exec-5:5 exec-6:6 exec-7:7 exec-8:8 "
  many=$(eight_execs a)
  # runc's shim (the baseline) loses an exec's output now and then on a loaded machine
  # (CI saw ':1 exec-2:2 ...' under containerd 1.7): it gets a second round; beaconbox
  # gets one.
  if [ "$name" = runc ] && [ "$many" != "$eight" ]; then
    echo "note: runc: eight execs at once gave '$many'; runc's shim lost output, a second round"
    many=$(eight_execs b)
  fi
  same_as_runc "$name" many "eight execs at once (output:status each)" "$many" "$eight"

  # ctr sets the exec's window size right after the process started (both runtimes):
  # the process waits for it before it reads it.
  # shellcheck disable=SC2016  # expanded by the container's shell
  wait_for_size='i=0; while [ "$(/bin/busybox stty size 2>/dev/null)" != "30 100" ] && [ $i -lt 240 ]; do sleep 0.25; i=$((i+1)); done'
  out=$(python3 "$here/pty_run.py" 100 30 -- "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" \
          --namespace "$BBX_NS" task exec -t --fifo-dir "$BBX_DIR/fifo" --exec-id t1 "$id" \
          /bin/busybox sh -c "$wait_for_size"'; /bin/busybox stty size; echo tty-ok; exit 4' 2>&1) &&
    status=0 || status=$?
  same_as_runc "$name" tty "exec -t in a 100x30 terminal (stty size, output, status)" \
    "$(tr -d '\r' <<<"$out") $status" "30 100
tty-ok 4"

  # The window changes once the exec printed its first size: the second follows.
  # shellcheck disable=SC2016  # expanded by the container's shell
  out=$(python3 "$here/pty_run.py" 100 30 --resize-on "30 100" 120 40 -- \
          "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
          task exec -t --fifo-dir "$BBX_DIR/fifo" --exec-id t2 "$id" /bin/busybox sh -c \
          "$wait_for_size"'; stty=/bin/busybox; $stty stty size; i=0
           while [ "$($stty stty size)" = "30 100" ] && [ $i -lt 240 ]; do sleep 0.5; i=$((i+1)); done
           $stty stty size' 2>&1) && status=0 || status=$?
  same_as_runc "$name" resize "exec -t, window 100x30 then 120x40 (stty size twice)" \
    "$(tr -d '\r' <<<"$out") $status" "30 100
40 120 0"

  out=$(client resize-noterm "$id" 2>&1) || true
  same_as_runc "$name" resize-noterm "ResizePty of the init and an exec without a terminal" "$out"

  if shim=$(bbx_shim_pid_of "$id"); then
    same_as_runc "$name" oom "the shim's oom_score_adj (containerd's is $containerd_oom)" \
      "$(cat "/proc/$shim/oom_score_adj")"
  else
    fail "$name: no shim found for $id"
  fi
  bbx_remove "$id"

  # --- exec into a task whose init exited
  id="x-$name"
  if bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "$id" \
       /bin/true </dev/null >/dev/null && wait_status "$id" STOPPED; then
    out=$(exec_in "$id" x1 /bin/true 2>&1) && status=0 || status=$?
    same_as_runc "$name" exec-stopped "exec into a task whose init exited (error, status)" \
      "$out $status"
  else
    fail "$name: $id never stopped"
  fi
  bbx_remove "$id"

  # --- created, never started, killed; with runc's shim options naming a cgroup
  id="k-$name"
  coproc created { client kill-created "$BBX_IMAGE" "$runtime" "$id" "$shim_cgroup" 2>&1; }
  # Our own copies: bash drops the coproc's array once it exits.
  exec {from_client}<&"${created[0]}" {to_client}>&"${created[1]}"
  line=""
  while IFS= read -r -t "$ctl_timeout" line <&"$from_client"; do
    [ "$line" = created ] && break
    echo "  task_client: $line"
  done
  if [ "$line" = created ] && shim=$(bbx_shim_pid_of "$id"); then
    same_as_runc "$name" shim-cgroup "the shim's hierarchies in ShimCgroup" \
      "$(awk -F: -v cg="$shim_cgroup" '$3 == cg {print $2}' "/proc/$shim/cgroup" | sort | tr '\n' ' ')"
  else
    fail "$name: task_client did not create $id ('$line')"
  fi
  # The client may be gone (it failed): no SIGPIPE for this shell.
  (trap '' PIPE; echo go >&"$to_client") 2>/dev/null || true
  out=$(cat <&"$from_client") || true
  exec {from_client}<&- {to_client}>&-
  # shellcheck disable=SC2154  # set by coproc
  wait "$created_PID" || true
  same_as_runc "$name" kill-created "kill of a created task: exit event, Wait, Delete" "$out" \
    "$(printf 'kill: ok\nwait: 137\nexit event: 137\ndelete: 137')"
  bbx_remove "$id"

  # --- OCI hooks on the host
  id="h-$name" hooks_dir="$BBX_DIR/hooks-$name"
  mkdir -p "$hooks_dir"
  out=$(client hooks "$BBX_IMAGE" "$runtime" "$id" "$hook" "$hooks_dir" 2>&1) || true
  ran=""
  for kind in prestart createRuntime poststart poststop; do
    status=$(sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p' "$hooks_dir/$kind.json" 2>/dev/null)
    state_id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "$hooks_dir/$kind.json" 2>/dev/null)
    # runc says "created" to poststart (its state is read before the process runs);
    # beaconbox says "running", as the runtime spec has it: checked below.
    [ "$kind" = poststart ] && [ -n "$status" ] && poststart_status=$status && status=ANY
    ran+="$kind:${status:-none}:${state_id/$name/RUNTIME} "
  done
  same_as_runc "$name" hooks "hooks run (kind:status:id) and the task's exit" "$ran/ $out" \
    "prestart:creating:h-RUNTIME createRuntime:creating:h-RUNTIME poststart:ANY:h-RUNTIME poststop:stopped:h-RUNTIME / exit: 0"
  if [ "$name" = beaconbox ]; then
    if [ "${poststart_status:-}" = running ]; then
      pass "beaconbox: the poststart hook's state says running"
    else
      fail "beaconbox: the poststart hook's state says '${poststart_status:-}', not running"
    fi
    exe=$(cat "$hooks_dir/poststart.exe" 2>/dev/null || echo none)
    if [[ $exe == qemu-system-* ]]; then
      pass "beaconbox: the poststart hook's state pid is the VM's ($exe)"
    else
      fail "beaconbox: the poststart hook's state pid runs '$exe', not the VM's QEMU"
    fi
  fi
  bbx_remove "$id"
done

[ "$failures" -eq 0 ]
