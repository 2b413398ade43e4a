# shellcheck shell=bash
# A private containerd for beaconbox's demo, end-to-end tests and benchmarks.
#
# containerd runs as root in its own network namespace (bbx-<pid>-<rand>, only lo,
# up) and its own mount namespace, with its own root, state, sockets and config
# under one temp dir. The mount namespace gets a private tmpfs on /run, so what
# containerd and its shims write to the fixed /run/containerd paths (shim sockets,
# runc's state) never reaches the machine's /run/containerd, and every mount they
# make goes away with the namespace. The machine's /var/lib/containerd, host network
# and nftables are never touched.
#
#   source scripts/lib/containerd-env.sh
#   bbx_env_start                 # sets BBX_DIR, BBX_SOCK, BBX_NETNS, BBX_NS, ...
#   bbx_import_demo_image         # sets BBX_IMAGE
#   bbx_run ID CMD...             # ctr run --rm with $BBX_RUNTIME, stdin from /dev/null
#   bbx_ctr ARGS...               # ctr against the private containerd and namespace
#   bbx_vm_accelerators           # which accelerator each VM used, and why
#   bbx_env_stop                  # also run by the EXIT trap (and on INT/TERM/HUP)
#   bbx_bench_start beaconbox|any # benchmarks: bbx_env_start + bbx_import_demo_image
#
# Inputs (environment, all optional):
#   BBX_OUTPUT_DIR   beaconbox's output dir, first on containerd's PATH
#                    (default: <repo>/_output)
#   BBX_CONTAINERD   "system" (/usr/bin, Debian bookworm's 1.6), "1.7" or "2" (extracted
#                    by scripts/fetch-containerd.sh), or a directory holding containerd
#   BBX_RUNTIME      runtime for bbx_run (default io.containerd.beaconbox.v1)
#   BEACONBOX_CONFIG passed to the shim; unset: bbx_env_start writes one whose
#                    run/log/state dirs are under BBX_DIR. BEACON_* and BEACONBOX_*
#                    variables are passed through to containerd and its shims.
#   BBX_NETWORK_MODE network.mode of the generated beaconbox config (default none)
#   BBX_KEEP_DIR=1   keep BBX_DIR (logs) after stopping
#   BBX_ENV_PARENT   where BBX_DIR is made (default /tmp; /dev/shm puts the shims' run
#                    dirs, so a template clone's memory copy, on tmpfs as /run is on a
#                    host; bench/template)
#   BBX_LOG_LEVEL    containerd's log level (default info)
#   BBX_CONTAINERD_CRI=1  keep containerd's CRI plugin (disabled otherwise)
#                    (bbx_cri_prepare sets it with what CRI needs, see there)
#   BBX_CONTAINERD_CONFIG_EXTRA  a file appended to containerd's config (e.g. the
#                    runtime entry `beaconbox-ctl containerd-config` prints)
#   BBX_PRIVATE_IPC=1  containerd (and so CRI's host-IPC pods) in an IPC namespace of
#                    its own, gone with it (tests/critest: its specs make SysV segments)
#
# The EXIT trap belongs to this library once bbx_env_start ran; a script needing its
# own cleanup puts it in a function named bbx_on_stop, called first by bbx_env_stop.

BBX_SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BBX_REPO_DIR=$(cd "$BBX_SCRIPTS_DIR/.." && pwd)
BBX_BEACONBOX_RUNTIME=io.containerd.beaconbox.v1

bbx_log() { printf '%s\n' "$*" >&2; }

# Prints the directory holding containerd, ctr and containerd-shim-runc-v2 for
# $BBX_CONTAINERD.
bbx_containerd_bin_dir() {
  case ${BBX_CONTAINERD:-system} in
    system) echo /usr/bin ;;
    1.7) "$BBX_SCRIPTS_DIR/fetch-containerd.sh" ;;
    2) "$BBX_SCRIPTS_DIR/fetch-containerd.sh" --version 2 ;;
    /*) echo "$BBX_CONTAINERD" ;;
    *) bbx_log "BBX_CONTAINERD=$BBX_CONTAINERD: use system, 1.7, 2 or a directory"; return 1 ;;
  esac
}

# For test scripts: exits 1 with one line when OUTPUT_DIR lacks what beaconbox needs
# (and the EXTRA files, relative to it).
bbx_require_beaconbox() {
  local output_dir=$1 missing f
  shift
  missing=$(bbx_beaconbox_missing "$output_dir")
  for f in "$@"; do [ -e "$output_dir/$f" ] || missing+=$'\n'"$output_dir/$f"; done
  if [ -n "$missing" ]; then
    echo "FAIL: beaconbox is not built in $output_dir (run make); missing: $(tr '\n' ' ' <<<"$missing")" >&2
    exit 1
  fi
}

# For benchmarks: prints the runtimes to measure, one a line: runc's shim (the
# baseline) always, beaconbox's when OUTPUT_DIR has it (else says so on stderr).
bbx_measured_runtimes() {
  local missing
  echo io.containerd.runc.v2
  missing=$(bbx_beaconbox_missing "$1")
  if [ -z "$missing" ]; then
    echo "$BBX_BEACONBOX_RUNTIME"
  else
    bbx_log "beaconbox not measured: missing $(tr '\n' ' ' <<<"$missing")"
  fi
}

# For benchmarks (bench/*/run.sh), on an option's value: exits 2 with one line unless
# VALUE is a whole number of at least MIN (default 1).
#   bbx_bench_number FLAG VALUE [MIN]
bbx_bench_number() {
  local flag=$1 value=$2 min=${3:-1}
  [[ $value =~ ^[0-9]+$ ]] && [ "$((10#$value))" -ge "$min" ] && return 0
  echo "run.sh: -$flag wants a whole number of at least $min, not '$value'" >&2
  exit 2
}

# For benchmarks taking -t runc|beaconbox|both: sets the array BBX_RUNTIMES to the
# runtimes to measure, runc's shim (the baseline) first; exits 2 with one line on
# anything else. Call it after sourcing this file (BBX_BEACONBOX_RUNTIME).
#   bbx_bench_runtimes CHOICE
bbx_bench_runtimes() {
  case $1 in
    runc) BBX_RUNTIMES=(io.containerd.runc.v2) ;;
    beaconbox) BBX_RUNTIMES=("$BBX_BEACONBOX_RUNTIME") ;;
    both) BBX_RUNTIMES=(io.containerd.runc.v2 "$BBX_BEACONBOX_RUNTIME") ;;
    *) echo "run.sh: -t wants runc, beaconbox or both, not '$1'" >&2; exit 2 ;;
  esac
}

# For benchmarks: starts the private containerd (bbx_env_start) and imports the demo
# image (BBX_IMAGE). With `beaconbox`, first exits 1 with one line when the output
# dir lacks what beaconbox needs (and the EXTRA files, relative to it); `any` when
# beaconbox is measured only if built (bbx_measured_runtimes) or not at all.
#   bbx_bench_start beaconbox|any [EXTRA...]
bbx_bench_start() {
  local missing f output_dir=${BBX_OUTPUT_DIR:-$BBX_REPO_DIR/_output}
  if [ "$1" = beaconbox ]; then
    missing=$(bbx_beaconbox_missing "$output_dir")
    for f in "${@:2}"; do [ -e "$output_dir/$f" ] || missing+=$'\n'"$output_dir/$f"; done
    missing=${missing#$'\n'}
    if [ -n "$missing" ]; then
      echo "run.sh: beaconbox is not built; missing: $(tr '\n' ' ' <<<"$missing")" >&2
      exit 1
    fi
  fi
  bbx_env_start
  bbx_import_demo_image
}

# For test scripts: turns BBX_CONTAINERD "1.7" or "2" into the directory
# fetch-containerd.sh extracted it to, or exits 77 (ctest's skip) saying why. "system"
# and a directory are left as they are.
bbx_select_containerd_or_skip() {
  local wanted=${BBX_CONTAINERD:-system} dir
  case $wanted in
    1.7 | 2)
      if ! dir=$("$BBX_SCRIPTS_DIR/fetch-containerd.sh" --version "$wanted"); then
        echo "SKIP: containerd $wanted could not be extracted from Debian's package (see above)"
        exit 77
      fi
      export BBX_CONTAINERD=$dir ;;
  esac
}

# Prints, one a line, what beaconbox needs from OUTPUT_DIR that is not there.
bbx_beaconbox_missing() {
  local output_dir=$1 f
  for f in containerd-shim-beaconbox-v1 beaconbox-kernel-x86_64 beaconbox-initrd \
           plugins/vmm-qemu.so plugins/storage-virtiofs.so; do
    [ -e "$output_dir/$f" ] || echo "$output_dir/$f"
  done
}

# The kernel release inside a bzImage: `file`, else the header's version string
# (setup header field kernel_version at 0x20e, an offset from 0x200).
bbx_kernel_release() {
  local image=$1 release offset
  release=$(file -bL "$image" 2>/dev/null | sed -n 's/.*, version \([^ ]*\) .*/\1/p')
  if [ -z "$release" ] && [ -r "$image" ]; then
    offset=$(od -An -tu2 -j $((0x20e)) -N2 "$image" | tr -d ' ')
    [ -n "$offset" ] && release=$(dd if="$image" bs=1 skip=$((offset + 0x200)) count=128 \
                                   status=none | tr '\0' '\n' | head -1 | cut -d' ' -f1)
  fi
  [ -n "$release" ] || { bbx_log "cannot read a kernel release from $image"; return 1; }
  echo "$release"
}

bbx_write_beaconbox_config() {
  local output_dir=$1 config=$2
  cat > "$config" <<EOC
# Written by scripts/lib/containerd-env.sh for one private containerd.
[paths]
share_dir = "$BBX_DIR/beacon/share"
run_dir = "$BBX_DIR/beacon/run"
log_dir = "$BBX_DIR/beacon/log"
state_dir = "$BBX_DIR/beacon/state"

[vm]
vmm = "qemu"
kernel_path = "${BBX_KERNEL_PATH:-$output_dir/beaconbox-kernel-x86_64}"
initrd_path = "${BBX_INITRD_PATH:-$output_dir/beaconbox-initrd}"
guest_connect_timeout_ms = ${BBX_GUEST_TIMEOUT_MS:-60000}

[network]
mode = "${BBX_NETWORK_MODE:-none}"

[storage]
driver = "virtiofs"

[log]
level = "${BEACONBOX_LOG_LEVEL:-info}"

[plugins.vmm.qemu]
path = "$output_dir/plugins/vmm-qemu.so"

[plugins.storage.virtiofs]
path = "$output_dir/plugins/storage-virtiofs.so"
EOC
  if [ "${BBX_NETWORK_MODE:-none}" = bridge ]; then
    printf '\n[plugins.network.bridge]\npath = "%s"\n\n[plugins.network.bridge.config]\ndns_servers = ["10.88.0.1"]\n' \
      "$output_dir/plugins/net-bridge.so" >> "$config"
  fi
  # network.mode = "cni": the plugin's keys come from BEACON_CNI_CONF_DIR,
  # BEACON_CNI_BIN_DIR and BEACON_CNI_NETWORK (passed through to the shims).
  if [ "${BBX_NETWORK_MODE:-none}" = cni ]; then
    printf '\n[plugins.network.cni]\npath = "%s"\n' "$output_dir/plugins/net-cni.so" >> "$config"
  fi
}

bbx_write_containerd_config() {
  cat > "$BBX_DIR/containerd.toml" <<EOC
# Written by scripts/lib/containerd-env.sh: only what ctr run needs, nothing shared.
version = 2
root = "$BBX_DIR/root"
state = "$BBX_DIR/state"
disabled_plugins = [
$([ "${BBX_CONTAINERD_CRI:-}" = 1 ] || echo '  "io.containerd.grpc.v1.cri",')
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
  "io.containerd.nri.v1.nri",
]

[grpc]
  address = "$BBX_SOCK"
[ttrpc]
  address = "$BBX_SOCK.ttrpc"
[debug]
  address = ""
  level = "${BBX_LOG_LEVEL:-info}"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$BBX_DIR/opt"
EOC
  if [ -n "${BBX_CONTAINERD_CONFIG_EXTRA:-}" ]; then
    printf '\n# From BBX_CONTAINERD_CONFIG_EXTRA (%s):\n' "$BBX_CONTAINERD_CONFIG_EXTRA" >> "$BBX_DIR/containerd.toml"
    cat "$BBX_CONTAINERD_CONFIG_EXTRA" >> "$BBX_DIR/containerd.toml" || return 1
  fi
}

bbx_env_start() {
  if [ -n "${BBX_DIR:-}" ]; then bbx_log "bbx_env_start: already started ($BBX_DIR)"; return 1; fi
  if [ "$(id -u)" -ne 0 ]; then bbx_log "bbx_env_start: containerd needs root: run as root"; return 1; fi
  local tool
  for tool in ip nsenter unshare mount umount; do
    command -v "$tool" >/dev/null || { bbx_log "bbx_env_start: $tool not found (iproute2/util-linux)"; return 1; }
  done
  BBX_OUTPUT_DIR=${BBX_OUTPUT_DIR:-$BBX_REPO_DIR/_output}
  [ -d "$BBX_OUTPUT_DIR" ] && BBX_OUTPUT_DIR=$(cd "$BBX_OUTPUT_DIR" && pwd)
  BBX_RUNTIME=${BBX_RUNTIME:-$BBX_BEACONBOX_RUNTIME}
  BBX_CONTAINERD_BIN=$(bbx_containerd_bin_dir) || return 1
  local bin
  for bin in containerd ctr containerd-shim-runc-v2; do
    [ -x "$BBX_CONTAINERD_BIN/$bin" ] ||
      { bbx_log "bbx_env_start: no $bin in $BBX_CONTAINERD_BIN: run scripts/setup.sh"; return 1; }
  done
  if [ "$BBX_RUNTIME" = runc ] || [ "$BBX_RUNTIME" = io.containerd.runc.v2 ]; then
    command -v runc >/dev/null || { bbx_log "bbx_env_start: runc not found: apt-get install runc"; return 1; }
  fi

  # Under /tmp, never under /run: ctr (outside) and containerd (inside, with its
  # own /run) must see the same files.
  BBX_DIR=$(mktemp -d "${BBX_ENV_PARENT:-/tmp}/bbx-env.XXXXXX")
  local rand=${BBX_DIR##*.}
  rand=$(printf '%s' "$rand" | tr '[:upper:]' '[:lower:]')
  BBX_NETNS="bbx-$$-$rand"
  BBX_NS=${BBX_NAMESPACE:-bbx-$rand}
  BBX_SOCK="$BBX_DIR/containerd.sock"
  BBX_CONTAINERD_PID=
  BBX_MNTNS_ID=
  BBX_NETNS_ID=
  trap bbx_env_stop EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  mkdir -p "$BBX_DIR"/{root,state,opt,fifo,home,beacon/share,beacon/run,beacon/log,beacon/state}

  bbx_write_containerd_config
  if [ -z "${BEACONBOX_CONFIG:-}" ]; then
    BBX_BEACONBOX_CONFIG="$BBX_DIR/beaconbox.toml"
    bbx_write_beaconbox_config "$BBX_OUTPUT_DIR" "$BBX_BEACONBOX_CONFIG"
  else
    BBX_BEACONBOX_CONFIG=$BEACONBOX_CONFIG
  fi

  ip netns add "$BBX_NETNS" || { bbx_log "bbx_env_start: ip netns add $BBX_NETNS failed"; return 1; }
  ip -n "$BBX_NETNS" link set lo up
  BBX_NETNS_ID=$(stat -L -c %i "/run/netns/$BBX_NETNS")

  # containerd's environment, handed on to the shims it starts: the output dir first
  # on PATH (containerd resolves io.containerd.beaconbox.v1 to the binary
  # containerd-shim-beaconbox-v1 there), beaconbox's own variables, nothing else.
  local envs=(PATH="$BBX_OUTPUT_DIR:$BBX_CONTAINERD_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
              HOME="$BBX_DIR/home" TMPDIR="$BBX_DIR/home" BEACONBOX_CONFIG="$BBX_BEACONBOX_CONFIG")
  local name
  while IFS= read -r name; do
    case $name in BEACONBOX_CONFIG) ;; BEACON_*|BEACONBOX_*) envs+=("$name=${!name}") ;; esac
  done < <(compgen -e)

  # Only the network namespace is entered with nsenter (`ip netns exec` would mount a
  # fresh /sys without the cgroup mounts runc needs); unshare adds the mount
  # namespace, slave to the host's so nothing mounted inside leaks out.
  local ipc=()
  [ "${BBX_PRIVATE_IPC:-}" = 1 ] && ipc=(--ipc)
  # shellcheck disable=SC2016
  nsenter --net="/run/netns/$BBX_NETNS" -- \
    unshare --mount "${ipc[@]}" --propagation slave -- \
    /bin/sh -c 'umount -l /run/netns 2>/dev/null; mount -t tmpfs -o mode=0755,size=64m bbx-run /run &&
                mkdir -p /run/containerd && exec "$@"' bbx-containerd \
    env -i "${envs[@]}" "$BBX_CONTAINERD_BIN/containerd" --config "$BBX_DIR/containerd.toml" \
    > "$BBX_DIR/containerd.log" 2>&1 < /dev/null &
  BBX_CONTAINERD_PID=$!
  local i
  for i in $(seq 300); do
    if [ -S "$BBX_SOCK" ] && bbx_ctr version >/dev/null 2>&1; then break; fi
    if ! kill -0 "$BBX_CONTAINERD_PID" 2>/dev/null; then i=300; break; fi
    sleep 0.1
  done
  if [ "$i" -ge 300 ]; then
    bbx_log "containerd did not start within 30 s: $(tail -3 "$BBX_DIR/containerd.log" | tr '\n' ' ')"
    return 1
  fi
  BBX_MNTNS_ID=$(stat -L -c %i "/proc/$BBX_CONTAINERD_PID/ns/mnt")
}

bbx_ctr() {
  "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" "$@"
}

# ctr inside containerd's mount namespace (its own /run): for ctr commands without
# --fifo-dir (`ctr c restore`), whose stdio FIFOs go to /run/containerd/fifo, where
# the shim must find them. Ended after 600 s (a hang is the caller's failure).
bbx_ctr_in_containerd_mounts() {
  timeout 600 nsenter --mount="/proc/$BBX_CONTAINERD_PID/ns/mnt" -- \
    "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" "$@"
}

# bbx_run ID CMD...: one container with $BBX_RUNTIME, removed after; ctr's status.
bbx_run() {
  local id=$1
  shift
  bbx_ctr run --rm --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" \
    "${BBX_IMAGE:?bbx_import_demo_image first}" "$id" "$@" < /dev/null
}

# bbx_run_detached ID CMD...: a container left running (for RSS, kill tests).
bbx_run_detached() {
  local id=$1
  shift
  bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" \
    "${BBX_IMAGE:?bbx_import_demo_image first}" "$id" "$@" < /dev/null > /dev/null
}

# One line per VM the shims of this environment booted: its accelerator and why, cut
# to WIDTH characters (default 300, for printing; 0: whole, for checks: on a host whose
# /dev/kvm fails the probe the reason is long and what follows it would be cut off).
bbx_vm_accelerators() {
  local width=${1:-300}
  grep -o 'VM [^ ]* uses [a-z]* ([^)]*): .*' "$BBX_DIR/containerd.log" 2>/dev/null |
    if [ "$width" -gt 0 ]; then cut -c"1-$width"; else cat; fi || true
}

# Kills and removes one container if it exists (for tests that leave one running).
bbx_remove() {
  local id=$1 i
  bbx_ctr task kill -s KILL "$id" >/dev/null 2>&1 || true
  for i in $(seq 50); do
    bbx_ctr task ls -q 2>/dev/null | grep -qx "$id" || break
    bbx_ctr task delete "$id" >/dev/null 2>&1 || sleep 0.1
  done
  bbx_ctr container rm "$id" >/dev/null 2>&1 || true
}

# Switches the beaconbox config bbx_env_start wrote to storage.driver erofs, with
# TRANSPORT (blk or virtiofs; none: the plugin's default); the shims read the config
# at each start. One line and status 1 when the config is not the generated one.
#   bbx_use_erofs [TRANSPORT]
bbx_use_erofs() {
  local transport=${1:-}
  grep -q '^driver = "virtiofs"$' "$BBX_BEACONBOX_CONFIG" ||
    { bbx_log "bbx_use_erofs: $BBX_BEACONBOX_CONFIG has no driver = \"virtiofs\" line to switch"; return 1; }
  sed -i 's/^driver = "virtiofs"$/driver = "erofs"/' "$BBX_BEACONBOX_CONFIG"
  printf '\n[plugins.storage.erofs]\npath = "%s"\n' "$BBX_OUTPUT_DIR/plugins/storage-erofs.so" \
    >> "$BBX_BEACONBOX_CONFIG"
  [ -z "$transport" ] ||
    printf '[plugins.storage.erofs.config]\ntransport = "%s"\n' "$transport" >> "$BBX_BEACONBOX_CONFIG"
}

bbx_import_demo_image() {
  local tar="$BBX_DIR/demo-image.tar" out
  BBX_IMAGE=$("$BBX_SCRIPTS_DIR/build-demo-image.sh" "$tar") || return 1
  if ! out=$(bbx_ctr image import "$tar" 2>&1); then
    bbx_log "ctr image import failed: $out"
    return 1
  fi
  # grep reads all of ls's lines (-q would quit at the match and, under pipefail, fail
  # the pipeline when ctr still writes, e.g. the sha256: names CRI adds in k8s.io).
  bbx_ctr image ls -q | grep -xF "$BBX_IMAGE" > /dev/null ||
    { bbx_log "ctr image import did not register $BBX_IMAGE: $out"; return 1; }
}

# containerd's CRI plugin as a Kubernetes node has it (issue 17), for the tests and
# benchmarks that drive it with bbx-cri (tests/e2e/cri_client). Before bbx_env_start:
#   bbx_cri_prepare DIR   DIR is the caller's (it removes it after bbx_env_stop)
# writes a CNI conflist (Debian's bridge + host-local on $BBX_CRI_SUBNET_PREFIX.0/24,
# default 10.79.0, used only in the environment's network namespace; with
# $BBX_CRI_SUBNET6_PREFIX ("fd79:79") also on its ::/64 with an IPv6 default route, dual
# stack; host-local's store in DIR/ipam; portmap for the pods' hostPorts, its iptables
# rules in that namespace too) to DIR/net.d and CRI's config to DIR/cri.toml: a pause stand-in
# as sandbox image, CNI from /usr/lib/cni (CRI brings lo up with its loopback), the
# runc and beaconbox runtime handlers (the shim finds its config through
# BEACONBOX_CONFIG in containerd's environment), restrict_oom_score_adj (root here
# lacks CAP_SYS_RESOURCE), no AppArmor profile, the streaming server on a free port of
# the netns. beaconbox's pod VM joins the netns CRI made: network.mode = "cni" with
# net-cni's configured_netns (BEACON_CNI_CONFIGURED_NETNS=1: no list runs, a TAP is
# coupled to the eth0 CRI's CNI made). Sets BBX_NAMESPACE=k8s.io (CRI's namespace),
# BBX_CONTAINERD_CRI=1, BBX_CONTAINERD_CONFIG_EXTRA, BBX_NETWORK_MODE=cni,
# BEACON_CNI_CONFIGURED_NETNS=1, BBX_CRI_DIR, BBX_CRI_NETWORK, BBX_CRI_PAUSE_IMAGE (kept
# when set: a caller serving its own pause image from a registry, tests/critest).
# After bbx_env_start:
#   bbx_cri_import_images BBX_CRI   imports the demo image (BBX_IMAGE) and the pause
#                                   stand-in into k8s.io; waits until CRI (asked with
#                                   the bbx-cri binary BBX_CRI) sees both
bbx_cri_prepare() {
  BBX_CRI_DIR=$1
  BBX_CRI_NETWORK=bbx-cri-test
  BBX_CRI_PAUSE_IMAGE=${BBX_CRI_PAUSE_IMAGE:-docker.io/beaconbox/pause:cri-test}
  local subnet_prefix=${BBX_CRI_SUBNET_PREFIX:-10.79.0} ranges routes
  ranges="[{\"subnet\": \"$subnet_prefix.0/24\"}]"
  routes='{"dst": "0.0.0.0/0"}'
  if [ -n "${BBX_CRI_SUBNET6_PREFIX:-}" ]; then
    ranges+=", [{\"subnet\": \"$BBX_CRI_SUBNET6_PREFIX::/64\"}]"
    routes+=', {"dst": "::/0"}'
  fi
  command -v iptables > /dev/null ||
    { bbx_log "no iptables (CNI's portmap serves hostPort with it): apt-get install iptables"; return 1; }
  mkdir -p "$BBX_CRI_DIR/net.d" "$BBX_CRI_DIR/ipam" || return 1
  cat > "$BBX_CRI_DIR/net.d/10-$BBX_CRI_NETWORK.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$BBX_CRI_NETWORK",
  "plugins": [
    {"type": "bridge", "bridge": "bbxcri0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [$ranges],
              "routes": [$routes], "dataDir": "$BBX_CRI_DIR/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  cat > "$BBX_CRI_DIR/cri.toml" <<EOF
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$BBX_CRI_PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.beaconbox]
      runtime_type = "$BBX_BEACONBOX_RUNTIME"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$BBX_CRI_DIR/net.d"
    max_conf_num = 1
EOF
  export BBX_NAMESPACE=k8s.io BBX_CONTAINERD_CRI=1 BBX_CONTAINERD_CONFIG_EXTRA=$BBX_CRI_DIR/cri.toml \
         BBX_NETWORK_MODE=cni BEACON_CNI_CONFIGURED_NETNS=1
}

# Stops and removes every pod CRI still has, through the bbx-cri CLIENT: for a
# script's bbx_on_stop, as CRI's CNI teardown needs containerd still running.
bbx_cri_remove_pods() {
  local client=$1 pod
  [ -S "${BBX_SOCK:-}" ] || return 0
  for pod in $(timeout 60 "$client" --timeout 30 "$BBX_SOCK" pods 2>/dev/null | cut -d' ' -f1); do
    timeout 120 "$client" --timeout 100 "$BBX_SOCK" stop-pod "$pod" >/dev/null 2>&1 || true
    timeout 120 "$client" --timeout 100 "$BBX_SOCK" rm-pod "$pod" >/dev/null 2>&1 || true
  done
}

# Removes the cgroup parent a script gave its pods (deepest first), once containerd
# has stopped.
bbx_cri_remove_cgroup_parent() {
  local parent=$1 dir
  for dir in /sys/fs/cgroup/"$parent" /sys/fs/cgroup/*/"$parent"; do
    [ -d "$dir" ] || continue
    find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

bbx_cri_import_images() {
  local cri_client=$1 image i
  bbx_import_demo_image || return 1
  # The pause stand-in: busybox alone, sleeping, like the real image's lone /pause.
  BBX_IMAGE_BARE=1 BBX_IMAGE_CMD='["/bin/busybox","sleep","2147483647"]' \
    "$BBX_SCRIPTS_DIR/build-demo-image.sh" "$BBX_CRI_DIR/pause.tar" "$BBX_CRI_PAUSE_IMAGE" > /dev/null ||
    return 1
  bbx_ctr image import "$BBX_CRI_DIR/pause.tar" > /dev/null || return 1
  # CRI learns of the images ctr imported from containerd's events.
  for image in "$BBX_IMAGE" "$BBX_CRI_PAUSE_IMAGE"; do
    for i in $(seq 50); do
      "$cri_client" "$BBX_SOCK" image-status "$image" > /dev/null 2>&1 && break
      sleep 0.2
    done
    "$cri_client" "$BBX_SOCK" image-status "$image" > /dev/null ||
      { bbx_log "CRI does not see $image after ctr image import"; return 1; }
  done
}

# Every process of this environment, one pid a line: those in its mount or network
# namespace (containerd, the shims and what they run there) and all their
# descendants (containers in namespaces of their own, VMs).
bbx_env_pids() {
  [ -n "${BBX_MNTNS_ID:-}${BBX_NETNS_ID:-}" ] || return 0
  local seeds
  # Processes come and go while /proc is read: find and cat then fail on the ones
  # that vanished, which must not fail the caller (set -e, pipefail).
  seeds=$({ find /proc/[0-9]*/ns/ -maxdepth 1 \( -lname "mnt:?${BBX_MNTNS_ID:-none}?" \
            -o -lname "net:?${BBX_NETNS_ID:-none}?" \) -printf '%h\n' 2>/dev/null || true; } |
          cut -d/ -f3 | sort -u | tr '\n' ' ')
  [ -n "$seeds" ] || return 0
  # pid and parent pid of every process (comm may hold spaces and parentheses).
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v seeds="$seeds" '
    { line = $0; sub(/^.*\) /, "", line); split(line, f, " "); parent[$1] = f[2] }
    END {
      n = split(seeds, s, " ")
      for (i = 1; i <= n; i++) if (s[i] in parent) mark[s[i]] = 1
      do { changed = 0
           for (pid in parent) if (!(pid in mark) && (parent[pid] in mark)) { mark[pid] = 1; changed = 1 }
      } while (changed)
      for (pid in mark) print pid
    }' | sort -n
}

# Pids of the shims this environment started (any runtime's), one a line.
bbx_shim_pids() {
  local pid exe
  for pid in $(bbx_env_pids); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    case ${exe##*/} in containerd-shim-*) echo "$pid" ;; esac
  done
}

# The shim serving container ID (its working directory is the bundle).
bbx_shim_pid_of() {
  local id=$1 pid
  for pid in $(bbx_shim_pids); do
    if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = \
         "$BBX_DIR/state/io.containerd.runtime.v2.task/$BBX_NS/$id" ]; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

# Mount points under BBX_DIR as the host sees them and as containerd's namespace
# sees them (while it runs), one a line.
bbx_env_mounts() {
  [ -n "${BBX_DIR:-}" ] || return 0
  local table
  for table in /proc/self/mountinfo ${BBX_CONTAINERD_PID:+/proc/$BBX_CONTAINERD_PID/mountinfo}; do
    [ -r "$table" ] || continue
    awk -v d="$BBX_DIR" 'index($5, d "/") == 1 || $5 == d {print $5}' "$table" 2>/dev/null
  done | sort -u
}

# What is left of the environment last started (for tests), one item a line.
bbx_env_leftovers() {
  local pid dir
  for pid in $(BBX_MNTNS_ID=${BBX_LAST_MNTNS_ID:-} BBX_NETNS_ID=${BBX_LAST_NETNS_ID:-} bbx_env_pids); do
    echo "process $pid ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-100))"
  done
  [ -n "${BBX_LAST_CONTAINERD_PID:-}" ] && kill -0 "$BBX_LAST_CONTAINERD_PID" 2>/dev/null &&
    echo "containerd $BBX_LAST_CONTAINERD_PID"
  [ -n "${BBX_LAST_NETNS:-}" ] && [ -e "/run/netns/$BBX_LAST_NETNS" ] && echo "netns $BBX_LAST_NETNS"
  if [ -n "${BBX_LAST_DIR:-}" ]; then
    awk -v d="$BBX_LAST_DIR" 'index($5, d) == 1 {print "mount " $5}' /proc/self/mountinfo
    [ -e "$BBX_LAST_DIR" ] && echo "directory $BBX_LAST_DIR"
  fi
  if [ -n "${BBX_LAST_NS:-}" ]; then
    for dir in /sys/fs/cgroup/"$BBX_LAST_NS" /sys/fs/cgroup/*/"$BBX_LAST_NS"; do
      [ -d "$dir" ] && echo "cgroup $dir"
    done
  fi
  return 0
}

bbx_env_stop() {
  local status=$?
  trap - EXIT INT TERM HUP
  if declare -F bbx_on_stop >/dev/null; then bbx_on_stop || true; fi
  [ -n "${BBX_DIR:-}" ] || return "$status"
  local pid i pids containerd_pid=$BBX_CONTAINERD_PID
  # Ask first, so each shim tears its sandbox down through its own delete path.
  if [ -n "$BBX_CONTAINERD_PID" ] && kill -0 "$BBX_CONTAINERD_PID" 2>/dev/null && [ -S "$BBX_SOCK" ]; then
    for i in $(timeout 10 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
                 containers ls -q 2>/dev/null); do
      timeout 20 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
        task delete -f "$i" >/dev/null 2>&1 || true
      timeout 10 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" \
        containers rm "$i" >/dev/null 2>&1 || true
    done
  fi
  pids=$(bbx_env_pids)
  [ -n "$containerd_pid" ] && { kill -TERM "$containerd_pid" 2>/dev/null || true; }
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 50); do
    pids=$(bbx_env_pids)
    [ -z "$pids" ] && break
    sleep 0.1
  done
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null || true; done
  [ -n "$containerd_pid" ] && { wait "$containerd_pid" 2>/dev/null || true; }
  for i in $(seq 30); do [ -z "$(bbx_env_pids)" ] && break; sleep 0.1; done
  # With every process gone the mount namespace and its mounts are gone; anything
  # that reached the host's table anyway is unmounted, deepest first.
  BBX_CONTAINERD_PID=
  bbx_env_mounts | sort -r | while read -r pid; do umount -l "$pid" 2>/dev/null || true; done
  ip netns del "$BBX_NETNS" 2>/dev/null || true
  # runc creates /<namespace>/<id> cgroups; the per-namespace parents stay behind.
  local dir
  for dir in /sys/fs/cgroup/"$BBX_NS" /sys/fs/cgroup/*/"$BBX_NS"; do
    if [ -d "$dir" ]; then rmdir "$dir" 2>/dev/null || true; fi
  done
  BBX_LAST_DIR=$BBX_DIR BBX_LAST_NETNS=$BBX_NETNS BBX_LAST_NS=$BBX_NS
  BBX_LAST_MNTNS_ID=$BBX_MNTNS_ID BBX_LAST_NETNS_ID=$BBX_NETNS_ID
  BBX_LAST_CONTAINERD_PID=$containerd_pid
  if [ -n "${BBX_KEEP_DIR:-}" ]; then
    bbx_log "kept $BBX_DIR (containerd.log)"
  elif [ -z "$(bbx_env_mounts)" ]; then
    rm -rf --one-file-system "$BBX_DIR"
  else
    bbx_log "not removing $BBX_DIR: still mounted: $(bbx_env_mounts | tr '\n' ' ')"
  fi
  BBX_DIR=
  return "$status"
}
