#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here; container commands are single-quoted on purpose.
# shellcheck disable=SC2015,SC2016
# Network mode "bridge" end to end (issue 4), inside the test's own network
# namespace: containers get eth0 on beacon0 from 10.88.0.0/16, reach a listener on the
# bridge address and each other; their TAPs go with them.
#   network_e2e.sh OUTPUT_DIR
set -euo pipefail
output=${1:?usage: network_e2e.sh OUTPUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
export BBX_OUTPUT_DIR=$output BBX_RUNTIME=io.containerd.beaconbox.v1 BBX_NETWORK_MODE=bridge
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$here/../../scripts/lib/containerd-env.sh"
missing=$(bbx_beaconbox_missing "$output")
if [ -n "$missing" ] || [ ! -e "$output/plugins/net-bridge.so" ]; then
  echo "FAIL: beaconbox is not built in $output (run make); missing: $(tr '\n' ' ' <<<"$missing")" >&2
  exit 1
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
in_netns() { ip netns exec "$BBX_NETNS" "$@"; }

bbx_env_start
bbx_import_demo_image

# 1. eth0 with an address from the pool and the default route via the bridge.
config=$(bbx_run net1 /bin/sh -c 'ip -4 addr show eth0; ip route; cat /etc/resolv.conf')
grep -q '^nameserver 10.88.0.1' <<<"$config" && pass "resolv.conf from the network plugin's DNS servers" ||
  fail "resolv.conf: $config"
if grep -q 'inet 10\.88\.[0-9]*\.[0-9]*/16' <<<"$config" && grep -q 'default via 10.88.0.1' <<<"$config"; then
  pass "eth0 in 10.88.0.0/16, default via 10.88.0.1"
else
  fail "guest network: $config"
fi

# 2. A TCP listener the test runs on the bridge address gets the container's line.
in_netns busybox nc -l -p 8080 > "$BBX_DIR/received" &
listener=$!
sleep 0.3
bbx_run net2 /bin/sh -c 'echo hello-from-the-vm | nc 10.88.0.1 8080' || true
wait "$listener" || true
[ "$(cat "$BBX_DIR/received")" = hello-from-the-vm ] && pass "TCP to a listener on the bridge" ||
  fail "listener got '$(cat "$BBX_DIR/received")'"

# 3. Two containers reach each other.
bbx_run_detached peer1 /bin/sleep 600
taps_with_peer=$(in_netns ip -br link | grep -c '^beacon-' || true)
if bbx_run ping1 /bin/sh -c 'for i in 2 3 4 5; do ping -c1 -W2 10.88.0.$i >/dev/null 2>&1 && [ "$(ip -4 -o addr show eth0 | grep -c "10.88.0.$i/")" = 0 ] && exit 0; done; exit 1'; then
  pass "two containers reach each other"
else
  fail "the second container could not ping the first"
fi
# 4. The operator's view: the running container's lease, which gc keeps.
ctl() { nsenter --net="/run/netns/$BBX_NETNS" "$output/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" "$@"; }
leases=$(ctl net leases)
grep -q ' peer1$' <<<"$leases" && pass "net leases shows peer1" || fail "net leases: $leases"
gc_out=$(ctl gc)
grep -q '0 lease(s) released' <<<"$gc_out" && grep -q ' peer1$' <<<"$(ctl net leases)" &&
  pass "gc keeps the lease of a live container" || fail "gc: $gc_out"
bbx_remove peer1

# 5. After the containers are gone, so are their TAPs; the tables are there once.
left=$(in_netns ip -br link | grep '^beacon-' || true)
[ -z "$left" ] && pass "no TAP left after delete (there were $taps_with_peer with a peer running)" ||
  fail "TAPs left: $left"
leases=$(ctl net leases | tail -n +2)
[ -z "$leases" ] && pass "no lease left after delete" || fail "leases left: $leases"
tables=$(in_netns nft list tables)
if grep -q 'beacon_runner_filter' <<<"$tables" && grep -q 'beacon_runner_nat' <<<"$tables"; then
  pass "nftables tables beacon_runner_filter and beacon_runner_nat"
else
  fail "nft tables: $tables"
fi
dupes=$(in_netns nft list ruleset | grep -E 'accept|masquerade' | sort | uniq -d)
[ -z "$dupes" ] && pass "no duplicate rules after several containers" || fail "duplicate rules: $dupes"

echo "accelerator of each VM (the shims' log):"
bbx_vm_accelerators | sed 's/^/  /'
if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; the end of containerd's log (with the shim's):" >&2
  tail -40 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
