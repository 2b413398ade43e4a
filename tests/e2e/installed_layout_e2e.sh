#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here; container commands are single-quoted on purpose.
# shellcheck disable=SC2015,SC2016
# The installed layout (issue 12, item 1): `cmake --install` with prefix /usr into a
# scratch DESTDIR puts exactly the agreed files there, and containerd runs beaconbox
# from that tree alone -- shim on PATH from <DESTDIR>/usr/bin, plugins, kernel and
# initrd as the installed /etc/beaconbox/config.toml names them (its /usr paths
# rewritten into the DESTDIR, its state, run and log dirs into the test's dir), never
# from _output/: a run prints its output and brings back its exit code, and network
# mode bridge gives the guest its address (traffic stays in the test's netns).
#   installed_layout_e2e.sh OUTPUT_DIR [system|1.7] BUILD_DIR
# Exit 0: all passed; 1: a check failed; 77: containerd 1.7 cannot be extracted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
usage="usage: installed_layout_e2e.sh OUTPUT_DIR [system|1.7] BUILD_DIR"
output=${1:?$usage}
containerd_choice=${2:-system}
build=${3:?$usage}
[ -d "$output" ] && output=$(cd "$output" && pwd)
[ -f "$build/cmake_install.cmake" ] || { echo "FAIL: $build is not a configured build dir ($usage)" >&2; exit 1; }
if [ "$containerd_choice" = 1.7 ]; then
  if ! containerd_choice=$("$repo/scripts/fetch-containerd.sh"); then
    echo "SKIP: containerd 1.7 could not be extracted from Debian trixie's package (see above)"
    exit 77
  fi
fi
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

# 1. Install, as a package build does: prefix /usr, DESTDIR a scratch root.
work=$(mktemp -d /tmp/bbx-installed.XXXXXX)
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/root
if ! install_log=$(DESTDIR=$root cmake --install "$build" --prefix /usr 2>&1); then
  echo "FAIL: cmake --install $build --prefix /usr: $install_log" >&2
  exit 1
fi
# Every file of the agreed layout ...
expected=(usr/bin/containerd-shim-beaconbox-v1 usr/bin/beaconbox-ctl etc/beaconbox/config.toml
          usr/share/beacon/kernel/beacon-kernel-x86_64 usr/share/beacon/kernel/beacon-initrd
          usr/include/beaconbox/plugin_abi.h usr/bin/beaconbox-vmm-conformance
          usr/lib/beaconbox/cni/tc-redirect-tap)
# The PVH vmlinux is installed when the build could extract it (vmm-qemu's kernel =
# "auto" boots it then; else the bzImage).
kernel=beacon-kernel-x86_64
if [ -e "$output/beaconbox-vmlinux-x86_64" ]; then
  kernel=beacon-vmlinux-x86_64
  expected+=(usr/share/beacon/kernel/beacon-vmlinux-x86_64)
fi
plugin_dirs=()
for version_file in "$repo"/plugins/*/VERSION; do
  dir=$(basename "$(dirname "$version_file")")
  plugin_dirs+=("$dir")
  expected+=("usr/lib/beaconbox/plugins/$dir.so")
done
for f in "${expected[@]}"; do
  [ -f "$root/$f" ] && pass "installed /$f" || fail "cmake --install did not install /$f"
done
for f in "$root"/usr/lib/cmake/BeaconboxPluginAbi/BeaconboxPluginAbiConfig.cmake \
         "$root"/usr/lib/pkgconfig/beaconbox-plugin-abi.pc; do
  [ -f "$f" ] || [ -n "$(find "$root/usr/lib" -path "*/${f#"$root"/usr/lib/}" 2>/dev/null)" ] &&
    pass "installed ${f#"$root"}" || fail "cmake --install did not install ${f#"$root"} (or its multiarch twin)"
done
[ -x "$root/usr/bin/containerd-shim-beaconbox-v1" ] && [ -x "$root/usr/bin/beaconbox-ctl" ] ||
  fail "the shim or beaconbox-ctl is not executable"
cmp -s "$repo/config/config.toml" "$root/etc/beaconbox/config.toml" &&
  pass "/etc/beaconbox/config.toml is config/config.toml as is (prefix /usr)" ||
  fail "/etc/beaconbox/config.toml differs from config/config.toml"
# ... and nothing else: no test binary, fixture plugin, hostile initrd or build path.
unexpected=$(cd "$root" && find . -type f -printf '%P\n' | grep -vE \
  '^(usr/bin/(containerd-shim-beaconbox-v1|beaconbox-ctl|beaconbox-vmm-conformance)|etc/beaconbox/config\.toml|usr/share/beacon/kernel/beacon-(kernel-x86_64|vmlinux-x86_64|initrd)|usr/lib/beaconbox/plugins/[a-z0-9-]+\.so|usr/lib/beaconbox/cni/tc-redirect-tap|usr/include/beaconbox/[a-z_]+\.(h|hpp)|usr/share/beaconbox/plugin-abi/(plugin\.map|proto/beaconbox/plugin/v1/[a-z]+\.proto)|usr/lib(/[a-z0-9_-]+)?/cmake/BeaconboxPluginAbi/BeaconboxPluginAbi[A-Za-z-]*\.cmake|usr/lib(/[a-z0-9_-]+)?/pkgconfig/beaconbox-plugin-abi\.pc)$' || true)
[ -z "$unexpected" ] && pass "nothing installed outside the agreed layout" ||
  fail "installed outside the layout: $(tr '\n' ' ' <<<"$unexpected")"
for so in "$root"/usr/lib/beaconbox/plugins/*.so; do
  [ "$(basename "$so" .so)" = hostile ] && fail "a test plugin was installed: $so"
  case " ${plugin_dirs[*]} " in *" $(basename "$so" .so) "*) ;; *) fail "a plugin without plugins/<dir>/VERSION was installed: $so" ;; esac
done
grep -qrF "$output" "$root/etc" && fail "the installed config names $output"

# 2. The test's config: the installed one with its /usr paths moved into the DESTDIR and
#    its state, run and log dirs into the test's dir. Nothing else is changed.
config=$work/config.toml
sed -e "s#^share_dir = \"/usr/#share_dir = \"$root/usr/#" \
    -e "s#^state_dir = \".*\"#state_dir = \"$work/state\"#" \
    -e "s#^log_dir = \".*\"#log_dir = \"$work/log\"#" \
    -e "s#^run_dir = \".*\"#run_dir = \"$work/run\"#" \
    -e "s#^path = \"/usr/lib/beaconbox/#path = \"$root/usr/lib/beaconbox/#" \
    "$root/etc/beaconbox/config.toml" > "$config"
left=$(grep -vE '^[[:space:]]*#' "$config" | grep -E '"/(usr|var|run|etc)/' || true)
[ -z "$left" ] && pass "the test's config names no path outside $work" || fail "config still names: $left"
mkdir -p "$work/state" "$work/log" "$work/run"
ctl=$root/usr/bin/beaconbox-ctl
validated=$("$ctl" config validate "$config" 2>&1) && [ "$validated" = OK ] &&
  pass "the installed beaconbox-ctl validates the installed config" || fail "config validate: $validated"
# The default config declares only the plugins the host package Recommends; the others
# (commented out there) are declared for the listing when installed.
config_all=$work/config-all.toml
awk -v root="$root" -f "$repo/tests/install/declare_installed_plugins.awk" "$config" |
  sed -e "s#^path = \"/usr/lib/beaconbox/#path = \"$root/usr/lib/beaconbox/#" > "$config_all"
listing=$("$ctl" --config "$config_all" plugins 2>&1) || fail "beaconbox-ctl plugins: $listing"
for dir in "${plugin_dirs[@]}"; do
  version=$(head -1 "$repo/plugins/$dir/VERSION")
  grep -qE "^[a-z]+ +[a-z-]+ +${version//./\\.} +2 +$root/usr/lib/beaconbox/plugins/$dir\.so$" <<<"$listing" &&
    pass "plugins: $dir.so reports its own version $version and ABI 2" ||
    fail "plugins does not show $dir.so at version $version: $(grep -F "$dir.so" <<<"$listing")"
done

# 3. containerd with nothing of _output/ on its PATH: the shim is the installed one.
#    The config reaches the shim as an installed system's runtime entry names it
#    (`beaconbox-ctl containerd-config`: options ConfigPath; here ctr's equivalent,
#    --runtime-config-path). containerd's BEACONBOX_CONFIG names a config whose VMM
#    plugin does not exist, so a container runs only if the option wins.
decoy=$work/decoy.toml
printf '[plugins.vmm.qemu]\npath = "%s/absent/vmm-qemu.so"\n' "$work" > "$decoy"
export BBX_OUTPUT_DIR=$root/usr/bin BBX_CONTAINERD=$containerd_choice
export BBX_RUNTIME=io.containerd.beaconbox.v1 BEACONBOX_CONFIG=$decoy
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_env_start
# The library's EXIT trap stops containerd; the scratch root goes after it.
trap 'status=$?; bbx_env_stop || true; rm -rf --one-file-system "$work"; exit $status' EXIT
echo "containerd: $("$BBX_CONTAINERD_BIN/containerd" --version)"
bbx_import_demo_image
run_installed() {
  bbx_ctr run --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" --runtime-config-path "$config" \
    "$@" < /dev/null
}

# 3a. A running container: its shim, plugins, kernel and initrd are the installed ones.
run_installed -d "$BBX_IMAGE" inst-held /bin/sleep 600 > /dev/null ||
  fail "ctr run -d --runtime-config-path $config failed"
shim=$(bbx_shim_pid_of inst-held || true)
if [ -z "$shim" ]; then
  fail "no shim serves inst-held"
else
  [ "$(readlink "/proc/$shim/exe")" = "$root/usr/bin/containerd-shim-beaconbox-v1" ] &&
    pass "the shim runs from $root/usr/bin" || fail "the shim runs from $(readlink "/proc/$shim/exe")"
  [ "$(cat "$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/inst-held/beaconbox-config-path" 2>/dev/null)" = "$config" ] &&
    pass "the shim uses the config the runtime options name (recorded in the bundle for delete)" ||
    fail "the bundle does not record the config path of the runtime options"
  maps=$(awk '$6 ~ /\.so$/ {print $6}' "/proc/$shim/maps" | sort -u)
  for dir in vmm-qemu storage-virtiofs net-bridge; do
    grep -qx "$root/usr/lib/beaconbox/plugins/$dir.so" <<<"$maps" && pass "the shim mapped the installed $dir.so" ||
      fail "the shim did not map $root/usr/lib/beaconbox/plugins/$dir.so: $(grep beaconbox <<<"$maps" | tr '\n' ' ')"
  done
  grep -qF "$output/" <<<"$maps" && fail "the shim mapped something of $output"
  vm_cmdline=
  for pid in $(others); do
    case $(exe_of "$pid") in qemu-system-*) vm_cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null || true) ;; esac
  done
  grep -qF -- "-kernel $root/usr/share/beacon/kernel/$kernel" <<<"$vm_cmdline" &&
    grep -qF -- "-initrd $root/usr/share/beacon/kernel/beacon-initrd" <<<"$vm_cmdline" &&
    pass "QEMU boots the installed kernel and initrd" || fail "QEMU's command line: ${vm_cmdline:0:600}"
fi
bbx_remove inst-held

# 3b. ctr run --rm: output, network (address and a TCP line to the bridge address,
#     inside the test's netns) and the exit code, in one VM.
in_netns busybox nc -l -p 8080 > "$work/received" &
listener=$!
sleep 0.3
status=0
out=$(run_installed --rm "$BBX_IMAGE" inst-run /bin/sh -c 'echo hello-from-the-installed-tree; ip -4 -o addr show eth0;
  echo line-from-the-vm | nc 10.88.0.1 8080; exit 7') || status=$?
wait "$listener" || true
grep -qx hello-from-the-installed-tree <<<"$out" && pass "ctr run --rm prints the container's output" ||
  fail "output: $out"
[ "$status" = 7 ] && pass "sh -c 'exit 7' -> ctr exits 7" || fail "exit code $status, not 7"
grep -qE 'inet 10\.88\.[0-9]+\.[0-9]+/16' <<<"$out" && pass "eth0 has its address from 10.88.0.0/16 (bridge mode)" ||
  fail "no bridge address on eth0: $out"
[ "$(cat "$work/received")" = line-from-the-vm ] && pass "TCP from the VM to a listener on the bridge" ||
  fail "the listener got '$(cat "$work/received")'"

bbx_e2e_finish "installed layout: all checks passed under $("$BBX_CONTAINERD_BIN/containerd" --version | awk '{print $3}')"
