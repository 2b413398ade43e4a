#!/usr/bin/env bash
# The storage-erofs driver through real containerd and ctr (issue 13), with a
# multi-layer image this script builds (erofs_image/build_layered_image.sh: a file
# replaced by a later layer, whiteouts of a file and of a directory, an opaque
# directory, symlinks, hard links, a fifo, a 16 MiB file, a user.* xattr, non-root
# owners, setuid and sticky bits). runc's shim first, as the expected answer:
#   1. the tree of /data (type, mode, owner, links, size, mtime, link targets, sha256
#      of every file, xattrs) seen by beaconbox (driver erofs) equals runc's;
#   2. a container writing to / (new file, deleted file, changed file) sees its writes,
#      and the host's snapshot upperdir stays empty (runc's gets them: the check can fail);
#   3. a second container of the image converts nothing: every layer is a cache hit (the
#      shim's log) and the cached images are not rewritten (mtimes);
#   4. a read-only rootfs (ctr run --read-only) refuses writes, as with runc;
#   5. beaconbox-ctl gc keeps the cached images while a container runs (the read-only
#      one of 4 waits for it) and while the image's snapshots exist, and removes them
#      once the image is removed (ctr image rm --sync: containerd drops its snapshots).
# Under containerd 2 (2.1+) every container uses containerd's erofs snapshotter (the
# transfer service unpacks into it): its layer.erofs files are used as they are, so
# step 3 checks that nothing is ever converted or cached (and step 5 has no cache to
# collect), and a last step truncates one layer file: Create fails with one line naming
# it, and nothing is left behind.
#   erofs_e2e.sh OUTPUT_DIR [system|1.7|2] [blk|virtiofs]   (the plugin's transport)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: erofs_e2e.sh OUTPUT_DIR [system|1.7|2] [blk|virtiofs]}
export BBX_CONTAINERD=${2:-system}
transport=${3:-blk}
case $transport in blk|virtiofs) ;; *) echo "FAIL: transport '$transport' is neither blk nor virtiofs" >&2; exit 1 ;; esac
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

bbx_require_beaconbox "$BBX_OUTPUT_DIR" plugins/storage-erofs.so
command -v mkfs.erofs >/dev/null || { echo "FAIL: mkfs.erofs not found: run scripts/setup.sh (erofs-utils)" >&2; exit 1; }
snapshotter=()  # ctr's --snapshotter flag: containerd's default (overlayfs) unless 2
wanted=$BBX_CONTAINERD
bbx_select_containerd_or_skip
if [ "$wanted" = 2 ]; then
  grep -qw erofs /proc/filesystems ||
    { echo "SKIP: the host kernel has no erofs: containerd's erofs snapshotter cannot load (modprobe erofs)"; exit 77; }
  snapshotter=(--snapshotter erofs)
  # Unpack into the erofs snapshotter (ctr image import goes through the transfer
  # service). The walking differ unpacks and the snapshotter's commit makes each
  # layer.erofs: the erofs differ wants mkfs.erofs --tar (erofs-utils 1.7+).
  extra=$(mktemp /tmp/bbx-erofs-ctrd.XXXXXX)
  printf '%s\n' '[plugins."io.containerd.transfer.v1.local"]' \
    '  [[plugins."io.containerd.transfer.v1.local".unpack_config]]' \
    '    platform = "linux/amd64"' '    snapshotter = "erofs"' > "$extra"
  export BBX_CONTAINERD_CONFIG_EXTRA=$extra
  trap 'rm -f "$extra"' EXIT
  bbx_on_stop() { rm -f "$extra"; }
fi

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"
ctl_timeout=300

bbx_env_start
bbx_use_erofs "$transport" || { echo "FAIL: could not select driver erofs" >&2; exit 1; }
cache_dir="$BBX_DIR/beacon/state/erofs"

image_tar="$BBX_DIR/layered.tar"
BBX_IMAGE=$("$here/erofs_image/build_layered_image.sh" "$image_tar" docker.io/beaconbox/layered:erofs) ||
  { echo "FAIL: building the layered image" >&2; exit 1; }
out=$(bbx_ctr image import "${snapshotter[@]}" "$image_tar" 2>&1) || { echo "FAIL: ctr image import: $out" >&2; exit 1; }

run_in() {  # run_in RUNTIME ID [ctr run flags] -- CMD...: ctr run --rm, output on stdout
  local runtime=$1 id=$2
  shift 2
  local flags=()
  while [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
    run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "${snapshotter[@]}" "${flags[@]}" \
    "$BBX_IMAGE" "$id" "$@" </dev/null
}

# 1. The tree. Directory sizes and link counts are the file system's own (ext4 vs
#    EROFS under overlay): left out for directories only.
listing='cd /data && find . | sort | while read -r f; do
  if [ -d "$f" ] && [ ! -L "$f" ]; then stat -c "%n %F %A %u:%g" "$f"
  else stat -c "%n %F %A %u:%g %h %s %Y" "$f"; fi
  [ -L "$f" ] && echo "$f -> $(readlink "$f")"
  [ -f "$f" ] && [ ! -L "$f" ] && sha256sum "$f" && list-xattrs "$f"
done; true'
runc_tree=$(run_in io.containerd.runc.v2 tree-runc -- /bin/sh -c "$listing" 2>&1) || true
bbx_tree=$(run_in io.containerd.beaconbox.v1 tree-bbx -- /bin/sh -c "$listing" 2>&1) || true
bbx_remove tree-runc
bbx_remove tree-bbx
# runc's answer must show what the image is built to show, else the comparison is void.
expect_in_runc=("./replaced regular file" "./opq/c regular file" "./x user.beaconbox=hello"
                "./owned regular file -rw-r--r-- 1234:5678" "./hl1 regular file -rw-r--r-- 0:0 2"
                "./fifo fifo" "./link -> replaced" "./setuid regular file -rwsr-xr-x 1234:5678"
                "./sticky directory drwxrwxrwt" "./newdir/deep/file regular file")
for want in "${expect_in_runc[@]}"; do
  grep -qF -- "$want" <<<"$runc_tree" || fail "runc's view lacks '$want': $(head -c 600 <<<"$runc_tree")"
done
for gone in ./deleted ./opq/a ./opq/b ./gonedir; do
  grep -q "^$gone " <<<"$runc_tree" && fail "runc's view still has $gone"
done
replaced=$(run_in io.containerd.beaconbox.v1 replaced-bbx -- /bin/cat /data/replaced 2>&1) || true
[ "$replaced" = v2 ] || fail "beaconbox: /data/replaced is '$replaced', not the upper layer's v2"
bbx_remove replaced-bbx
if [ "$runc_tree" = "$bbx_tree" ] && [ "$(wc -l <<<"$runc_tree")" -gt 30 ]; then
  pass "the tree of /data ($(wc -l <<<"$runc_tree") lines: stat, link targets, sha256, xattrs) is runc's"
else
  fail "the tree of /data differs from runc's: $(diff <(echo "$runc_tree") <(echo "$bbx_tree") | head -20 | tr '\n' '|')"
fi
converted=$(grep -c 'erofs layer .*: converted in' "$BBX_DIR/containerd.log" || true)
as_is=$(grep -c "erofs layer .*: containerd's EROFS layer used as is in" "$BBX_DIR/containerd.log" || true)
if [ ${#snapshotter[@]} -ne 0 ]; then
  # containerd's erofs snapshotter: its layer files, no conversion, no cache.
  if [ "$converted" = 0 ] && [ "$as_is" -ge 3 ]; then
    pass "containerd's erofs snapshotter layers are used as they are ($as_is layer uses, no conversion)"
  else
    fail "erofs snapshotter: expected no conversion and 3+ layers used as is, found $converted and $as_is"
  fi
  grep -o "erofs layer .*: containerd's EROFS layer used as is in .*) " "$BBX_DIR/containerd.log" |
    head -1 | sed 's/^/  /'
  images=$(find "$cache_dir" -maxdepth 1 -name '*.erofs' 2>/dev/null | sort) || true
  [ -z "$images" ] && pass "nothing was put in the cache" || fail "cache $cache_dir: $(ls "$cache_dir" | tr '\n' ' ')"
else
  if [ "$converted" = 3 ]; then
    pass "the first beaconbox container converted the image's 3 layers"
  else
    fail "expected 3 conversions in the shim's log, found $converted"
  fi
  images=$(find "$cache_dir" -maxdepth 1 -name '*.erofs' | sort)
  if [ "$(wc -l <<<"$images")" = 3 ] && ! find "$cache_dir" -name '*.tmp.*' -o -name '*.log.*' | grep -q .; then
    pass "the cache holds 3 images and no temp files"
  else
    fail "cache $cache_dir: $(ls "$cache_dir" | tr '\n' ' ')"
  fi
  stamps_before=$(stat -c '%n %Y.%y' $images)
fi

# 2 + 3. Writes to / stay in the VM; the container (kept, not --rm) keeps its snapshot.
#    With writable_layer = "host" they are in containerd's upperdir exactly as runc's
#    (entries, whiteouts, opaque markers); with scratch_size_mib they are on an ext4
#    disk in the VM's run directory, gone with the VM.
write_cmd='echo new > /newfile && rm /data/keep && echo more >> /data/replaced && rm -rf /data/opq &&
  mkdir /data/opq && echo n > /data/opq/new && cat /newfile /data/replaced && ls /data/keep 2>&1; sync; true'
upper_of() {  # upper_of ID: the upperdir of the container's active snapshot
  bbx_ctr snapshots "${snapshotter[@]}" mounts /mnt "$1" 2>/dev/null | tr ',' '\n' | sed -n 's/^upperdir=//p' | head -1
}
upper_listing() {  # upper_listing DIR: entries, types, device numbers, opaque markers
  (cd "$1" && find . -mindepth 1 | sort | while read -r f; do
     stat -c '%n %F %t:%T' "$f"
     python3 -c 'import os, sys
try: print(sys.argv[1], "opaque", os.getxattr(sys.argv[1], "trusted.overlay.opaque", follow_symlinks=False).decode())
except OSError: pass' "$f"
   done)
}
set_writable() {  # set_writable [KEY = VALUE...]: the erofs plugin's writable layer, for the next shims
  sed -i '/^writable_layer = /d; /^scratch_size_mib = /d' "$BBX_BEACONBOX_CONFIG"
  [ $# -eq 0 ] || printf '%s\n' "$@" >> "$BBX_BEACONBOX_CONFIG"  # the file ends in the plugin's table
}
modes=(runc vm)
# Two more VMs: not for the virtiofs transport and containerd 1.7 variants (the writable
# layer does not depend on either).
[ "$transport" = blk ] && [ "${wanted:-}" != 1.7 ] && modes+=(host scratch)
runc_upper=
for mode in "${modes[@]}"; do
  runtime=io.containerd.beaconbox.v1 name="beaconbox ($mode)"
  [ "$mode" = runc ] && runtime=io.containerd.runc.v2 name=runc
  case $mode in
    host) set_writable 'writable_layer = "host"' ;;
    scratch) set_writable 'scratch_size_mib = 64' ;;
    *) set_writable ;;
  esac
  id="write-$mode"
  if [ "$mode" = scratch ]; then
    # Kept running, so that its VM (and the scratch disk) is there to look at: the
    # writes are read back by an exec.
    timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
      run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "${snapshotter[@]}" "$BBX_IMAGE" "$id" \
      /bin/sh -c "{ $write_cmd; } > /written.tmp 2>&1; mv /written.tmp /written; sleep 600" </dev/null >/dev/null 2>&1 || true
    out=
    for i in $(seq 60); do
      out=$(timeout 60 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
              task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "read$i" "$id" /bin/cat /written </dev/null 2>&1) || true
      grep -q '^new$' <<<"$out" && break
      sleep 2
    done
  else
    out=$(timeout "$ctl_timeout" "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
            run --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" "${snapshotter[@]}" "$BBX_IMAGE" "$id" \
            /bin/sh -c "$write_cmd" \
            </dev/null 2>&1) || true
  fi
  if grep -q '^new$' <<<"$out" && grep -q '^more$' <<<"$out" && grep -q 'No such file' <<<"$out"; then
    pass "$name: the container sees its own writes"
  else
    fail "$name: writes to / inside the container: '$(tr '\n' '|' <<<"$out")'"
  fi
  upper=$(upper_of "$id")
  if ! grep -q '^new$' <<<"$out"; then
    fail "$name: the writing container did not run: no upperdir to look at"
  elif [ -z "$upper" ] || [ ! -d "$upper" ]; then
    fail "$name: no upperdir found for $id's snapshot"
  elif [ "$mode" = runc ]; then
    runc_upper=$(upper_listing "$upper")
    [ -e "$upper/newfile" ] && grep -q '^./data/keep character special file 0:0$' <<<"$runc_upper" &&
      grep -q '^./data/opq opaque y$' <<<"$runc_upper" &&
      pass "runc: the writes are in the host's upperdir, with a whiteout and an opaque directory" ||
      fail "runc: the host's upperdir $upper holds: $(tr '\n' '|' <<<"$runc_upper")"
  elif [ "$mode" = host ]; then
    host_upper=$(upper_listing "$upper")
    [ -n "$runc_upper" ] && [ "$host_upper" = "$runc_upper" ] && [ "$(cat "$upper/newfile")" = new ] &&
      pass "$name: the writes are in containerd's upperdir exactly as runc's ($(wc -l <<<"$host_upper") entries, whiteout, opaque dir)" ||
      fail "$name: upperdir differs from runc's: $(diff <(echo "$runc_upper") <(echo "$host_upper") | tr '\n' '|')"
  else
    left=$(find "$upper" -mindepth 1 | head -5)
    [ -z "$left" ] && pass "$name: the host's snapshot upperdir is untouched (writes stayed in the VM)" ||
      fail "$name: the host's upperdir has $(tr '\n' ' ' <<<"$left")"
  fi
  if [ "$mode" = scratch ]; then
    disk=$(find "$BBX_DIR/beacon/run" -name "erofs-scratch-*--$id.ext4" | head -1)
    if [ -n "$disk" ] && [ "$(debugfs -R 'cat /upper/newfile' "$disk" 2>/dev/null)" = new ]; then
      pass "$name: the writes are on the scratch disk $(basename "$disk") ($(du -k "$disk" | cut -f1) KiB used of 64 MiB)"
    else
      fail "$name: no scratch disk holding /upper/newfile in $BBX_DIR/beacon/run: $(find "$BBX_DIR/beacon/run" | tr '\n' ' ')"
    fi
  fi
  bbx_remove "$id"
  if [ "$mode" = scratch ]; then
    [ -n "$disk" ] && [ ! -e "$disk" ] && pass "$name: the scratch disk is gone with the VM" ||
      fail "$name: scratch disk '$disk' left after delete"
  fi
done
set_writable
converted_after=$(grep -c 'erofs layer .*: converted in' "$BBX_DIR/containerd.log" || true)
hits=$(grep -c 'erofs layer .*: cache hit in' "$BBX_DIR/containerd.log" || true)
if [ ${#snapshotter[@]} -ne 0 ]; then
  as_is_after=$(grep -c "erofs layer .*: containerd's EROFS layer used as is in" "$BBX_DIR/containerd.log" || true)
  if [ "$converted_after" = 0 ] && [ "$hits" = 0 ] && [ "$as_is_after" -gt "$as_is" ]; then
    pass "later containers use containerd's layer files too ($as_is_after uses, no conversion, no cache)"
  else
    fail "erofs snapshotter: conversions $converted_after, cache hits $hits, uses $as_is -> $as_is_after"
  fi
elif [ "$converted_after" = "$converted" ] && [ "$hits" -ge 3 ] && [ "$(stat -c '%n %Y.%y' $images)" = "$stamps_before" ]; then
  pass "later containers of the image reuse the cache ($hits cache hits, no new mkfs.erofs, images unchanged)"
else
  fail "cache reuse: conversions $converted -> $converted_after, hits $hits"
fi
grep -oE "erofs layer .*: (cache hit|containerd's EROFS layer used as is) in [0-9.]* ms" "$BBX_DIR/containerd.log" |
  sed 's/.*: /  host-side per layer: /' | head -3

# 4. Read-only rootfs. beaconbox's container then waits (sleep) while gc runs (5.).
ctl() { "$BBX_OUTPUT_DIR/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" "$@"; }
for runtime in io.containerd.runc.v2 io.containerd.beaconbox.v1; do
  name=${runtime#io.containerd.}
  name=${name%%.*}
  hold=''
  # gc (5.) has cached images to keep only when the plugin converted them (not under
  # containerd's erofs snapshotter, whose layer files are used as they are).
  [ "$name" = beaconbox ] && [ ${#snapshotter[@]} -eq 0 ] && hold='; echo running; exec sleep 600'
  run_in "$runtime" "ro-$name" --read-only -- /bin/sh -c "touch /data/nope && echo wrote; cat /data/late$hold" \
    >"$BBX_DIR/ro-$name.out" 2>&1 &
  run_pid=$!
  if [ -n "$hold" ]; then
    for _ in $(seq "$ctl_timeout"); do
      grep -q '^running$' "$BBX_DIR/ro-$name.out" || ! kill -0 "$run_pid" 2>/dev/null && break
      sleep 1
    done
    # Its snapshot keeps the layers too: the image is removed first, so that only
    # the running container (the shim's locks) keeps them.
    bbx_ctr image rm --sync "$BBX_IMAGE" >/dev/null 2>&1 || true
    gc_running=$(ctl gc 2>&1) || true
    if grep -q '^running$' "$BBX_DIR/ro-$name.out" && grep -q '^gc: storage erofs: 0 cached image(s) removed (0.0 MiB), 3 kept$' <<<"$gc_running" &&
       [ "$(grep -c 'held by a running container)$' <<<"$gc_running")" = 3 ] &&
       [ "$(find "$cache_dir" -maxdepth 1 -name '*.erofs' | wc -l)" = 3 ]; then
      pass "gc keeps the 3 images while a container of them runs ($(grep -c 'held by a running container)$' <<<"$gc_running") of them: held by a running container)"
    else
      fail "gc while a container runs: '$(tr '\n' '|' <<<"$gc_running")'"
    fi
    bbx_ctr task kill -s KILL "ro-$name" >/dev/null 2>&1 || true
  fi
  wait "$run_pid" || true
  out=$(cat "$BBX_DIR/ro-$name.out")
  if grep -q 'Read-only file system' <<<"$out" && ! grep -q '^wrote$' <<<"$out" && grep -q '^layer3$' <<<"$out"; then
    pass "$name: a read-only rootfs refuses writes and reads the layers"
  else
    fail "$name: --read-only: '$(tr '\n' '|' <<<"$out")'"
  fi
  bbx_remove "ro-$name"
done

# 6. containerd's erofs snapshotter: a damaged layer file (truncated) is refused with
#    one line naming it; no VM, share or container is left, and nothing is converted.
if [ ${#snapshotter[@]} -ne 0 ]; then
  layer_file=$(find "$BBX_DIR/root/io.containerd.snapshotter.v1.erofs/snapshots" -name layer.erofs | sort | head -1)
  cp "$layer_file" "$BBX_DIR/layer.erofs.saved"
  truncate -s 2000 "$layer_file"
  out=$(run_in io.containerd.beaconbox.v1 bad-layer -- /bin/true 2>&1) && status=0 || status=$?
  lines=$(grep -c "$layer_file is truncated" <<<"$out" || true)
  if [ "$status" -ne 0 ] && [ "$lines" -ge 1 ] && grep -q 'pull it again' <<<"$out"; then
    pass "a truncated containerd layer file: Create fails naming it ($(grep -o "EROFS image [^:]*: [^:]*" <<<"$out" | head -1))"
  else
    fail "truncated $layer_file: status $status, '$(tr '\n' '|' <<<"$out" | cut -c1-600)'"
  fi
  bbx_remove bad-layer
  vms=$(for pid in $(others); do exe_of "$pid"; done | grep -c qemu || true)
  [ "$vms" = 0 ] && ! bbx_ctr task ls -q | grep -q . && [ -z "$(find "$cache_dir" -name '*.erofs*' 2>/dev/null)" ] &&
    pass "nothing is left (no VM, no task, nothing in the cache)" ||
    fail "left after the refused layer: $vms VMs, tasks '$(bbx_ctr task ls -q | tr '\n' ' ')', cache '$(ls -R "$cache_dir" 2>/dev/null | tr '\n' ' ')'"
  cat "$BBX_DIR/layer.erofs.saved" > "$layer_file"
fi

# Every container is gone: no per-container layer share (virtiofs transport) is left.
left=$(find "$cache_dir/shares" -mindepth 1 2>/dev/null | head -3) || true
[ -z "$left" ] && pass "no per-container layer share is left in the cache" ||
  fail "left in $cache_dir/shares: $(tr '\n' ' ' <<<"$left")"

# 5. No container left and the image removed (above): once containerd has dropped the
#    image's snapshots, nothing uses the cached images and gc removes them.
if [ ${#snapshotter[@]} -eq 0 ]; then
layers=$(cat "$cache_dir"/*.source 2>/dev/null || true)
for _ in $(seq 60); do
  bbx_ctr image rm --sync "$BBX_IMAGE" >/dev/null 2>&1 || true
  still=$(while read -r layer; do if [ -n "$layer" ] && [ -e "$layer" ]; then echo "$layer"; fi; done <<<"$layers")
  [ -z "$still" ] && break
  sleep 1
done
gc_out=$(ctl gc 2>&1) || true
if [ -n "$still" ]; then
  fail "containerd kept the image's snapshots after ctr image rm: $(tr '\n' ' ' <<<"$still")"
elif grep -q '^gc: storage erofs: 3 cached image(s) removed ([0-9.]* MiB), 0 kept$' <<<"$gc_out" &&
     [ "$(grep -c '^removed .*\.erofs (.*; layer .* is gone)$' <<<"$gc_out")" = 3 ] &&
     ! find "$cache_dir" -maxdepth 1 -name '*.erofs' -o -maxdepth 1 -name '*.source' | grep -q .; then
  pass "gc removes the 3 images once no snapshot and no container uses them"
else
  fail "gc after the image is gone: '$(tr '\n' '|' <<<"$gc_out")'; cache: $(ls "$cache_dir" | tr '\n' ' ')"
fi
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -40 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
echo "erofs end-to-end ($transport transport): all checks passed"
