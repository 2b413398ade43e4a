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

# bbx_write_cni_conflist FILE NETWORK SUBNET_PREFIX IPAM_DIR FIREWALL_BACKEND
#                        [EXTRA_PLUGIN_TYPE [LAST_PLUGIN_TYPE]]
# The CNI network of the network e2e (network.mode = "cni"): Debian's bridge (bbxcni0,
# gateway SUBNET_PREFIX.1) + host-local (SUBNET_PREFIX.0/24, leases in IPAM_DIR) +
# portmap + firewall, then beaconbox's tc-redirect-tap (LAST_PLUGIN_TYPE; "" for none).
bbx_write_cni_conflist() {
  local file=$1 network=$2 subnet_prefix=$3 ipam_dir=$4 backend=$5 extra=${6:-} last=${7-tc-redirect-tap}
  cat > "$file" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$network",
  "plugins": [
    {"type": "bridge", "bridge": "bbxcni0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet_prefix.0/24"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$ipam_dir"}},
    $([ -n "$extra" ] && printf '{"type": "%s"},' "$extra")
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "$backend"}$([ -n "$last" ] && printf ',\n    {"type": "%s"}' "$last")
  ]
}
EOF
}
