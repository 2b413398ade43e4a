#!/usr/bin/env bash
# Container commands are single-quoted on purpose (they run in the guest).
# shellcheck disable=SC2016
# Checkpoint through real containerd and ctr (issue 19), storage.driver erofs on
# virtio-blk (the shape a VM-level checkpoint needs: no virtio-fs), network.mode
# "bridge" inside the test's own network namespace (every container gets a lease of
# the net-bridge plugin, a TAP and its anti-spoofing rules):
#   1. a counter loop runs with lease A on eth0; `ctr c checkpoint --task --rw` succeeds, the shim's log
#      says where it wrote the VM's state, the image exists, and the task runs on (the
#      counter grows after the checkpoint: containerd paused it, the shim saved and
#      containerd resumed);
#   2. a paused task is checkpointed and stays paused; a task checkpointed with
#      CheckpointOptions.exit (containerd's Go client) is saved, then exits 137;
#   3. `ctr c restore --live --rw` of the counter's checkpoint, under a new container
#      id, brings it back: the counter continues from (at least) its value at the
#      checkpoint, the file written into the writable layer before the checkpoint is
#      there, `ctr task attach` reads its stdout, `ctr task kill -s KILL` gives exit
#      status 137, and nothing is left behind. Its network: the restored guest's eth0
#      has the new lease B (addresses, default route, the new TAP's MAC) and nothing of
#      A; it answers ping at B (IPv4 and IPv6) from the test's netns; A's lease and the
#      original's TAP are gone; after its delete no TAP, lease or nft guard is left.
#   4. the same checkpoint with one byte of vm.state flipped in containerd's content
#      store is refused with one line naming the file, and nothing is left.
#   (Truncated, foreign and old-format checkpoints: shim_sandbox_test RestoreTest.*,
#   shim_unit_test CheckpointManifestTest.*.)
#   checkpoint_e2e.sh OUTPUT_DIR [system|1.7|2]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: checkpoint_e2e.sh OUTPUT_DIR [system|1.7|2]}
export BBX_CONTAINERD=${2:-system}
export BBX_NETWORK_MODE=bridge
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_select_containerd_or_skip
bbx_require_beaconbox "$BBX_OUTPUT_DIR" plugins/storage-erofs.so plugins/net-bridge.so
command -v mkfs.erofs >/dev/null || { echo "FAIL: mkfs.erofs not found: run scripts/setup.sh (erofs-utils)" >&2; exit 1; }
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

bbx_env_start
bbx_use_erofs blk || { echo "FAIL: could not select driver erofs" >&2; exit 1; }
bbx_import_demo_image

ctl() { nsenter --net="/run/netns/$BBX_NETNS" "$BBX_OUTPUT_DIR/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" "$@"; }
# lease_of ID: "IPv4 IPv6 TAP" of ID's lease in the net-bridge plugin's store, or nothing
lease_of() {
  ctl net leases | awk -v id="$1" '$NF == id {sub("/.*", "", $1); sub("/.*", "", $2); print $1, $2, $3}' || true
}
# eth0_of ID: the guest's view of eth0 (addresses, routes, MAC) from inside container ID
eth0_of() {
  bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "eth0-$RANDOM" "$1" /bin/sh -c \
    'ip -o addr show dev eth0; ip route; ip -6 route; echo "mac $(cat /sys/class/net/eth0/address)"' \
    </dev/null 2>/dev/null || true
}
taps() { in_netns ip -br link | awk '$1 ~ /^beacon-/ {sub("@.*", "", $1); print $1}' || true; }
answers() { in_netns busybox ping "$@" -c1 -W5 >/dev/null 2>&1; }  # answers [-6] ADDRESS
count() {  # the counter container ${1:-ck} wrote last, or nothing
  bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "read-$RANDOM" "${1:-ck}" cat /count </dev/null 2>/dev/null |
    tr -dc 0-9 || true
}
# The counter is written to a new file and renamed over /count: `echo > /count` would
# truncate first, and a read between the truncate and the write sees an empty file.
# It also prints each value: the restored task's stdout is read by `ctr task attach`.
bbx_run_detached ck /bin/sh -c 'i=0; while :; do i=$((i + 1)); echo $i > /count.new; mv /count.new /count; echo "count $i"; sleep 0.2; done'
before=""
for _ in $(seq 300); do
  before=$(count)
  [ -n "$before" ] && break
  sleep 0.5
done
[ -n "$before" ] || fail "the counter container never wrote /count"
# A file in the writable layer (in the VM: erofs rootfs with the guest's overlay).
bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id marker ck /bin/sh -c 'echo kept-across-restore > /marker' </dev/null ||
  fail "could not write /marker into ck"
# Lease A: what the original's eth0 has before the checkpoint.
read -r addr_a addr6_a tap_a <<<"$(lease_of ck)" || true
net_a=$(eth0_of ck)
mac_a=$(awk '$1 == "mac" {print $2}' <<<"$net_a")
if [ -n "$addr_a" ] && grep -q "inet $addr_a/" <<<"$net_a" && grep -q "inet6 $addr6_a/" <<<"$net_a" &&
   [ -n "$mac_a" ] && answers "$addr_a"; then
  pass "before the checkpoint ck has lease A on eth0: $addr_a, $addr6_a, MAC $mac_a, TAP $tap_a; it answers ping"
else
  fail "ck's lease A: '$addr_a $addr6_a $tap_a' (leases: $(ctl net leases | tail -n +2 | tr '\n' ' ')); eth0: $(tr '\n' ' ' <<<"$net_a")"
fi

ref=docker.io/beaconbox/checkpoint:ck
status=0
out=$(timeout 600 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
  container checkpoint --task --rw ck "$ref" 2>&1) || status=$?
saved=$(grep -o "checkpoint of $BBX_NS/ck written to [^;]*" "$BBX_DIR/containerd.log" | tail -1 || true)
if [ "$status" = 0 ] && bbx_ctr image ls -q | grep -qxF "$ref" && [ -n "$saved" ]; then
  pass "ctr container checkpoint --task --rw: image $ref; the shim: $saved"
else
  fail "checkpoint: status $status, output '$(tr '\n' ' ' <<<"$out" | cut -c1-400)'; log: $(grep -i checkpoint "$BBX_DIR/containerd.log" | tail -3)"
fi
after=""
for _ in $(seq 20); do  # a loaded machine: up to 10 s for the resumed loop to count on
  sleep 0.5
  after=$(count)
  [ -n "$after" ] && [ "$after" -gt "$before" ] && break
done
if [ -n "$before" ] && [ -n "$after" ] && [ "$after" -gt "$before" ]; then
  pass "the task runs on after the checkpoint (counter $before -> $after)"
else
  fail "the counter did not grow after the checkpoint ('$before' -> '$after')"
fi

# A paused task: checkpointed, and still paused afterwards (containerd leaves a paused
# task paused; the shim does not resume the VM).
# (`ctr task checkpoint`: `ctr container checkpoint` pauses the task itself first; a
# second container, as containerd 1.6 refuses a second task checkpoint of one container
# with "content ... already exists".)
bbx_remove ck
bbx_run_detached ck2 /bin/sleep 600
status=0
bbx_ctr task pause ck2 || fail "ctr task pause ck2"
out=$(timeout 600 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
  task checkpoint ck2 2>&1) || status=$?
state=$(bbx_ctr task ls | awk '$1 == "ck2" {print $3}')
if [ "$status" = 0 ] && [ "$state" = PAUSED ] &&
   grep -q "checkpoint of $BBX_NS/ck2 written to .*the task stays paused" "$BBX_DIR/containerd.log"; then
  pass "a paused task is checkpointed and stays paused"
else
  fail "paused checkpoint: status $status, state '$state', output '$(tr '\n' ' ' <<<"$out" | cut -c1-300)'"
fi
bbx_remove ck2
ref2=$(grep -o 'checkpoint/ck2[^ ]*' <<<"$out" | head -1 || true)
if [ -n "$ref2" ]; then bbx_ctr image rm "$ref2" >/dev/null 2>&1 || true; fi

# Checkpoint with exit: the task is saved, then exits (as runc's checkpoint --exit).
# `ctr task checkpoint --exit` sends CheckpointOptions only to runc's runtimes
# (withCheckpointOpts in containerd's ctr), so containerd's own Go client sends them
# (task_client checkpoint-exit).
if task_client=$("$here/task_client/build.sh"); then
  bbx_run_detached ck3 /bin/sleep 600
  status=0
  out=$(timeout 600 "$task_client" "$BBX_SOCK" "$BBX_NS" checkpoint-exit ck3 2>&1) || status=$?
  ref3=$(awk '$1 == "image:" {print $2}' <<<"$out")
  if [ "$status" = 0 ] && grep -qx "exit: 137" <<<"$out" && [ -n "$ref3" ] &&
     grep -q "checkpoint of $BBX_NS/ck3 written to " "$BBX_DIR/containerd.log"; then
    pass "checkpoint with CheckpointOptions.exit through containerd: image $ref3, then the task exits 137"
  else
    fail "checkpoint with exit: status $status, output '$(tr '\n' ' ' <<<"$out" | cut -c1-300)'"
  fi
  bbx_remove ck3
  if [ -n "$ref3" ]; then bbx_ctr image rm "$ref3" >/dev/null 2>&1 || true; fi
else
  fail "task_client did not build"
fi

# Restore under a new id (ckr; the guest still knows the container as ck). The shim
# validates the checkpoint (manifest, digests, this host's kernel/initrd/VMM) before
# anything is made, the qemu plugin loads the VM, the shim adopts the guest's ck.
left_of() {  # left_of ID: processes of the environment, run-dir entries named after ID,
  # and (no other container runs then) any TAP, lease or anti-spoofing chain
  others || true
  find "$BBX_DIR/beacon/run" -mindepth 1 -maxdepth 2 -name "*$1*" 2>/dev/null || true
  taps | sed 's/^/TAP /'
  ctl net leases | tail -n +2 | sed 's/^/lease /'
  in_netns nft list table bridge beacon_runner_bridge 2>/dev/null | grep -o 'chain guest-[^ ]*' || true
}
# ctr restore has no --fifo-dir: it runs in containerd's mount namespace.
restore() {  # restore() ID: ctr's output in $out, its status in $status
  status=0
  out=$(bbx_ctr_in_containerd_mounts container restore --live --rw "$1" "$ref" \
    </dev/null 2>&1) || status=$?
}
restore ckr
restored_line=$(grep -o "restore of $BBX_NS/ckr: [^\"]*" "$BBX_DIR/containerd.log" | tail -1 || true)
state=$(bbx_ctr task ls | awk '$1 == "ckr" {print $3}')
if [ "$status" = 0 ] && [ "$state" = RUNNING ]; then
  pass "ctr container restore --live --rw ckr: running; the shim: ${restored_line:-no timing line}"
  # Lease B: a new lease, TAP and MAC; the guest's eth0 has them and nothing of A.
  read -r addr_b addr6_b tap_b <<<"$(lease_of ckr)" || true
  net_b=$(eth0_of ckr)
  mac_b=$(awk '$1 == "mac" {print $2}' <<<"$net_b")
  if [ -n "$addr_b" ] && [ "$addr_b" != "$addr_a" ] && [ "$addr6_b" != "$addr6_a" ] &&
     [ "$tap_b" != "$tap_a" ] && [ -n "$mac_b" ] && [ "$mac_b" != "$mac_a" ] &&
     grep -q "inet $addr_b/16 " <<<"$net_b" && grep -q "inet6 $addr6_b/64 scope global" <<<"$net_b" &&
     grep -q "^default via 10.88.0.1 dev eth0" <<<"$net_b" && grep -q "^default via fd57:dba9:ddb6::1 dev eth0" <<<"$net_b" &&
     ! grep -qF "$addr_a/" <<<"$net_b" && ! grep -qF "$addr6_a/" <<<"$net_b"; then
    pass "the restored guest's eth0 has lease B: $addr_b, $addr6_b, MAC $mac_b (A was $addr_a, $addr6_a, $mac_a), default routes via the bridge"
  else
    fail "the restored guest's network: lease B '$addr_b $addr6_b $tap_b' (A '$addr_a $addr6_a $tap_a', $mac_a); eth0: $(tr '\n' ' ' <<<"$net_b")"
  fi
  if answers "$addr_b" && answers -6 "$addr6_b"; then
    pass "the restored guest answers ping at $addr_b and $addr6_b from the test's netns (through $tap_b and its anti-spoofing rules)"
  else
    fail "the restored guest does not answer at $addr_b / $addr6_b"
  fi
  if [ -z "$(lease_of ck)" ] && ! taps | grep -qxF "$tap_a" && taps | grep -qxF "$tap_b"; then
    pass "A's lease and the original's TAP $tap_a are gone; the restored one has $tap_b"
  else
    fail "after restore: ck's lease '$(lease_of ck)', TAPs: $(taps | tr '\n' ' ')"
  fi
  first=""
  for _ in $(seq 60); do
    first=$(count ckr)
    [ -n "$first" ] && break
    sleep 0.5
  done
  later=""
  for _ in $(seq 20); do
    sleep 0.5
    later=$(count ckr)
    [ -n "$later" ] && [ -n "$first" ] && [ "$later" -gt "$first" ] && break
  done
  if [ -n "$first" ] && [ "$first" -ge "$before" ] && [ -n "$later" ] && [ "$later" -gt "$first" ]; then
    pass "the restored counter continues: $before before the checkpoint, $first after restore, then $later"
  else
    fail "the restored counter: '$before' before the checkpoint, '$first' after restore, then '$later'"
  fi
  # ctr restore has exited (its reader of the task's stdout with it): `ctr task attach`
  # opens the restore's FIFOs again and reads what the restored loop prints from then on.
  # (ctr itself, ended with SIGKILL: ctr task attach passes other signals on to the task.)
  nsenter --mount="/proc/$BBX_CONTAINERD_PID/ns/mnt" -- "$BBX_CONTAINERD_BIN/ctr" \
    --address "$BBX_SOCK" --namespace "$BBX_NS" task attach ckr </dev/null > "$BBX_DIR/attach.out" 2>&1 &
  attach_pid=$!
  sleep 3
  kill -KILL "$attach_pid" 2>/dev/null || true
  wait "$attach_pid" 2>/dev/null || true
  attached=$(grep -o '^count [0-9]*' "$BBX_DIR/attach.out" | head -1 | grep -o '[0-9]*' || true)
  if [ -n "$attached" ] && [ "$attached" -ge "$before" ]; then
    pass "ctr task attach of the restored task: its stdout goes on ($(grep -c '^count' "$BBX_DIR/attach.out") lines from 'count $attached')"
  else
    fail "ctr task attach of the restored task printed '$(head -c 200 "$BBX_DIR/attach.out" | tr '\n' ' ')' (want 'count N', N >= $before)"
  fi
  marker=$(bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" --exec-id marker-read ckr cat /marker </dev/null 2>/dev/null || true)
  if [ "$marker" = kept-across-restore ]; then
    pass "the file written into the writable layer before the checkpoint is there after restore"
  else
    fail "/marker after restore: '$marker'"
  fi
  bbx_ctr task kill -s KILL ckr || fail "ctr task kill ckr"
  for _ in $(seq 100); do
    [ "$(bbx_ctr task ls | awk '$1 == "ckr" {print $3}')" = STOPPED ] && break
    sleep 0.1
  done
  # ctr task delete of an init warns "task ID exit with non-zero exit code N" and
  # returns 0.
  code=$(bbx_ctr task delete ckr 2>&1 | grep -o 'exit with non-zero exit code [0-9]*' | grep -o '[0-9]*$' || true)
  if [ "$code" = 137 ]; then
    pass "ctr task kill -s KILL of the restored task: exit status 137"
  else
    fail "the restored task's exit status: $code (want 137)"
  fi
  bbx_remove ckr
  sleep 1
  left=$(left_of ckr)
  if [ -z "$left" ] && ! in_netns nft list ruleset | grep -qF -e "$addr_b" -e "$tap_b"; then
    pass "nothing left after the restored container was removed: no process, TAP, lease, nft rule or element of it"
  else
    fail "left behind after the restored container was removed: $left $(in_netns nft list ruleset | grep -F -e "$addr_b" -e "$tap_b" | head -3)"
  fi
else
  fail "restore: status $status, state '$state', output '$(tr '\n' ' ' <<<"$out" | cut -c1-400)'; log: $(grep -i 'restor' "$BBX_DIR/containerd.log" | tail -3 | cut -c1-300)"
  bbx_remove ckr
fi

# A corrupted checkpoint: one byte of vm.state flipped inside the checkpoint blob in
# containerd's content store (the tar stays well-formed, containerd unpacks it). The
# shim refuses it with one line naming the file, and nothing is left.
index=$(bbx_ctr image ls | awk -v r="$ref" '$1 == r {print $3}')
blob=$(bbx_ctr content get "$index" | python3 -c '
import json, sys
for m in json.load(sys.stdin).get("manifests", []):
    if m.get("mediaType", "").endswith("criu.checkpoint.criu.tar"):
        print(m["digest"].split(":", 1)[1])' || true)
blob_path="$BBX_DIR/root/io.containerd.content.v1.content/blobs/sha256/$blob"
if [ -n "$blob" ] && [ -f "$blob_path" ] &&
   python3 - "$blob_path" <<'PY'
import sys, tarfile
path = sys.argv[1]
with tarfile.open(path) as tar:
    member = next(m for m in tar.getmembers() if m.name.lstrip("./") == "vm.state")
    offset = member.offset_data + member.size // 2
with open(path, "r+b") as blob:
    blob.seek(offset)
    byte = blob.read(1)
    blob.seek(offset)
    blob.write(bytes([byte[0] ^ 0xFF]))
PY
then
  restore ckc
  sleep 1
  left=$(left_of ckc)
  bbx_remove ckc
  if [ "$status" != 0 ] && grep -q "checkpoint refused: its file vm.state has SHA-256 .* (corrupted)" <<<"$out" &&
     [ -z "$left" ]; then
    pass "a corrupted checkpoint is refused: $(grep -o 'checkpoint refused: its file vm.state[^;]*' <<<"$out" | head -1 | cut -c1-90)... (corrupted); nothing left"
  else
    fail "corrupted checkpoint: status $status, output '$(tr '\n' ' ' <<<"$out" | cut -c1-400)', left: $left"
  fi
else
  fail "could not corrupt the checkpoint blob of $ref (index '$index', blob '$blob')"
fi
bbx_ctr image rm "$ref" >/dev/null 2>&1 || true

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all checkpoint checks passed"
