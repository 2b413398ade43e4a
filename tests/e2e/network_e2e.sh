#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here; container commands are single-quoted on purpose.
# shellcheck disable=SC2015,SC2016
# Network mode "bridge" end to end (issue 4), inside the test's own network
# namespace: containers get eth0 on beacon0 from 10.88.0.0/16 and fd57:dba9:ddb6::/64
# (dual stack, issue 18), reach a listener on the bridge address and each other over
# both families; their TAPs go with them; IPv6-only mode; spoofed IPv6 is dropped.
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

prefix6=fd57:dba9:ddb6  # the plugin's default ULA /64
gw6=$prefix6::1
config6=$(bbx_run net6 /bin/sh -c 'ip -6 addr show dev eth0; ip -6 route')
if grep -q "inet6 $prefix6::[0-9a-f:]*/64 scope global" <<<"$config6" &&
   grep -q "default via $gw6 dev eth0" <<<"$config6" && ! grep -q tentative <<<"$config6"; then
  pass "eth0 has a global IPv6 address from $prefix6::/64 (no DAD wait), default via $gw6"
else
  fail "guest IPv6: $config6"
fi

# 2. A TCP listener the test runs on the bridge address gets the container's line.
in_netns busybox nc -l -p 8080 > "$BBX_DIR/received" &
listener=$!
sleep 0.3
bbx_run net2 /bin/sh -c 'echo hello-from-the-vm | nc 10.88.0.1 8080' || true
wait "$listener" || true
[ "$(cat "$BBX_DIR/received")" = hello-from-the-vm ] && pass "TCP to a listener on the bridge" ||
  fail "listener got '$(cat "$BBX_DIR/received")'"

# 2b. The same over IPv6: the listener binds the bridge's IPv6 address and records
# the peer's address, which must be the container's lease.
bbx_listen6 "$gw6" 8086 "$BBX_DIR/received6" &
listener=$!
sleep 0.5
bbx_run tcp6 /bin/sh -c "echo hello-over-ipv6 | nc $gw6 8086" || true
wait "$listener" || true
received6=$(cat "$BBX_DIR/received6")
grep -q "^hello-over-ipv6 $prefix6::" <<<"$received6" && pass "TCP over IPv6 to a listener on the bridge ($received6)" ||
  fail "IPv6 listener got '$received6'"

# 3. Two containers reach each other.
bbx_run_detached peer1 /bin/sleep 600
taps_with_peer=$(in_netns ip -br link | grep -c '^beacon-' || true)
ctl() { nsenter --net="/run/netns/$BBX_NETNS" "$output/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" "$@"; }
leases=$(ctl net leases)
peer4=$(awk '$NF == "peer1" {print $1}' <<<"$leases")
if [ -n "$peer4" ] && bbx_run ping1 /bin/sh -c "ping -c1 -W2 $peer4 >/dev/null 2>&1 && [ \"\$(ip -4 -o addr show eth0 | grep -c '$peer4/')\" = 0 ]"; then
  pass "two containers reach each other ($peer4)"
else
  fail "the second container could not ping the first ($peer4)"
fi
# 4. The operator's view: the running container's lease, which gc keeps.
grep -q ' peer1$' <<<"$leases" && pass "net leases shows peer1" || fail "net leases: $leases"
peer6=$(awk '$NF == "peer1" {print $2}' <<<"$leases")
if [[ $peer6 == "$prefix6"::* ]]; then
  pass "net leases shows peer1's IPv6 address $peer6"
  # ICMPv6 echo both ways: the bridge side pings the guest, and another container
  # pings peer1 over IPv6 and opens TCP to the bridge from it.
  in_netns busybox ping -6 -c1 -W5 "$peer6" >/dev/null 2>&1 && pass "ICMPv6 echo from the bridge to $peer6" ||
    fail "ping -6 $peer6 from the bridge side"
  bbx_run ping6 /bin/sh -c "ping -6 -c1 -W5 $peer6" >/dev/null 2>&1 &&
    pass "a container reaches another over IPv6 (ICMPv6 echo to $peer6)" ||
    fail "container to container over IPv6 ($peer6)"
else
  fail "peer1 has no IPv6 lease: $leases"
fi
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
guards=$(in_netns nft list table bridge beacon_runner_bridge 2>/dev/null | grep -c 'chain guest-' || true)
[ "$guards" = 0 ] && pass "no anti-spoofing chain left after delete" || fail "$guards guest chains left"
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
lease_of() { ctl net leases | awk -v ns="$1" '$6 == ns && $7 == "twin"' || true; }
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
  addr1=$(awk '{print $1}' <<<"$lease1") tap1=$(awk '{print $3}' <<<"$lease1")
  addr2=$(awk '{print $1}' <<<"$lease2") tap2=$(awk '{print $3}' <<<"$lease2")
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

# 7. Anti-spoofing for IPv6 (issue 18): a container that adds another address to its
# eth0 (privileged) and sends from it reaches nobody; from its own address it does (pinged
# first: once the /128 is added the kernel prefers it as the source).
# A counter table in the test's netns sees what arrives at the host.
spoof6=$prefix6::ffff
in_netns nft -f - <<EOF_NFT
table inet bbx_e2e_watch {
  chain input { type filter hook input priority -300; policy accept;
    ip6 saddr $spoof6 counter comment "spoofed"
    ip6 saddr $prefix6::/64 ip6 saddr != $spoof6 counter comment "own"
  }
}
EOF_NFT
bbx_ctr run --rm --privileged --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" "$BBX_IMAGE" spoof6 \
  /bin/sh -c "ping -6 -c1 -W5 $gw6; ip -6 addr add $spoof6/128 dev eth0 && ip -6 addr show dev eth0 | grep -q $spoof6 && echo SPOOF-ADDRESS-SET; ping -6 -c2 -W2 -I $spoof6 $gw6" \
  < /dev/null > "$BBX_DIR/spoof6.out" 2>&1 || true
watch=$(in_netns nft list table inet bbx_e2e_watch)
in_netns nft delete table inet bbx_e2e_watch || true
spoofed_packets=$(grep 'comment "spoofed"' <<<"$watch" | grep -o 'packets [0-9]*' | awk '{print $2}')
own_packets=$(grep 'comment "own"' <<<"$watch" | grep -o 'packets [0-9]*' | awk '{print $2}')
if grep -q SPOOF-ADDRESS-SET "$BBX_DIR/spoof6.out" && [ "${spoofed_packets:-x}" = 0 ] && [ "${own_packets:-0}" -gt 0 ]; then
  pass "a spoofed IPv6 source is dropped ($own_packets packets from the own address arrived, 0 from $spoof6)"
else
  fail "spoofed IPv6: $spoofed_packets from $spoof6, $own_packets own; container said: $(head -c 600 "$BBX_DIR/spoof6.out")"
fi

# 8. The shim killed with SIGKILL, then `delete`: the lease (both addresses), TAP and
# anti-spoofing chain go.
bbx_run_detached crash6 /bin/sleep 600
crash_lease=$(ctl net leases | awk '$NF == "crash6"')
crash_pid=$(awk '{print $4}' <<<"$crash_lease") crash_tap=$(awk '{print $3}' <<<"$crash_lease")
if [ -n "$crash_pid" ] && [ "$(exe_of "$crash_pid")" != "" ]; then
  kill -9 "$crash_pid"
  bbx_remove crash6
  # containerd runs the dead shim's cleanup (its delete action) on its own: wait for it.
  for _ in $(seq 100); do
    left_lease=$(ctl net leases | awk '$NF == "crash6"')
    [ -z "$left_lease" ] && break
    sleep 0.1
  done
  left_chain=$(in_netns nft list table bridge beacon_runner_bridge 2>/dev/null | grep -c "$crash_tap" || true)
  [ -z "$left_lease" ] && ! in_netns ip link show "$crash_tap" >/dev/null 2>&1 && [ "$left_chain" = 0 ] &&
    pass "after kill -9 of the shim and delete: no lease, TAP or guard of $crash_tap" ||
    fail "after kill -9 + delete: lease '$left_lease', TAP $(in_netns ip -br link show "$crash_tap" 2>&1), guard lines $left_chain"
else
  fail "crash6: no lease with a live owner: '$crash_lease'"
  bbx_remove crash6
fi

# 8b. BEACON_IPV4 / BEACON_IPV6 (1/true/0/false) override the ipv4 / ipv6 keys: through
# the plugin host into the bridge plugin's config (both off is its one-line refusal).
said=$(BEACON_IPV4=0 BEACON_IPV6=false ctl config validate 2>&1 || true)
[[ $said == *"config key ipv4: ipv4 and ipv6 are both false"* ]] && [ "$(grep -c . <<<"$said")" = 1 ] &&
  pass "BEACON_IPV4=0 BEACON_IPV6=false reach the bridge plugin: ${said##*: plugin }" ||
  fail "config validate with BEACON_IPV4=0 BEACON_IPV6=false: $said"
said=$(BEACON_IPV4=maybe ctl config validate 2>&1 || true)
[[ $said == *"BEACON_IPV4: plugins.network.bridge.config.ipv4 must be a boolean"* ]] &&
  pass "BEACON_IPV4=maybe is refused in one line naming it" || fail "config validate with BEACON_IPV4=maybe: $said"
[ "$(BEACON_IPV6=0 ctl config validate 2>&1)" = OK ] && pass "BEACON_IPV6=0 alone validates (IPv4 only)" ||
  fail "config validate with BEACON_IPV6=0: $(BEACON_IPV6=0 ctl config validate 2>&1)"

# 9. IPv6-only mode (ipv4 = false): the next shims read the changed config; the guest
# has no IPv4 address, works over IPv6, and no IPv4 rule or bridge address is made.
cp "$BBX_BEACONBOX_CONFIG" "$BBX_DIR/beaconbox.toml.dual"
sed -i 's/^\[plugins.network.bridge.config\]$/&\nipv4 = false\nipv6_dns_servers = ["fd57:dba9:ddb6::1"]/' "$BBX_BEACONBOX_CONFIG"
only6=$(bbx_run only6 /bin/sh -c "ip addr show dev eth0; ip route; ip -6 route; cat /etc/resolv.conf; ping -6 -c1 -W5 $gw6 && echo PING6-OK" 2>&1 || true)
cp "$BBX_DIR/beaconbox.toml.dual" "$BBX_BEACONBOX_CONFIG"
if ! grep -q 'inet ' <<<"$only6" && grep -q "inet6 $prefix6::" <<<"$only6" &&
   grep -q "default via $gw6" <<<"$only6" && grep -q PING6-OK <<<"$only6" &&
   grep -q "^nameserver $gw6" <<<"$only6"; then
  pass "IPv6-only mode: no IPv4 address, IPv6 address, route, DNS and echo work"
else
  fail "IPv6-only guest: $only6"
fi
# The plugin added beacon0's IPv4 gateway (step 1) and no IPv4 lease is left: it goes.
bridge4=$(in_netns ip -4 -o addr show dev beacon0 2>&1)
[ -z "$bridge4" ] && pass "IPv6-only mode: the IPv4 gateway address the plugin had added to beacon0 is gone" ||
  fail "IPv6-only mode: beacon0 keeps $bridge4"
rules=$(in_netns nft list ruleset)
! grep -q 'masquerade' <<<"$rules" && pass "IPv6-only mode: the IPv4 masquerade rule is gone" ||
  fail "IPv6-only mode left IPv4 masquerade: $(grep masquerade <<<"$rules")"
left=$(in_netns ip -br link | grep '^beacon-' || true)
leases=$(ctl net leases | tail -n +2)
[ -z "$left" ] && [ -z "$leases" ] && pass "no TAP or lease left at the end" ||
  fail "left at the end: TAPs '$left' leases '$leases'"

bbx_e2e_finish
