#!/usr/bin/env bash
# critest (cri-tools' CRI validation suite, v1.26.1) against containerd's CRI plugin,
# with the runc and the beaconbox runtime handlers in the same run (`make test-critest`,
# README "Contributing"; issue 17's conformance test).
#
#   run.sh OUT     OUT/bin/critest (tests/critest/build.sh) must exist; writes OUT/runc.json
#                  and OUT/beaconbox.json (ginkgo's reports), OUT/*.log, OUT/*-summary.txt
#                  and OUT/compare-runc-beaconbox.txt (passed with runc, not with beaconbox)
#
# The private containerd of scripts/lib/containerd-env.sh (own netns, mount namespace,
# root, state, socket) gets CRI as bbx_cri_prepare sets it up (both handlers,
# restrict_oom_score_adj, CNI bridge + host-local + portmap for the hostPort specs).
# The images critest pulls come from Debian's docker-registry (the distribution
# registry) listening on an address of that netns only (10.79.1.1:5000 on its
# loopback link), where images.py pushes stand-ins built offline; containerd's
# hosts.toml sends registry.k8s.io and gcr.io there and nowhere else. critest runs in that netns (it
# reaches pods, host ports and the streaming server there). Skipped: the spec pulling
# an image pinned by digest (no stand-in can have that digest).
# Inputs: BBX_OUTPUT_DIR (beaconbox's output dir, default <repo>/_output),
# CRITEST_HANDLERS (default "runc beaconbox"), CRITEST_FOCUS (a ginkgo regexp, to run
# some specs only), CRITEST_MINUTES (per handler, default 90: ginkgo then stops the
# suite and still writes its report; the specs not run count as failed).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:?usage: run.sh OUT}
mkdir -p "$out"
out=$(cd "$out" && pwd)
critest=$out/bin/critest
crictl=$out/bin/crictl
read -r -a handlers <<<"${CRITEST_HANDLERS:-runc beaconbox}"
output=${BBX_OUTPUT_DIR:-$repo/_output}
registry_ip=10.79.1.1
registry_addr=$registry_ip:5000

die() { echo "test-critest: $*" >&2; exit 1; }
minutes=${CRITEST_MINUTES:-90}
[[ $minutes =~ ^[1-9][0-9]*$ ]] || die "CRITEST_MINUTES=$minutes: give a whole number of minutes"
[ -x "$critest" ] && [ -x "$crictl" ] || die "no $critest or $crictl: run tests/critest/build.sh $out first"
[ "$(id -u)" = 0 ] || die "needs root (containerd, network namespaces): run as root"
command -v docker-registry > /dev/null || die "no docker-registry: apt-get install docker-registry"
command -v gcc > /dev/null || die "no gcc: apt-get install build-essential"
command -v python3 > /dev/null || die "no python3: apt-get install python3"
command -v iptables > /dev/null || die "no iptables (CNI portmap): apt-get install iptables"
[ -x /bin/busybox ] || die "no /bin/busybox: apt-get install busybox-static"
for plugin in bridge host-local loopback portmap; do
  [ -x "/usr/lib/cni/$plugin" ] || die "/usr/lib/cni/$plugin missing: apt-get install containernetworking-plugins"
done
export BBX_OUTPUT_DIR=$output
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
if [[ " ${handlers[*]} " == *" beaconbox "* ]]; then bbx_require_beaconbox "$output"; fi
bbx_select_containerd_or_skip

# Nothing goes through a proxy: every address critest and the pushes use is in the netns.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
work=$(mktemp -d /tmp/bbx-critest.XXXXXX)
trap 'rm -rf "$work"' EXIT
rm -f "$out"/*.json "$out"/*.log "$out"/*-summary.txt "$out"/compare-*.txt

# The two static programs of the stand-in images.
gcc -static -O2 -o "$work/pause" "$here/pause.c"
gcc -static -O2 -o "$work/euid" "$here/euid.c"

# CRI as a node has it, the pause image from the local registry (pulled by containerd
# as a node pulls it), the registries' names mapped to the local one.
export BBX_CRI_PAUSE_IMAGE=registry.k8s.io/pause:3.6
bbx_cri_prepare "$work/cri"
for host in registry.k8s.io gcr.io; do
  mkdir -p "$work/hosts/$host"
  printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
    "$registry_addr" "$registry_addr" > "$work/hosts/$host/hosts.toml"
done
printf '\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "%s"\n' "$work/hosts" >> "$BBX_CONTAINERD_CONFIG_EXTRA"

crictl() { "$crictl" --runtime-endpoint "unix://$BBX_SOCK" --image-endpoint "unix://$BBX_SOCK" --timeout 60s "$@"; }
# Before containerd stops: the pods critest left (CRI's CNI teardown needs containerd).
bbx_on_stop() {
  local pod
  [ -S "${BBX_SOCK:-}" ] || return 0
  for pod in $(timeout 60 "$crictl" --runtime-endpoint "unix://$BBX_SOCK" pods -q 2>/dev/null); do
    timeout 120 "$crictl" --runtime-endpoint "unix://$BBX_SOCK" stopp "$pod" > /dev/null 2>&1 || true
    timeout 120 "$crictl" --runtime-endpoint "unix://$BBX_SOCK" rmp "$pod" > /dev/null 2>&1 || true
  done
}
trap 'status=$?; rm -rf "$work"; exit $status' EXIT
BBX_PRIVATE_IPC=1 bbx_env_start
trap 'status=$?; bbx_env_stop || true; rm -rf "$work"; exit $status' EXIT
in_netns() { nsenter --net="/run/netns/$BBX_NETNS" -- "$@"; }
# critest in containerd's namespaces: network (pods, host ports, streaming server),
# mount (the mounts its propagation specs make must be shared where containerd looks,
# and go away with it), IPC (the SysV segments of its host-IPC specs, likewise).
in_containerd_ns() {
  nsenter --net="/run/netns/$BBX_NETNS" --mount="/proc/$BBX_CONTAINERD_PID/ns/mnt" \
    --ipc="/proc/$BBX_CONTAINERD_PID/ns/ipc" -- "$@"
}

# The registry: on an address of the netns' loopback link (no packet leaves the
# netns), storage in the work dir. bbx_env_stop ends it with every other process of
# the netns.
ip -n "$BBX_NETNS" addr add "$registry_ip/32" dev lo
cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $registry_addr
EOF
in_netns docker-registry serve "$work/registry.yml" > "$out/registry.log" 2>&1 < /dev/null &
registry_pid=$!
up=
for _ in $(seq 100); do
  if in_netns python3 -c "import urllib.request; urllib.request.urlopen('http://$registry_addr/v2/', timeout=2)" 2>/dev/null; then
    up=1; break
  fi
  kill -0 "$registry_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$up" ] || die "docker-registry did not answer on $registry_addr: $(tail -3 "$out/registry.log" | tr '\n' ' ')"
in_netns python3 "$here/images.py" "http://$registry_addr" /bin/busybox "$work/pause" "$work/euid" > "$out/images.txt" ||
  die "pushing the stand-in images failed (see above)"
echo "test-critest: $(wc -l < "$out/images.txt") stand-in images in the registry at $registry_addr" >&2
crictl pull registry.k8s.io/e2e-test-images/busybox:1.29-2 > /dev/null ||
  die "containerd cannot pull the busybox stand-in from $registry_addr (see $out/registry.log)"

status=0
for handler in "${handlers[@]}"; do
  echo "test-critest: critest -runtime-handler $handler ($(date -u +%H:%M:%S) UTC) ..." >&2
  args=(-runtime-endpoint "unix://$BBX_SOCK" -image-endpoint "unix://$BBX_SOCK"
        -runtime-handler "$handler" -ginkgo.no-color -ginkgo.v
        -ginkgo.skip 'public image with digest should be pulled and removed'
        -ginkgo.json-report "$out/$handler.json" -ginkgo.timeout "${minutes}m")
  [ -n "${CRITEST_FOCUS:-}" ] && args+=(-ginkgo.focus "$CRITEST_FOCUS")
  # critest's own failures are in its report; only a run without one fails here.
  (cd "$work" && in_containerd_ns timeout -k 60 "$((minutes + 5))m" "$critest" "${args[@]}") \
    > "$out/$handler.log" 2>&1 || true
  [ -s "$out/$handler.json" ] || { echo "test-critest: critest with $handler wrote no report: $(tail -3 "$out/$handler.log" | tr '\n' ' ')" >&2; status=1; }
  tail -4 "$out/$handler.log" | grep -E 'Ran|PASS|FAIL' >&2 || true
done
cp "$BBX_DIR/containerd.log" "$out/containerd.log" 2>/dev/null || true
[ "$status" = 0 ] && python3 "$here/report.py" "$out" "${handlers[@]}" | tee "$out/summary.txt"
exit "$status"
