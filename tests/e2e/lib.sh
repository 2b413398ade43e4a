# shellcheck shell=bash
# What every e2e script uses to report checks and look at what is left, sourced after
# scripts/lib/containerd-env.sh. A script ends with `[ "$failures" -eq 0 ]` (or its
# own summary) so that one failed check fails the test while the others still run.
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
in_netns() { ip netns exec "$BBX_NETNS" "$@"; }
# The executable's name of PID, or "" once it is gone.
exe_of() { basename "$(readlink "/proc/$1/exe" 2>/dev/null)" 2>/dev/null || true; }
# This environment's processes but containerd. A process may vanish while /proc is
# read (cat fails under pipefail): never fatal.
others() { { bbx_env_pids || true; } | { grep -vx "$BBX_CONTAINERD_PID" || true; }; }

# The end of a script that boots VMs: the accelerator each VM used (the shims' log),
# then on a failed check the end of containerd's log (with the shims') and exit 1;
# otherwise SUMMARY, when given.
bbx_e2e_finish() {
  echo "accelerator of each VM (the shims' log):"
  bbx_vm_accelerators | sed 's/^/  /'
  if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
    tail -40 "$BBX_DIR/containerd.log" >&2
    exit 1
  fi
  if [ -n "${1:-}" ]; then echo "$1"; fi
}

# A CNI network of the test's own (cni_e2e.sh, cloud_hypervisor_e2e.sh), used only in
# the test's network namespace: Debian's bridge + host-local + portmap + firewall, then
# beaconbox's tc-redirect-tap, in a conf dir and host-local store under /tmp.
# bbx_cni_prepare OUTPUT_DIR (absolute; before bbx_env_start, whose containerd passes
# BEACON_CNI_* on to the shims): sets cni_dir, network, conflist, subnet_prefix and
# gateway, exports BEACON_CNI_CONF_DIR, _BIN_DIR and _NETWORK, writes the conflist
# with the iptables firewall backend. With cni_ipv6_prefix set ("fd77:77", a /64 is
# made of it), bbx_cni_write_conflist adds an IPv6 range and an IPv6 default route
# (dual stack; the bridge's gateway is <prefix>::1). bbx_cni_cleanup removes cni_dir.
# shellcheck disable=SC2034 # the names are for the scripts that source this file
bbx_cni_prepare() {
  cni_dir=$(mktemp -d /tmp/bbx-cni.XXXXXX)
  mkdir -p "$cni_dir/net.d" "$cni_dir/ipam"
  network=bbx-cni-test
  conflist=$cni_dir/net.d/$network.conflist
  export BEACON_CNI_CONF_DIR=$cni_dir/net.d BEACON_CNI_BIN_DIR=$1/cni:/usr/lib/cni
  export BEACON_CNI_NETWORK=$network
  subnet_prefix=10.77.0
  gateway=$subnet_prefix.1
  cni_ipv6_prefix=""
  bbx_cni_write_conflist iptables
}
bbx_cni_cleanup() { if [ -n "${cni_dir:-}" ]; then rm -rf "$cni_dir"; fi; }
# bbx_cni_write_conflist FIREWALL_BACKEND [EXTRA_PLUGIN_TYPE [LAST_PLUGIN_TYPE]]
bbx_cni_write_conflist() {
  local backend=$1 extra=${2:-} last=${3-tc-redirect-tap} ranges routes
  ranges="[{\"subnet\": \"$subnet_prefix.0/24\"}]"
  routes='{"dst": "0.0.0.0/0"}'
  if [ -n "${cni_ipv6_prefix:-}" ]; then
    ranges+=", [{\"subnet\": \"$cni_ipv6_prefix::/64\"}]"
    routes+=', {"dst": "::/0"}'
  fi
  cat > "$conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$network",
  "plugins": [
    {"type": "bridge", "bridge": "bbxcni0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [$ranges],
              "routes": [$routes], "dataDir": "$cni_dir/ipam"}},
    $([ -n "$extra" ] && printf '{"type": "%s"},' "$extra")
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "$backend"}$([ -n "$last" ] && printf ',\n    {"type": "%s"}' "$last")
  ]
}
EOF
}

# What a container may leave behind, one line each: host-local leases, veths and TAPs on
# the test's side, namespaces the plugin made, cache files, iptables rules naming ADDRESS
# and ip6tables rules naming ADDRESS6.
bbx_cni_leftovers() {
  local address=${1:-none} address6=${2:-none} f
  for f in "$cni_dir/ipam/$network"/*; do
    [ -e "$f" ] || continue
    case ${f##*/} in lock | last_reserved_ip.*) ;; *) echo "lease ${f##*/}" ;; esac
  done
  in_netns ip -o link show type veth 2>/dev/null | awk '{print "veth " $2}'
  in_netns ip -o link show type tun 2>/dev/null | awk '{print "tap " $2}'
  for f in "$BBX_DIR/beacon/run/netns"/* "$BBX_DIR/beacon/state/cni"/*; do
    [ -e "$f" ] && echo "file $f"
  done
  in_netns iptables-save 2>/dev/null | grep -F -- "$address/" | sed 's/^/rule /' || true
  in_netns ip6tables-save 2>/dev/null | grep -F -- "$address6/" | sed 's/^/rule6 /' || true
}

# bbx_listen6 ADDRESS PORT OUTPUT (run it in the background): a TCP listener on the
# IPv6 ADDRESS in the test's netns that takes one connection and writes its first
# line and the peer's address ("hello fd00::5") to OUTPUT; gives up after 120 s.
bbx_listen6() {
  in_netns python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(120)
c, peer = s.accept(); c.settimeout(30)
data = b""
while not data.endswith(b"\n"):
    chunk = c.recv(100)
    if not chunk: break
    data += chunk
print(data.decode().strip(), peer[0])' "$1" "$2" > "$3" 2>&1
}
