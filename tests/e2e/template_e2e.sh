#!/usr/bin/env bash
# VM templating (issue 16 item 3) through real containerd and ctr: with
# [plugins.vmm.qemu.config] template = true, every beaconbox VM is a clone of a
# template VM (plugins/vmm-qemu/template.h). runc's shim first, as the expected answer.
#   1. `ctr run` from a clone: output and exit code as with runc; the template was
#      built once (log) and its files exist; the container's rootfs came through a
#      hot-added virtio-fs share.
#   2. A second clone reuses the template (no rebuild); the two clones read different
#      bytes from /dev/urandom and their clocks are within 5 s of the host's. With the
#      shim's Refresh call removed the clock check fails (the clone's clock is the
#      template's, 18 s behind in that run); the random bytes differed even then (the
#      guest mixes in RDRAND, which QEMU's -cpu max provides under TCG), so that check
#      guards against identical pools but does not by itself show Refresh.
#   2b. With storage driver erofs (virtio-blk disks hot-added, no virtio-fs), the clone
#      maps the template's memory copy-on-write.
#   3. A changed initrd (touched) makes a new template.
#   4. A corrupt state file and a truncated memory file are refused and rebuilt.
#   template_e2e.sh OUTPUT_DIR [system|1.7|2]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: template_e2e.sh OUTPUT_DIR [system|1.7|2]}
export BBX_CONTAINERD=${2:-system}
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_select_containerd_or_skip
bbx_require_beaconbox "$BBX_OUTPUT_DIR"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

# The initrd is a private copy, so that step 3 can touch it.
initrd_copy=$(mktemp /tmp/bbx-template-initrd.XXXXXX)
cp "$BBX_OUTPUT_DIR/beaconbox-initrd" "$initrd_copy"
export BBX_INITRD_PATH=$initrd_copy
export BBX_GUEST_TIMEOUT_MS=300000
cleanup_initrd() { rm -f "$initrd_copy"; }
bbx_env_start
trap 'bbx_env_stop; cleanup_initrd' EXIT
bbx_import_demo_image

templates="$BBX_DIR/templates"
cat >> "$BBX_BEACONBOX_CONFIG" <<EOC

[plugins.vmm.qemu.config]
template = true
template_dir = "$templates"
EOC

run() {  # run RUNTIME ID CMD...: ctr run --rm; prints the output, returns its status
  local runtime=$1 id=$2
  shift 2
  timeout 600 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" run --rm \
    --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "$BBX_IMAGE" "$id" "$@" < /dev/null
}
log_count() { grep -c "$1" "$BBX_DIR/containerd.log" 2>/dev/null || true; }
template_dirs() { find "$templates" -mindepth 1 -maxdepth 1 -type d -not -name '*.new' 2>/dev/null | sort; }

probe='echo out-ok; head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"; echo; date +%s; exit 3'

# 1. runc, then a clone.
status=0
expected=$(run io.containerd.runc.v2 t-runc /bin/sh -c "$probe" | sed -n 1p) || status=$?
[ "$status" = 3 ] && [ "$expected" = out-ok ] || fail "runc: status $status output '$expected'"

status=0
first=$(run io.containerd.beaconbox.v1 t-clone1 /bin/sh -c "$probe") || status=$?
host_now=$(date +%s)
if [ "$status" = 3 ] && [ "$(echo "$first" | head -1)" = "$expected" ]; then
  pass "a clone runs the container: output '$expected', exit code 3 (as runc)"
else
  fail "clone 1: status $status output '$first'; log: $(grep -i template "$BBX_DIR/containerd.log" | tail -3)"
fi
if [ "$(log_count 'building the VM template')" = 1 ] && [ "$(template_dirs | wc -l)" = 1 ] &&
   [ -s "$(template_dirs)/state" ] && [ -s "$(template_dirs)/manifest" ]; then
  pass "the template was built once: $(template_dirs)"
else
  fail "template build: $(log_count 'building the VM template') builds, dirs: $(template_dirs | tr '\n' ' ')"
fi
grep -q "restored from VM template" "$BBX_DIR/containerd.log" &&
  pass "the VM was restored from the template (accelerator line)" ||
  fail "no 'restored from VM template' in the log: $(bbx_vm_accelerators | tail -2)"
tdir=$(template_dirs | head -1)
memory_mtime=$(stat -c %Y.%y "$tdir/memory" 2>/dev/null || true)

# 2. A second clone: same template, other random bytes, the host's time.
sleep 6  # the template's clock would lag by at least this much without Refresh
status=0
second=$(run io.containerd.beaconbox.v1 t-clone2 /bin/sh -c "$probe") || status=$?
host_now2=$(date +%s)
[ "$status" = 3 ] || fail "clone 2: status $status output '$second'"
if [ "$(log_count 'building the VM template')" = 1 ] && [ "$(stat -c %Y.%y "$tdir/memory")" = "$memory_mtime" ]; then
  pass "the second clone reused the template"
else
  fail "the second clone rebuilt the template"
fi
r1=$(echo "$first" | sed -n 2p) r2=$(echo "$second" | sed -n 2p)
if [ ${#r1} = 32 ] && [ ${#r2} = 32 ] && [ "$r1" != "$r2" ]; then
  pass "two clones read different bytes from /dev/urandom ($r1 / $r2)"
else
  fail "random bytes of the clones: '$r1' and '$r2'"
fi
t2=$(echo "$second" | sed -n 3p)
if [ -n "$t2" ] && [ $((host_now2 - t2)) -le 5 ] && [ $((t2 - host_now2)) -le 5 ]; then
  pass "a clone's clock is the host's (guest $t2, host $host_now2)"
else
  fail "a clone's clock: guest '$t2', host $host_now2 (first clone: $(echo "$first" | sed -n 3p) vs $host_now)"
fi

# 2b. storage driver erofs (transport blk): the rootfs comes on hot-added virtio-blk
#     disks and, without virtio-fs, the clone maps the template's memory copy-on-write.
#     The template is the same (devices are not part of its key).
if command -v mkfs.erofs >/dev/null; then
  cp "$BBX_BEACONBOX_CONFIG" "$BBX_DIR/beaconbox.toml.virtiofs"
  sed -i 's/^driver = "virtiofs"$/driver = "erofs"/' "$BBX_BEACONBOX_CONFIG"
  printf '\n[plugins.storage.erofs]\npath = "%s"\n[plugins.storage.erofs.config]\ntransport = "blk"\n' \
    "$BBX_OUTPUT_DIR/plugins/storage-erofs.so" >> "$BBX_BEACONBOX_CONFIG"
  status=0
  out=$(run io.containerd.beaconbox.v1 t-erofs /bin/sh -c "$probe" | sed -n 1p) || status=$?
  if [ "$status" = 3 ] && [ "$out" = "$expected" ] &&
     [ "$(log_count 'building the VM template')" = 1 ] &&
     grep -q "restored from VM template.*copy-on-write from the template" "$BBX_DIR/containerd.log"; then
    pass "erofs rootfs on hot-added virtio-blk disks, guest memory copy-on-write from the template"
  else
    fail "erofs clone: status $status, output '$out', $(log_count 'building the VM template') builds; $(bbx_vm_accelerators | tail -1)"
  fi
  cp "$BBX_DIR/beaconbox.toml.virtiofs" "$BBX_BEACONBOX_CONFIG"
else
  echo "SKIP: no mkfs.erofs: the erofs (virtio-blk, copy-on-write) clone is not checked"
fi

# 3. A changed initrd: a new template.
touch "$initrd_copy"
status=0
out=$(run io.containerd.beaconbox.v1 t-initrd /bin/sh -c "$probe" | sed -n 1p) || status=$?
if [ "$status" = 3 ] && [ "$out" = "$expected" ] && [ "$(log_count 'building the VM template')" = 2 ] &&
   [ "$(template_dirs | wc -l)" = 2 ]; then
  pass "a touched initrd makes a new template, and its clone runs"
else
  fail "after touching the initrd: status $status, output '$out', $(log_count 'building the VM template') builds, $(template_dirs | wc -l) templates"
fi
tdir=$(ls -td "$templates"/*/ | head -1)
tdir=${tdir%/}

# 4. A corrupt state file (same size), then a truncated memory file: refused, rebuilt.
size=$(stat -c %s "$tdir/state")
printf 'CORRUPT' | dd of="$tdir/state" bs=1 seek=$((size / 2)) conv=notrunc status=none
status=0
out=$(run io.containerd.beaconbox.v1 t-corrupt /bin/sh -c "$probe" | sed -n 1p) || status=$?
if [ "$status" = 3 ] && [ "$out" = "$expected" ] &&
   grep -q "VM template refused, rebuilding it: template state .* corrupt" "$BBX_DIR/containerd.log"; then
  pass "a corrupt template state is refused and rebuilt; the clone runs"
else
  fail "corrupt state: status $status, output '$out', log: $(grep -i 'template' "$BBX_DIR/containerd.log" | tail -2)"
fi
truncate -s 4096 "$tdir/memory"
status=0
out=$(run io.containerd.beaconbox.v1 t-truncated /bin/sh -c "$probe" | sed -n 1p) || status=$?
if [ "$status" = 3 ] && [ "$out" = "$expected" ] &&
   grep -q "VM template refused, rebuilding it: template memory .* changed since" "$BBX_DIR/containerd.log"; then
  pass "a truncated template memory file is refused and rebuilt; the clone runs"
else
  fail "truncated memory: status $status, output '$out', log: $(grep -i 'template' "$BBX_DIR/containerd.log" | tail -2)"
fi

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all template checks passed"
