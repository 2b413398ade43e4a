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
bbx_require_beaconbox "$output" plugins/net-bridge.so

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

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

# 6. The same container id in two containerd namespaces (issue 9): two sandboxes that
# share nothing -- addresses, TAPs, leases, console logs -- and deleting one leaves
# the other running. bbx_ctr fixes the harness' namespace; these name their own, and
# each namespace gets the image (images are per namespace).
twin_namespaces=(ns1 ns2)
ctr_in() { local ns=$1; shift; "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$ns" "$@"; }
twin_remove() {
  local ns=$1
  ctr_in "$ns" task kill -s KILL twin >/dev/null 2>&1 || true
  for _ in $(seq 50); do
    ctr_in "$ns" task ls -q 2>/dev/null | grep -qx twin || break
    ctr_in "$ns" task delete twin >/dev/null 2>&1 || sleep 0.1
  done
  ctr_in "$ns" container rm twin >/dev/null 2>&1 || true
}
# Run by bbx_env_stop before it stops containerd, also when a check above failed.
bbx_on_stop() { local ns; for ns in "${twin_namespaces[@]}"; do twin_remove "$ns"; done; }
lease_of() { ctl net leases | awk -v ns="$1" '$5 == ns && $6 == "twin"' || true; }
log_dir=$BBX_DIR/beacon/log
twins_ok=true
for ns in "${twin_namespaces[@]}"; do
  ctr_in "$ns" image import "$BBX_DIR/demo-image.tar" >/dev/null 2>&1 ||
    { fail "ctr -n $ns image import"; twins_ok=false; }
  ctr_in "$ns" run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" "$BBX_IMAGE" twin \
    /bin/sleep 600 < /dev/null > /dev/null || { fail "ctr -n $ns run -d twin"; twins_ok=false; }
done
if $twins_ok; then
  running=0
  for ns in "${twin_namespaces[@]}"; do
    ctr_in "$ns" task ls 2>/dev/null | grep -q '^twin .*RUNNING' && running=$((running + 1))
  done
  [ "$running" = 2 ] && pass "twin runs in ns1 and in ns2" || fail "twin running in $running namespace(s)"
  lease1=$(lease_of ns1) lease2=$(lease_of ns2)
  addr1=$(awk '{print $1}' <<<"$lease1") tap1=$(awk '{print $2}' <<<"$lease1")
  addr2=$(awk '{print $1}' <<<"$lease2") tap2=$(awk '{print $2}' <<<"$lease2")
  addr1=${addr1%/*} addr2=${addr2%/*}
  if [ -n "$addr1" ] && [ -n "$addr2" ] && [ "$addr1" != "$addr2" ] && [ "$tap1" != "$tap2" ]; then
    pass "net leases shows both twins: ns1 $addr1 on $tap1, ns2 $addr2 on $tap2"
  else
    fail "leases of the twins: '$lease1' / '$lease2' (all: $(ctl net leases))"
  fi
  taps=$(in_netns ip -br link | awk '{print $1}' | sed 's/@.*//')
  grep -qx "$tap1" <<<"$taps" && grep -qx "$tap2" <<<"$taps" && pass "both TAPs exist" ||
    fail "TAPs $tap1 $tap2 not both in: $(tr '\n' ' ' <<<"$taps")"
  # Each lease's address answers from its guest (the bridge side pings it).
  answers() { in_netns busybox ping -c1 -W2 "$1" >/dev/null 2>&1; }
  answers "$addr1" && answers "$addr2" && pass "both twins answer on their own address" ||
    fail "ping of the twins: ns1 $addr1, ns2 $addr2"
  if [ -f "$log_dir/vm-ns1--twin.log" ] && [ -f "$log_dir/vm-ns2--twin.log" ] &&
     [ "$(stat -c %i "$log_dir/vm-ns1--twin.log")" != "$(stat -c %i "$log_dir/vm-ns2--twin.log")" ]; then
    pass "two console logs, vm-ns1--twin.log and vm-ns2--twin.log"
  else
    fail "console logs: $(find "$log_dir" -name 'vm-*' -printf '%f ')"
  fi

  # Deleting ns1's twin leaves ns2's running, with its TAP and lease.
  twin_remove ns1
  ctr_in ns1 container ls -q | grep -qx twin && fail "ns1 twin still listed after delete"
  ctr_in ns2 task ls 2>/dev/null | grep -q '^twin .*RUNNING' && pass "ns2 twin runs after ns1's delete" ||
    fail "ns2 twin after ns1's delete: $(ctr_in ns2 task ls 2>&1)"
  [ -z "$(lease_of ns1)" ] && [ "$(lease_of ns2)" = "$lease2" ] &&
    pass "ns1's lease released, ns2's kept" || fail "leases after ns1's delete: $(ctl net leases)"
  taps=$(in_netns ip -br link | awk '{print $1}' | sed 's/@.*//')
  ! grep -qx "$tap1" <<<"$taps" && grep -qx "$tap2" <<<"$taps" &&
    pass "ns1's TAP gone, ns2's there" || fail "TAPs after ns1's delete: $(tr '\n' ' ' <<<"$taps")"
  answers "$addr2" && pass "ns2 twin still answers on $addr2" ||
    fail "ns2 twin does not answer on $addr2 after ns1's delete"

  # And after ns2's: nothing left.
  twin_remove ns2
  left=$(in_netns ip -br link | grep '^beacon-' || true)
  leases=$(ctl net leases | tail -n +2)
  [ -z "$left" ] && [ -z "$leases" ] && [ -z "$(ls "$BBX_DIR/beacon/run/vm" 2>/dev/null)" ] &&
    pass "after both deletes: no TAP, no lease, no VM directory" ||
    fail "left after both deletes: TAPs '$left' leases '$leases' vm dirs '$(ls "$BBX_DIR/beacon/run/vm" 2>/dev/null)'"
fi

bbx_e2e_finish
