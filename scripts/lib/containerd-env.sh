# shellcheck shell=bash
# A private containerd for beaconbox's demo and end-to-end tests: its own network
# namespace, root, state, sockets and beaconbox directories under one temp dir.
# Nothing of the machine's own containerd, network or nftables is touched.
#
#   source scripts/lib/containerd-env.sh
#   bbx_env_start OUTPUT_DIR [CONTAINERD_BIN_DIR]   # sets BBX_DIR, BBX_NETNS, BBX_SOCK
#   bbx_ctr run --rm ...                            # ctr against it
#   bbx_env_stop                                    # also run by the EXIT trap
#
# BBX_NETWORK_MODE (default none) picks the network plugin ("bridge" or "none").

bbx_log() { printf '%s\n' "$*" >&2; }

bbx_env_start() {
  local output_dir=$1 bin_dir=${2:-/usr/bin}
  output_dir=$(cd "$output_dir" && pwd)
  for f in containerd-shim-beaconbox-v1 beaconbox-kernel-x86_64 beaconbox-initrd plugins/vmm-qemu.so plugins/storage-erofs.so; do
    if [ ! -e "$output_dir/$f" ]; then
      bbx_log "missing $output_dir/$f: run make"
      return 1
    fi
  done
  [ -x "$bin_dir/containerd" ] || { bbx_log "no containerd in $bin_dir: run scripts/setup.sh"; return 1; }

  BBX_DIR=$(mktemp -d /tmp/bbx-e2e.XXXXXX)
  BBX_NETNS="bbx-$$-${BBX_DIR##*.}"
  BBX_SOCK="$BBX_DIR/containerd.sock"
  BBX_OUTPUT_DIR=$output_dir
  BBX_CONTAINERD_BIN=$bin_dir
  trap bbx_env_stop EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$BBX_DIR"/{root,state,fifo,beacon/run,beacon/log,beacon/state}

  cat > "$BBX_DIR/containerd.toml" <<EOC
version = 2
root = "$BBX_DIR/root"
state = "$BBX_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$BBX_SOCK"
[ttrpc]
  address = "$BBX_SOCK.ttrpc"
[debug]
  level = "debug"
EOC
  local network_mode=${BBX_NETWORK_MODE:-none}
  cat > "$BBX_DIR/beaconbox.toml" <<EOC
[paths]
run_dir = "$BBX_DIR/beacon/run"
log_dir = "$BBX_DIR/beacon/log"
state_dir = "$BBX_DIR/beacon/state"

[vm]
vmm = "qemu"
kernel_path = "${BBX_KERNEL_PATH:-$output_dir/beaconbox-kernel-x86_64}"
initrd_path = "$output_dir/beaconbox-initrd"
guest_connect_timeout_ms = ${BBX_GUEST_TIMEOUT_MS:-60000}

[network]
mode = "$network_mode"

[storage]
driver = "erofs"

[plugins.vmm.qemu]
path = "$output_dir/plugins/vmm-qemu.so"

[plugins.storage.erofs]
path = "$output_dir/plugins/storage-erofs.so"
EOC
  if [ "$network_mode" = bridge ]; then
    cat >> "$BBX_DIR/beaconbox.toml" <<EOC

[plugins.network.bridge]
path = "$output_dir/plugins/net-bridge.so"

[plugins.network.bridge.config]
dns_servers = ["10.88.0.1"]
EOC
  fi

  ip netns add "$BBX_NETNS"
  ip -n "$BBX_NETNS" link set lo up
  # containerd passes its environment to the shims it starts. Only the network
  # namespace is entered (not `ip netns exec`, whose fresh /sys hides the cgroup
  # mounts runc, the baseline, needs).
  nsenter --net="/run/netns/$BBX_NETNS" env PATH="$output_dir:$bin_dir:$PATH" \
    BEACONBOX_CONFIG="$BBX_DIR/beaconbox.toml" \
    "$bin_dir/containerd" --config "$BBX_DIR/containerd.toml" \
    > "$BBX_DIR/containerd.log" 2>&1 &
  BBX_CONTAINERD_PID=$!
  local i
  for i in $(seq 100); do
    [ -S "$BBX_SOCK" ] && return 0
    kill -0 "$BBX_CONTAINERD_PID" 2>/dev/null || break
    sleep 0.1
  done
  bbx_log "containerd did not start: $(tail -5 "$BBX_DIR/containerd.log")"
  return 1
}

bbx_ctr() {
  "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" "$@"
}

# Runs a container with beaconbox: bbx_run ID CMD...; the image is BBX_IMAGE.
bbx_run() {
  local id=$1; shift
  bbx_ctr run --rm --fifo-dir "$BBX_DIR/fifo" --runtime io.containerd.beaconbox.v1 \
    "${BBX_IMAGE:?import an image first}" "$id" "$@"
}

bbx_import_demo_image() {
  local tar="$BBX_DIR/demo-image.tar"
  BBX_IMAGE=$("$BBX_SCRIPTS_DIR/build-demo-image.sh" "$tar")
  bbx_ctr image import --no-unpack=false "$tar" >/dev/null
}

# Pids of the shims this containerd started: each serving shim records its pid in
# its bundle; only processes still running our shim binary are reported.
bbx_shim_pids() {
  local f pid
  for f in "$BBX_DIR"/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$BBX_OUTPUT_DIR/containerd-shim-beaconbox-v1" ]; then
      echo "$pid"
    fi
  done
}

bbx_env_stop() {
  trap - EXIT
  [ -n "${BBX_DIR:-}" ] || return 0
  local pid
  for pid in $(bbx_shim_pids); do kill -TERM "$pid" 2>/dev/null || true; done
  if [ -n "${BBX_CONTAINERD_PID:-}" ] && kill -0 "$BBX_CONTAINERD_PID" 2>/dev/null; then
    kill -TERM "$BBX_CONTAINERD_PID"
    wait "$BBX_CONTAINERD_PID" 2>/dev/null || true
  fi
  sleep 0.2
  for pid in $(bbx_shim_pids); do kill -KILL "$pid" 2>/dev/null || true; done
  # Mounts containerd or a shim left under our directories, deepest first.
  awk -v d="$BBX_DIR" '$2 ~ "^"d {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  [ -n "${BBX_NETNS:-}" ] && ip netns del "$BBX_NETNS" 2>/dev/null || true
  if [ -n "${BBX_KEEP_DIR:-}" ]; then
    bbx_log "kept $BBX_DIR"
  else
    rm -rf "$BBX_DIR"
  fi
  BBX_DIR=
}

BBX_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
