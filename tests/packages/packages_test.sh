#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here; container commands are single-quoted on purpose.
# shellcheck disable=SC2015,SC2016,SC2317
# `make test-packages` (issue 12, items 2, 4, 5): beaconbox's Debian packages, installed
# with dpkg into a scratch root, run containers through containerd from the installed
# layout, take a live plugin upgrade and go away with dpkg -r / dpkg -P.
#
# The scratch root never touches the machine: a private mount namespace (unshare -m)
# holds an overlay whose lower layer is / and whose upper layer is a tmpfs; the test
# chroots into it, so dpkg's database, /usr, /etc and /var it changes are the overlay's,
# and dependencies are satisfied by the packages the machine has installed. containerd
# runs inside the chroot in its own network namespace (scripts/lib/containerd-env.sh),
# with the installed shim from /usr/bin and the installed /etc/beaconbox/config.toml.
#
#   packages_test.sh DEB_DIR        (DEB_DIR: what `make deb` wrote, _output/deb)
# Exit 0: all passed; 1: a check failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
self=$here/$(basename "$0")
usage="usage: packages_test.sh DEB_DIR"

# ---------------------------------------------------------------------------------
# Stage 3, inside the chroot: the checks. DEB_DIR is the chroot's copy of the debs.
if [ "${1:-}" = --in-root ]; then
  debs=$2
  # shellcheck source-path=SCRIPTDIR source=../e2e/lib.sh
  source "$repo/tests/e2e/lib.sh"
  # beaconbox-ctl plugins shows PATH at VERSION and ABI 2 (columns, no regex on versions).
  listed() { awk -v p="$2" -v v="$3" '$5 == p && $3 == v && $4 == "2" {found = 1} END {exit !found}' <<<"$1"; }
  read -r -a plugin_pkgs <<<"$(cat "$debs/plugin-packages")"
  all_pkgs=(beaconbox beaconbox-guest beaconbox-plugin-dev "${plugin_pkgs[@]}")
  upgraded_pkg=$(cat "$debs/upgraded-package")
  upgraded_version=$(cat "$debs/upgraded-version")
  upgraded_so=/usr/lib/beaconbox/plugins/${upgraded_pkg#beaconbox-plugin-}.so

  # 1. dpkg -i of the packages `make deb` built, dependencies from the machine's own.
  if out=$(dpkg -i "$debs"/main/*.deb 2>&1); then
    pass "dpkg -i of ${#all_pkgs[@]} packages"
  else
    echo "FAIL: dpkg -i: $out" >&2
    exit 1
  fi
  for p in "${all_pkgs[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" = "ii " ] && pass "$p is installed" ||
      fail "$p is not installed: $(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>&1)"
    dpkg-query -L "$p" > "/tmp/files-$p"
  done
  provides=$(dpkg-query -W -f='${Provides}' beaconbox)
  grep -qw beaconbox-plugin-abi-2 <<<"$provides" && pass "beaconbox Provides $provides" ||
    fail "beaconbox Provides '$provides', not beaconbox-plugin-abi-2"
  [ "$(dpkg-query -W -f='${Conffiles}' beaconbox | awk '{print $1}')" = /etc/beaconbox/config.toml ] &&
    pass "/etc/beaconbox/config.toml is beaconbox's conffile" || fail "conffiles: $(dpkg-query -W -f='${Conffiles}' beaconbox)"
  for p in "${plugin_pkgs[@]}"; do
    dir=${p#beaconbox-plugin-}
    version=$(dpkg-query -W -f='${Version}' "$p")
    [ "$version" = "$(head -n1 "$repo/plugins/$dir/VERSION")" ] && pass "$p has its own version $version" ||
      fail "$p is at $version, plugins/$dir/VERSION says $(head -n1 "$repo/plugins/$dir/VERSION")"
    depends=$(dpkg-query -W -f='${Depends}' "$p")
    grep -qw beaconbox-plugin-abi-2 <<<"$depends" && ! grep -qE '(^|[ ,])beaconbox( |,|$)' <<<"$depends" &&
      pass "$p depends on beaconbox-plugin-abi-2, not on the host's version" || fail "$p Depends: $depends"
  done
  # The default config declares only the plugins beaconbox Recommends; the others
  # (commented out there) are declared for this listing.
  awk -v root= -f "$repo/tests/install/declare_installed_plugins.awk" /etc/beaconbox/config.toml \
    > /tmp/config-all.toml
  listing=$(beaconbox-ctl --config /tmp/config-all.toml plugins 2>&1) ||
    fail "beaconbox-ctl plugins (installed config, every installed plugin declared): $listing"
  rm -f /tmp/config-all.toml
  for p in "${plugin_pkgs[@]}"; do
    dir=${p#beaconbox-plugin-}
    version=$(dpkg-query -W -f='${Version}' "$p")
    listed "$listing" "/usr/lib/beaconbox/plugins/$dir.so" "$version" &&
      pass "beaconbox-ctl plugins: $dir.so at $version, ABI 2" || fail "beaconbox-ctl plugins: $listing"
  done

  # 2. A plugin package built for an ABI the host does not provide is refused.
  abi99=$debs/abi99/beaconbox-plugin-abi99-example.deb
  if out=$(apt-get install -y --no-download "$abi99" 2>&1); then
    fail "apt-get install of a plugin for ABI 99 succeeded"
  else
    grep -q 'beaconbox-plugin-abi-99' <<<"$out" && pass "apt refuses the ABI-99 plugin: $(grep -m1 'beaconbox-plugin-abi-99' <<<"$out" | sed 's/^ *//')" ||
      fail "apt failed without naming beaconbox-plugin-abi-99: $out"
  fi
  [ ! -e /usr/lib/beaconbox/plugins/abi99-example.so ] && pass "nothing of it was unpacked by apt" ||
    fail "apt unpacked the ABI-99 plugin"
  if out=$(dpkg -i "$abi99" 2>&1); then
    fail "dpkg -i of a plugin for ABI 99 succeeded"
  else
    grep -q 'depends on beaconbox-plugin-abi-99' <<<"$out" &&
      pass "dpkg -i refuses to configure it: $(grep -m1 'depends on beaconbox-plugin-abi-99' <<<"$out" | sed 's/^ *//')" ||
      fail "dpkg -i failed without naming the ABI: $out"
  fi
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' beaconbox-plugin-abi99-example 2>/dev/null || true)
  [ "$status" != "ii " ] && pass "the ABI-99 package is not installed (dpkg status '$status')" ||
    fail "the ABI-99 package is installed"
  dpkg -P beaconbox-plugin-abi99-example > /dev/null 2>&1 || true
  [ ! -e /usr/lib/beaconbox/plugins/abi99-example.so ] || fail "dpkg -P left abi99-example.so"

  # 3. containerd from the installed layout: the shim from /usr/bin on containerd's
  #    PATH, the installed default config (its plugins, kernel and initrd paths as
  #    shipped; its state, run and log dirs are the scratch root's).
  export BBX_OUTPUT_DIR=/usr/bin BBX_CONTAINERD=system BBX_RUNTIME=io.containerd.beaconbox.v1
  export BEACONBOX_CONFIG=/etc/beaconbox/config.toml
  # shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
  source "$repo/scripts/lib/containerd-env.sh"
  held_ctr=
  listener=
  bbx_on_stop() {
    [ -n "$listener" ] && { kill "$listener" 2>/dev/null || true; }
    [ -n "$held_ctr" ] && { kill "$held_ctr" 2>/dev/null || true; }
    return 0
  }
  bbx_env_start
  echo "containerd: $(containerd --version)"
  bbx_import_demo_image
  run_ctr() { bbx_ctr run --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" "$@"; }
  exec_ctr() { bbx_ctr task exec --fifo-dir "$BBX_DIR/fifo" "$@" < /dev/null; }
  # The shim of container ID and the chroot's root as the shim's mount namespace
  # (containerd's, made inside the chroot) shows it through /proc: "PID PREFIX". Its
  # paths read through /proc (cwd, exe, maps) are PREFIX/usr/..., the scratch root's.
  shim_of() {
    local pid cwd tail="$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/$1"
    for pid in $(bbx_shim_pids); do
      cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || continue
      case $cwd in *"$tail") echo "$pid ${cwd%"$tail"}"; return 0 ;; esac
    done
    return 1
  }

  # 3a. The held container: output, address, TCP to the bridge address; then it waits
  #     for /tmp/stop (an exec after the upgrade) and exits 7.
  timeout 600 ip netns exec "$BBX_NETNS" busybox nc -l -p 8080 > /tmp/received &
  listener=$!
  sleep 0.3
  run_ctr --rm "$BBX_IMAGE" held /bin/sh -c 'echo hello-from-the-package; ip -4 -o addr show eth0;
    echo line-from-the-vm | nc 10.88.0.1 8080; while [ ! -e /tmp/stop ]; do sleep 0.2; done;
    echo held-ends-after-the-upgrade; exit 7' < /dev/null > /tmp/held.out 2>&1 &
  held_ctr=$!
  for _ in $(seq 600); do
    grep -q 'inet ' /tmp/held.out 2>/dev/null && break
    kill -0 "$held_ctr" 2>/dev/null || break
    sleep 0.2
  done
  wait "$listener" || true
  listener=
  grep -qx hello-from-the-package /tmp/held.out && pass "the container's output reaches ctr" ||
    fail "held container output: $(cat /tmp/held.out)"
  grep -qE 'inet 10\.88\.[0-9]+\.[0-9]+/16' /tmp/held.out && pass "eth0 has its address from 10.88.0.0/16 (bridge)" ||
    fail "no bridge address: $(cat /tmp/held.out)"
  [ "$(cat /tmp/received)" = line-from-the-vm ] && pass "TCP from the VM to a listener on the bridge" ||
    fail "the listener got '$(cat /tmp/received)'"
  shim=
  prefix=
  read -r shim prefix < <(shim_of held || true) || true
  if [ -z "$shim" ]; then
    fail "no shim serves the held container"
  else
    [ "$(readlink "/proc/$shim/exe")" = "$prefix/usr/bin/containerd-shim-beaconbox-v1" ] &&
      pass "the shim runs from the installed /usr/bin ($prefix/usr/bin from outside the chroot)" ||
      fail "the shim runs from $(readlink "/proc/$shim/exe")"
    for so in vmm-qemu storage-virtiofs net-bridge; do
      grep -q " $prefix/usr/lib/beaconbox/plugins/$so.so$" "/proc/$shim/maps" && pass "the shim mapped the installed $so.so" ||
        fail "the shim did not map /usr/lib/beaconbox/plugins/$so.so: $(grep -F "$so.so" "/proc/$shim/maps" | head -1)"
    done
    vm_cmdline=
    for pid in $(others); do
      case $(exe_of "$pid") in qemu-system-*) vm_cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true) ;; esac
    done
    # vmm-qemu's kernel = "auto" boots the PVH vmlinux when the package has it.
    kernel=beacon-kernel-x86_64
    [ -e /usr/share/beacon/kernel/beacon-vmlinux-x86_64 ] && kernel=beacon-vmlinux-x86_64
    grep -qF -- "-kernel /usr/share/beacon/kernel/$kernel" <<<"$vm_cmdline" &&
      grep -qF -- "-initrd /usr/share/beacon/kernel/beacon-initrd" <<<"$vm_cmdline" &&
      pass "QEMU boots beaconbox-guest's kernel and initrd" || fail "QEMU's command line: ${vm_cmdline:0:600}"
  fi

  # 4. Live upgrade: a rebuilt plugin package with a higher version, under the
  #    running container.
  old_inode=$(stat -c %i "$upgraded_so")
  if out=$(dpkg -i "$debs"/upgrade/*.deb 2>&1); then
    pass "dpkg -i $upgraded_pkg $upgraded_version with a container running"
  else
    fail "dpkg -i of the upgrade: $out"
  fi
  [ "$(dpkg-query -W -f='${Version}' "$upgraded_pkg")" = "$upgraded_version" ] &&
    pass "$upgraded_pkg is now at $upgraded_version" || fail "$upgraded_pkg is at $(dpkg-query -W -f='${Version}' "$upgraded_pkg")"
  [ "$(stat -c %i "$upgraded_so")" != "$old_inode" ] && pass "dpkg replaced $upgraded_so by a new file (rename)" ||
    fail "$upgraded_so kept its inode: rewritten in place"
  if [ -n "$shim" ]; then
    kill -0 "$shim" 2>/dev/null && pass "the running container's shim is still there" || fail "the shim $shim is gone"
    grep -qF " $prefix$upgraded_so (deleted)" "/proc/$shim/maps" 2>/dev/null &&
      pass "the running shim keeps the old $(basename "$upgraded_so") mapped" ||
      fail "the running shim's mapping of $upgraded_so: $(grep -F "$upgraded_so" "/proc/$shim/maps" 2>/dev/null | head -2)"
  fi
  listing=$(beaconbox-ctl plugins 2>&1) || fail "beaconbox-ctl plugins after the upgrade: $listing"
  listed "$listing" "$upgraded_so" "$upgraded_version" &&
    pass "beaconbox-ctl plugins shows $(basename "$upgraded_so") at $upgraded_version" ||
    fail "beaconbox-ctl plugins after the upgrade: $listing"
  exec_out=$(timeout 300 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" task exec \
    --fifo-dir "$BBX_DIR/fifo" --exec-id after-upgrade held /bin/sh -c 'echo exec-after-upgrade; touch /tmp/stop' \
    < /dev/null 2>&1) || true
  grep -qx exec-after-upgrade <<<"$exec_out" && pass "the running container answers an exec after the upgrade" ||
    fail "exec after the upgrade: $exec_out"
  # The held container ends once /tmp/stop exists; if the exec failed, it is killed.
  for _ in $(seq 300); do kill -0 "$held_ctr" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$held_ctr" 2>/dev/null && bbx_ctr task kill -s KILL held > /dev/null 2>&1
  held_status=0
  wait "$held_ctr" || held_status=$?
  held_ctr=
  grep -qx held-ends-after-the-upgrade /tmp/held.out && [ "$held_status" = 7 ] &&
    pass "the running container ends normally (its output, exit 7)" ||
    fail "held container: exit $held_status, output $(tail -3 /tmp/held.out)"

  # 4b. A second container gets the new plugin.
  run_ctr -d "$BBX_IMAGE" second /bin/sleep 600 < /dev/null > /dev/null || fail "ctr run -d second"
  shim2=
  prefix2=
  read -r shim2 prefix2 < <(shim_of second || true) || true
  if [ -n "$shim2" ]; then
    new_inode=$(stat -c %i "$upgraded_so")
    awk -v f="$prefix2$upgraded_so" '$6 == f {print $5}' "/proc/$shim2/maps" | grep -qx "$new_inode" &&
      pass "the second container's shim maps the new $(basename "$upgraded_so") (inode $new_inode)" ||
      fail "the second shim's mapping: $(grep -F "$upgraded_so" "/proc/$shim2/maps" | head -2)"
  else
    fail "no shim serves the second container"
  fi
  second_out=$(exec_ctr --exec-id e1 second /bin/sh -c 'echo second-runs; exit 3' 2>&1) && st=0 || st=$?
  grep -qx second-runs <<<"$second_out" && [ "$st" = 3 ] && pass "the second container runs an exec (output, exit 3)" ||
    fail "second container exec: exit $st, $second_out"
  bbx_remove second
  bbx_env_stop

  # 5. Removal: dpkg -r leaves only the conffile; dpkg -P removes it too.
  dpkg -r "${all_pkgs[@]}" > /tmp/remove.log 2>&1 && pass "dpkg -r of every package" ||
    fail "dpkg -r: $(tail -5 /tmp/remove.log)"
  left=()
  for p in "${all_pkgs[@]}"; do
    while IFS= read -r f; do
      [ -e "$f" ] && [ ! -d "$f" ] && left+=("$f")
    done < "/tmp/files-$p"
  done
  [ "${left[*]}" = /etc/beaconbox/config.toml ] && pass "after dpkg -r only /etc/beaconbox/config.toml is left" ||
    fail "after dpkg -r left: ${left[*]}"
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' beaconbox)" = "rc " ] && pass "beaconbox is 'rc' (config kept)" ||
    fail "beaconbox's status: $(dpkg-query -W -f='${db:Status-Abbrev}' beaconbox)"
  dpkg -P "${all_pkgs[@]}" > /tmp/purge.log 2>&1 && pass "dpkg -P of every package" ||
    fail "dpkg -P: $(tail -5 /tmp/purge.log)"
  [ ! -e /etc/beaconbox ] && pass "dpkg -P removed /etc/beaconbox" || fail "after dpkg -P: $(find /etc/beaconbox)"
  for p in "${all_pkgs[@]}"; do
    dpkg-query -W "$p" > /dev/null 2>&1 && fail "dpkg still knows $p after purge"
  done
  [ "$failures" -eq 0 ]
  exit
fi

# ---------------------------------------------------------------------------------
# Stage 2, in a private mount namespace: the overlay, the chroot, then what the upper
# layer holds once everything was purged.
if [ "${1:-}" = --in-ns ]; then
  work=$2
  root=$work/root
  mount -t tmpfs -o size=4g,mode=0755 bbx-pkg-upper "$work/ov"
  mkdir -p "$work/ov/upper" "$work/ov/work" "$root"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$work/ov/upper,workdir=$work/ov/work" "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  mount --rbind /sys "$root/sys"
  mount -t tmpfs -o mode=0755 bbx-pkg-run "$root/run"
  mount -t tmpfs -o mode=1777,size=4g bbx-pkg-tmp "$root/tmp"
  cp -r "$work/debs" "$root/tmp/debs"
  status=0
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb \
    DEBIAN_FRONTEND=noninteractive /bin/bash "$self" --in-root /tmp/debs || status=$?
  # Nothing of the packages in the upper layer: only dpkg's and apt's own records
  # (their logs, the status file, the available list) and the shim's state and logs
  # (/var/lib/beacon, /var/log/beacon: kept, as documented).
  upper_left=$(cd "$work/ov/upper" && find . \( -type f -o -type l -o -type c \) -printf '%P\n' | grep -vE \
    '^(var/lib/dpkg/(updates/.*|status|status-old|available|available-old|lock.*|triggers/.*|diversions.*|statoverride.*|alternatives/.*|info/format)|var/log/(dpkg\.log|apt/.*|alternatives\.log)|var/cache/(apt|debconf|ldconfig)/.*|var/lib/apt/.*|etc/ld\.so\.cache|var/lib/beacon/.*|var/log/beacon/.*|root/.*)$' || true)
  if [ -z "$upper_left" ]; then
    echo "ok: after dpkg -P the scratch root's upper layer holds no file of the packages"
  else
    echo "FAIL: after dpkg -P the upper layer still holds: $(tr '\n' ' ' <<<"$upper_left")" >&2
    status=1
  fi
  kept=$(cd "$work/ov/upper" && find var/lib/beacon var/log/beacon -type f 2>/dev/null | tr '\n' ' ')
  echo "state and logs kept after purge (documented): ${kept:-none}"
  exit "$status"
fi

# ---------------------------------------------------------------------------------
# Stage 1, on the machine: the packages to install, then the namespace.
debdir=${1:?$usage}
[ "$(id -u)" -eq 0 ] || { echo "packages_test: needs root (unshare, mount, chroot)" >&2; exit 1; }
for p in beaconbox beaconbox-guest beaconbox-plugin-dev; do
  compgen -G "$debdir/${p}_*.deb" > /dev/null || { echo "packages_test: no ${p}_*.deb in $debdir: run make deb" >&2; exit 1; }
done
srcdir=$(compgen -G "$repo/_build/deb/beaconbox-*/obj-*" | head -n1 || true)
[ -n "$srcdir" ] || { echo "packages_test: no package build tree under $repo/_build/deb: run make deb" >&2; exit 1; }
build=$srcdir
src=$(dirname "$build")
work=$(mktemp -d /tmp/bbx-packages.XXXXXX)
upgrade_dir=storage-virtiofs
cleanup() {
  local status=$?
  # The rebuilt plugin back at its own version, so the package tree is as make deb left it.
  if [ -f "$work/VERSION.orig" ]; then
    cp "$work/VERSION.orig" "$src/plugins/$upgrade_dir/VERSION"
    nice -n 19 cmake --build "$build" --target "$upgrade_dir" > /dev/null 2>&1 || true
  fi
  rm -rf --one-file-system "$work"
  exit "$status"
}
trap cleanup EXIT
mkdir -p "$work/ov" "$work/debs/main" "$work/debs/upgrade" "$work/debs/abi99" "$work/pkg"
cp "$debdir"/*.deb "$work/debs/main/"
plugin_pkgs=()
for f in "$repo"/plugins/*/VERSION; do plugin_pkgs+=("beaconbox-plugin-$(basename "$(dirname "$f")")"); done
echo "${plugin_pkgs[*]}" > "$work/debs/plugin-packages"

# The upgrade: the plugin rebuilt in make deb's tree with a higher version in its
# VERSION file (so the .so itself reports it), stripped as dh_strip does, repacked into
# its package with that version.
old_version=$(head -n1 "$src/plugins/$upgrade_dir/VERSION")
new_version=$old_version+upgradetest1
cp "$src/plugins/$upgrade_dir/VERSION" "$work/VERSION.orig"
echo "$new_version" > "$src/plugins/$upgrade_dir/VERSION"
nice -n 19 cmake --build "$build" --target "$upgrade_dir" > "$work/rebuild.log" 2>&1 ||
  { echo "FAIL: rebuilding $upgrade_dir: $(tail -5 "$work/rebuild.log")" >&2; exit 1; }
pkg=beaconbox-plugin-$upgrade_dir
dpkg-deb -R "$debdir/${pkg}_${old_version}_amd64.deb" "$work/pkg/up"
so=$(find "$build" -name "$upgrade_dir.so" -path '*_output/plugins/*' | head -n1)
strip --remove-section=.comment --remove-section=.note --strip-unneeded -o "$work/pkg/up/usr/lib/beaconbox/plugins/$upgrade_dir.so" "$so"
sed -i "s/^Version: .*/Version: $new_version/" "$work/pkg/up/DEBIAN/control"
(cd "$work/pkg/up" && find usr -type f -exec md5sum {} + > DEBIAN/md5sums)
dpkg-deb --root-owner-group -b "$work/pkg/up" "$work/debs/upgrade/${pkg}_${new_version}_amd64.deb" > /dev/null
echo "$pkg" > "$work/debs/upgraded-package"
echo "$new_version" > "$work/debs/upgraded-version"
cp "$work/VERSION.orig" "$src/plugins/$upgrade_dir/VERSION"

# A plugin package built for ABI 99, which no host provides (a throwaway, FAKE .so).
mkdir -p "$work/pkg/abi99/DEBIAN" "$work/pkg/abi99/usr/lib/beaconbox/plugins"
echo "FAKE plugin: only its package's Depends matters" > "$work/pkg/abi99/usr/lib/beaconbox/plugins/abi99-example.so"
cat > "$work/pkg/abi99/DEBIAN/control" <<EOF
Package: beaconbox-plugin-abi99-example
Version: 1.0.0
Architecture: amd64
Maintainer: Beaconbox Maintainers <maintainers@beaconbox.invalid>
Depends: beaconbox-plugin-abi-99
Description: FAKE plugin package for a plugin ABI no host provides
 Used by packages_test.sh only.
EOF
dpkg-deb --root-owner-group -b "$work/pkg/abi99" "$work/debs/abi99/beaconbox-plugin-abi99-example.deb" > /dev/null

status=0
unshare --mount --propagation private -- "$self" --in-ns "$work" || status=$?
[ "$status" -eq 0 ] && echo "packages: all checks passed" || echo "packages: FAILED" >&2
exit "$status"
