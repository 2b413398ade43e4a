#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here.
# The container scripts are single-quoted on purpose: they expand in the container.
# shellcheck disable=SC2015,SC2016
# Volumes (issue 11, item 7) and a read-only rootfs whose image lacks the mount points
# (item 9) through real containerd and ctr, runc's shim first as the expected answer:
#   1. One container with four mounts at once: a read-write directory volume (a host
#      write before the start is seen, the container's write is on the host as soon
#      as it is made, a host write while it runs is seen), a read-only directory
#      volume (writes fail with EROFS), a single-file bind at /etc/hostname (rw, as
#      CRI gives it), a tmpfs. Its transcript must equal runc's. beaconbox: the
#      read-only volume is read-only on the host as well (a compromised guest cannot
#      write it through virtiofsd).
#   2. rshared propagation cannot cross into a VM: beaconbox refuses it with one line
#      (runc honours it: no runc answer), and leaves nothing behind.
#   3. A source that does not exist: both refuse; beaconbox with one line naming it.
#   4. `ctr run --read-only` of an image holding /bin/busybox alone (no /proc, /dev,
#      /sys: Kubernetes' pause image holds only /pause) with a volume at a destination
#      the image lacks: it runs as with runc, its root read-only. beaconbox runs first:
#      runc creates the mount points in the image's layer itself.
#   5. beaconbox: the shim killed right after the volumes were mounted on the host;
#      containerd's cleanup (the shim's delete action) unmounts them.
# After each beaconbox container: no mount under the environment, no process left.
#   volumes_e2e.sh OUTPUT_DIR [system|1.7]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: volumes_e2e.sh OUTPUT_DIR [system|1.7]}
export BBX_CONTAINERD=${2:-system}
export BEACONBOX_TEST_HOOKS=1  # only a container annotated beaconbox.test/crash-after
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"

bbx_require_beaconbox "$BBX_OUTPUT_DIR"
bbx_select_containerd_or_skip

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"
runc=io.containerd.runc.v2
beaconbox=io.containerd.beaconbox.v1
short() { local r=${1#io.containerd.}; echo "${r%%.*}"; }

bbx_env_start
echo "containerd: $("$BBX_CONTAINERD_BIN/containerd" --version)"
bbx_import_demo_image
bare_tar="$BBX_DIR/bare-image.tar"
BARE_IMAGE=$(BBX_IMAGE_BARE=1 "$BBX_SCRIPTS_DIR/build-demo-image.sh" "$bare_tar" \
               docker.io/beaconbox/bare:test)
bbx_ctr image import "$bare_tar" > /dev/null
tasks="$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS"
snapshots="$BBX_DIR/root/io.containerd.snapshotter.v1.overlayfs/snapshots"

# Nothing of a beaconbox container may remain once it is deleted.
assert_nothing_left() {
  local what=$1 left=""
  for _ in $(seq 100); do
    left=$(others || true)
    [ -z "$left" ] && break
    sleep 0.1
  done
  [ -z "$left" ] && pass "$what: no shim, QEMU or virtiofsd process left" ||
    fail "$what: processes left: $(for p in $left; do echo -n "$p($(exe_of "$p")) "; done)"
  left=$(bbx_env_mounts || true)
  [ -z "$left" ] && pass "$what: no mount left on the host" || fail "$what: mounts left: $left"
  left=$(find "$tasks" -mindepth 1 -maxdepth 1 2>/dev/null || true)
  [ -z "$left" ] && pass "$what: no bundle left" || fail "$what: bundles left: $left"
}

# The per-mount options of mount point $1 in containerd's (and its shims') namespace.
mount_options() {
  awk -v m="$1" '$5 == m {print $6}' "/proc/$BBX_CONTAINERD_PID/mountinfo" | tail -1
}

# ---- 1. four mounts at once -----------------------------------------------------
# The container's side of the exchange. The host answers through the rw volume once
# the container made /vol-rw/ready.
script='exec 2>&1  # one stream: the order of the lines is then the same for both runtimes
cat /vol-rw/before
echo from-container > /vol-rw/from-container
touch /vol-ro/new 2>&1; echo "touch in the ro volume: $?"
echo more >> /vol-ro/existing 2>&1; echo "append in the ro volume: $?"
cat /vol-ro/existing
cat /etc/hostname
echo from-container >> /etc/hostname; echo "append to /etc/hostname: $?"
grep " /scratch " /proc/mounts | cut -d" " -f3
echo in-tmpfs > /scratch/t && cat /scratch/t
touch /ready-marker-on-root; echo "root writable: $?"
touch /vol-rw/ready
i=0
while [ ! -e /vol-rw/from-host ] && [ $i -lt 1500 ]; do sleep 0.2; i=$((i + 1)); done
cat /vol-rw/from-host'

declare -A transcript
for runtime in $runc $beaconbox; do
  name=$(short "$runtime")
  id="vol-$name" vols="$BBX_DIR/vols-$name"
  record="$BBX_DIR/beacon/state/storage-virtiofs/volumes/$BBX_NS--$id"
  mkdir -p "$vols/rw" "$vols/ro"
  echo "written on the host before the start" > "$vols/rw/before"
  echo "read-only content" > "$vols/ro/existing"
  echo "host-name-file" > "$vols/hostname"
  out="$BBX_DIR/$id.out"
  bbx_ctr run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" \
    --mount "type=bind,src=$vols/rw,dst=/vol-rw,options=rbind:rw" \
    --mount "type=bind,src=$vols/ro,dst=/vol-ro,options=rbind:ro" \
    --mount "type=bind,src=$vols/hostname,dst=/etc/hostname,options=rbind:rw" \
    --mount "type=tmpfs,src=tmpfs,dst=/scratch,options=nosuid:size=1m" \
    "$BBX_IMAGE" "$id" /bin/sh -c "$script" < /dev/null > "$out" 2>&1 &
  run_pid=$!
  for _ in $(seq 1500); do
    [ -e "$vols/rw/ready" ] && break
    kill -0 "$run_pid" 2>/dev/null || break
    sleep 0.2
  done
  if [ -e "$vols/rw/ready" ]; then
    # Written before `ready`: on the host by now, no flush or sync in between.
    [ "$(cat "$vols/rw/from-container" 2>/dev/null)" = from-container ] &&
      pass "$name: the container's write in the rw volume is on the host" ||
      fail "$name: the container's write is not on the host: '$(cat "$vols/rw/from-container" 2>&1)'"
    [ "$(cat "$vols/hostname")" = "host-name-file
from-container" ] && pass "$name: the container's append to the single-file bind is on the host" ||
      fail "$name: the single-file bind on the host holds '$(cat "$vols/hostname")'"
    [ "$(cat "$vols/ro/existing")" = "read-only content" ] &&
      pass "$name: the read-only volume is unchanged on the host" ||
      fail "$name: the read-only volume changed: '$(cat "$vols/ro/existing")'"
    if [ "$runtime" = "$beaconbox" ]; then
      # Staged in the VM's run directory, named by the plugin's record under its state
      # directory (not in the bundle, which containerd may remove before the release).
      staging="$(cat "$record" 2>/dev/null)/volumes/$BBX_NS--$id/beaconbox-volumes"
      [[ $staging == "$BBX_DIR/beacon/run/"* ]] &&
        pass "$name: the volumes are staged in the VM's run directory ($staging)" ||
        fail "$name: the record $record names '$staging', not a VM run directory"
      for check in "$staging/1|read-only dir volume" "$staging|share root"; do
        path=${check%%|*} label=${check#*|}
        opts=$(mount_options "$path")
        [[ $opts == ro* ]] && pass "$name: the $label is a read-only mount on the host ($opts)" ||
          fail "$name: the $label ($path) is mounted '$opts' on the host, not read-only"
      done
      opts=$(mount_options "$staging/0")
      [[ $opts == rw* ]] && pass "$name: the rw volume is a read-write mount on the host" ||
        fail "$name: the rw volume ($staging/0) is mounted '$opts' on the host"
      # What a compromised guest could ask virtiofsd for, tried on the host side.
      if err=$(nsenter -t "$BBX_CONTAINERD_PID" -m -- touch "$staging/1/by-virtiofsd" 2>&1); then
        fail "$name: a write into the read-only volume's host mount succeeded"
      else
        [[ $err == *"Read-only file system"* ]] &&
          pass "$name: a write into the read-only volume's host mount fails: Read-only file system" ||
          fail "$name: a write into the read-only volume's host mount: $err"
      fi
    fi
    echo "written on the host while it runs" > "$vols/rw/from-host.tmp"
    mv "$vols/rw/from-host.tmp" "$vols/rw/from-host"
  else
    fail "$name: $id never got to its ready mark: $(tail -3 "$out" | tr '\n' ' ')"
  fi
  for _ in $(seq 600); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$run_pid" 2>/dev/null; then
    fail "$name: ctr run of $id did not end"
    bbx_remove "$id"
  fi
  status=0
  wait "$run_pid" || status=$?
  [ "$status" -eq 0 ] && pass "$name: $id exited 0" || fail "$name: $id exited $status"
  transcript[$name]=$(cat "$out")
  bbx_remove "$id"
  if [ "$runtime" = "$beaconbox" ]; then
    assert_nothing_left "$name: four mounts"
    [ ! -e "$record" ] && pass "$name: no volume record left" ||
      fail "$name: the volume record $record is left"
  fi
done
echo "--- runc's transcript:"
echo "${transcript[runc]}"
if [ "${transcript[runc]}" = "${transcript[beaconbox]}" ]; then
  pass "beaconbox's transcript of the four mounts equals runc's"
else
  fail "beaconbox's transcript differs from runc's: $(diff <(echo "${transcript[runc]}") \
        <(echo "${transcript[beaconbox]}") | tr '\n' ' ')"
fi
for line in "written on the host before the start" "touch: /vol-ro/new: Read-only file system" \
            "touch in the ro volume: 1" "append in the ro volume: 1" "tmpfs" "in-tmpfs" \
            "append to /etc/hostname: 0" "root writable: 0" "written on the host while it runs"; do
  grep -qxF "$line" <<<"${transcript[beaconbox]}" && pass "beaconbox: '$line'" ||
    fail "beaconbox: no line '$line' in the transcript"
done

# ---- 2. rshared propagation -----------------------------------------------------
mkdir -p "$BBX_DIR/vols-shared"
if out=$(timeout 300 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
           run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$beaconbox" \
           --mount "type=bind,src=$BBX_DIR/vols-shared,dst=/vol,options=rbind:rshared" \
           "$BBX_IMAGE" vol-rshared /bin/true < /dev/null 2>&1); then
  fail "beaconbox: a bind mount with rshared propagation was accepted"
else
  echo "beaconbox, rshared: $out"
  [[ $out == *"asks for rshared propagation, which cannot cross into the container's VM"* ]] &&
    pass "beaconbox: rshared propagation refused with one clear line" ||
    fail "beaconbox: rshared propagation refused, but not with the expected line: $out"
fi
bbx_remove vol-rshared
assert_nothing_left "beaconbox: refused rshared"

# ---- 3. a source that does not exist --------------------------------------------
declare -A refused
for runtime in $runc $beaconbox; do
  name=$(short "$runtime")
  if out=$(timeout 300 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
             run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" \
             --mount "type=bind,src=$BBX_DIR/absent,dst=/vol,options=rbind:rw" \
             "$BBX_IMAGE" "vol-absent-$name" /bin/true < /dev/null 2>&1); then
    refused[$name]=no
  else
    refused[$name]=yes
    echo "$name, absent source: $out"
  fi
  bbx_remove "vol-absent-$name"
done
[ "${refused[runc]}" = yes ] && [ "${refused[beaconbox]}" = yes ] &&
  pass "a source that does not exist is refused, as by runc" ||
  fail "absent source refused: runc ${refused[runc]}, beaconbox ${refused[beaconbox]}"
[[ $out == *"$BBX_DIR/absent (mounted at /vol in the container): the source does not exist on the host"* ]] &&
  pass "beaconbox: the absent source is named in one line" ||
  fail "beaconbox: the refusal does not name the absent source: $out"
assert_nothing_left "beaconbox: absent source"

# ---- 4. read-only rootfs without the mount points -------------------------------
mkdir -p "$BBX_DIR/vols-new"
echo "in the new mount point" > "$BBX_DIR/vols-new/file"
bare_script='/bin/busybox cat /vol-new/file
/bin/busybox touch /new-file 2>&1; echo "touch on the root: $?"
/bin/busybox ls /
/bin/busybox grep -c " /proc proc " /proc/mounts'
declare -A bare
for runtime in $beaconbox $runc; do
  name=$(short "$runtime")
  bare[$name]=$(timeout 600 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
                  run --rm --read-only --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" \
                  --mount "type=bind,src=$BBX_DIR/vols-new,dst=/vol-new,options=rbind:ro" \
                  "$BARE_IMAGE" "bare-$name" /bin/busybox sh -c "$bare_script" < /dev/null 2>&1) &&
    status=0 || status=$?
  echo "--- $name, --read-only bare image (exit $status):"
  echo "${bare[$name]}"
  [ "$status" -eq 0 ] && pass "$name: a read-only bare image with a new mount point runs" ||
    fail "$name: the read-only bare image exited $status"
  bbx_remove "bare-$name"
  # The bare image's layer (busybox alone): what each runtime created in it.
  made="" layers=0
  for layer in "$snapshots"/*/fs; do
    [ -e "$layer/bin/busybox" ] && [ ! -e "$layer/bin/sh" ] || continue
    layers=$((layers + 1))
    made+=$(find "$layer" -mindepth 1 -maxdepth 1 ! -name bin 2>/dev/null | tr '\n' ' ')
  done
  [ "$layers" -gt 0 ] || fail "the bare image's layer is not among $snapshots/*/fs"
  if [ "$runtime" = "$beaconbox" ]; then
    assert_nothing_left "$name: read-only bare image"
    [ -z "$made" ] && pass "$name: the image's layer is left as it was" ||
      fail "$name: mount points were created in the image's layer: $made"
  else
    echo "runc created in the image's layer: ${made:-nothing}"
  fi
done
[ "${bare[runc]}" = "${bare[beaconbox]}" ] &&
  pass "beaconbox's output for the read-only bare image equals runc's" ||
  fail "read-only bare image: beaconbox's output differs from runc's"
grep -qxF "touch: /new-file: Read-only file system" <<<"${bare[beaconbox]}" &&
  pass "beaconbox: the root stays read-only" || fail "beaconbox: the root was writable"

# ---- 5. the shim dies once the volumes are mounted ------------------------------
if bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$beaconbox" \
     --annotation "beaconbox.test/crash-after=rootfs-prepared" \
     --mount "type=bind,src=$BBX_DIR/vols-new,dst=/vol,options=rbind:ro" \
     "$BBX_IMAGE" vol-crash /bin/sleep 600 < /dev/null > "$BBX_DIR/crash.out" 2>&1; then
  fail "crash: ctr run succeeded although the shim was to die"
fi
grep -q "crash-after=rootfs-prepared: killing the shim" "$BBX_DIR/containerd.log" &&
  pass "crash: the shim was killed with the volumes mounted" ||
  fail "crash: no trace of the test hook in containerd's log: $(tail -2 "$BBX_DIR/crash.out")"
bbx_ctr task delete vol-crash > /dev/null 2>&1 || true
bbx_ctr container rm vol-crash > /dev/null 2>&1 || true
assert_nothing_left "beaconbox: shim killed with volumes mounted"

bbx_e2e_finish "volumes end-to-end: all checks passed"
