#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here; container commands are single-quoted on purpose.
# shellcheck disable=SC2015,SC2016
# Network mode "cni" end to end (issue 15), inside the test's own network namespace:
# a conflist of Debian's bridge + host-local + portmap + firewall, then beaconbox's
# tc-redirect-tap, in a conf dir this test makes. A container gets an address from
# host-local's range, serves a listener the test reaches (directly and through a
# mapped port), reaches a listener on the test's bridge and the other container;
# after delete, after kill -9 of the shim then delete, and after kill -9 of the shim
# then `beaconbox-ctl gc` (no delete), no lease, veth, netns, cache file or iptables
# rule is left. Dual stack (issue 18): with an IPv6 range in host-local as well, the
# container has both addresses and an IPv6 default route, reaches an IPv6 listener
# on the test's bridge, ICMPv6 echo works both ways, and after delete nothing of it
# is left (IPv6 lease, ip6tables rule). A broken conflist, a missing plugin binary and
# a plugin failing ADD each fail the container with one line naming the file or
# plugin, leaving nothing.
#   cni_e2e.sh OUTPUT_DIR [system|1.7|2]
set -euo pipefail
output=${1:?usage: cni_e2e.sh OUTPUT_DIR [system|1.7|2]}
export BBX_CONTAINERD=${2:-system}
[ -d "$output" ] && output=$(cd "$output" && pwd)  # BEACON_CNI_BIN_DIR needs it absolute
here=$(cd "$(dirname "$0")" && pwd)
export BBX_OUTPUT_DIR=$output BBX_RUNTIME=io.containerd.beaconbox.v1 BBX_NETWORK_MODE=cni
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$here/../../scripts/lib/containerd-env.sh"
missing=$(bbx_beaconbox_missing "$output")
for f in plugins/net-cni.so cni/tc-redirect-tap; do
  [ -e "$output/$f" ] || missing+=" $output/$f"
done
if [ -n "$missing" ]; then
  echo "FAIL: beaconbox is not built in $output (run make); missing: $(tr '\n' ' ' <<<"$missing")" >&2
  exit 1
fi
for plugin in bridge host-local portmap firewall; do
  [ -x "/usr/lib/cni/$plugin" ] ||
    { echo "FAIL: /usr/lib/cni/$plugin missing: apt-get install containernetworking-plugins" >&2; exit 1; }
done
command -v iptables-save >/dev/null || { echo "FAIL: iptables-save missing: apt-get install iptables" >&2; exit 1; }
bbx_select_containerd_or_skip

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

# The CNI configuration and host-local's store: this test's own, removed at the end.
bbx_cni_prepare "$output"

bbx_on_stop() {  # containerd may be stopped (step 5b) when a check fails
  [ -n "${BBX_CONTAINERD_PID:-}" ] && kill -CONT "$BBX_CONTAINERD_PID" 2>/dev/null
  bbx_cni_cleanup
}
bbx_env_start
bbx_import_demo_image
ctl() { nsenter --net="/run/netns/$BBX_NETNS" "$output/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" "$@"; }

# 1. A container with a mapped port: its address is from host-local's range.
bbx_ctr run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$BBX_RUNTIME" \
  --annotation 'io.beaconbox.cni.port-mappings=[{"hostPort":8081,"containerPort":8080,"protocol":"tcp"}]' \
  "$BBX_IMAGE" web /bin/sh -c 'while true; do echo hello-from-cni | nc -l -p 8080; done' \
  < /dev/null > /dev/null && pass "ctr run -d web with a port mapping" || fail "ctr run -d web"
web_ip=$(ctl net leases | awk '$NF == "web" {print $1}' | cut -d/ -f1)
case $web_ip in
  "$subnet_prefix".*) pass "web has $web_ip from host-local's $subnet_prefix.0/24" ;;
  *) fail "no lease for web in $subnet_prefix.0/24: $(ctl net leases)" ;;
esac
[ -e "$cni_dir/ipam/$network/$web_ip" ] && pass "host-local's store holds $web_ip" ||
  fail "host-local's store: $(ls "$cni_dir/ipam/$network" 2>&1)"
netns_file=$BBX_DIR/beacon/run/netns/$BBX_NS--web
[ -e "$netns_file" ] && pass "the plugin made the container's netns (ctr gives none)" ||
  fail "no netns $netns_file"
# The namespace is pinned in containerd's mount namespace, where the shim runs.
taps=$(nsenter --mount="/proc/$BBX_CONTAINERD_PID/ns/mnt" -- nsenter --net="$netns_file" ip -br link 2>&1 || true)
grep -q '^tap0 ' <<<"$taps" && grep -q '^eth0@' <<<"$taps" &&
  pass "tap0 (tc-redirect-tap) next to eth0 in the container's netns" || fail "links in the netns: $taps"

# 2. The test reaches the container's listener, directly and through the mapped port.
got=""
for _ in $(seq 20); do
  got=$(in_netns busybox nc -w 3 "$web_ip" 8080 < /dev/null 2>/dev/null || true)
  [ "$got" = hello-from-cni ] && break
  sleep 1
done
[ "$got" = hello-from-cni ] && pass "TCP from the test's netns to the container's listener" ||
  fail "the container's listener answered '$got'"
# The listener restarts after each connection (slowly under TCG): ask a few times.
for _ in $(seq 20); do
  got=$(in_netns busybox nc -w 3 "$gateway" 8081 < /dev/null 2>/dev/null || true)
  [ "$got" = hello-from-cni ] && break
  sleep 1
done
[ "$got" = hello-from-cni ] && pass "portmap: $gateway:8081 reaches the container's 8080" ||
  fail "mapped port 8081 answered '$got' (nat: $(in_netns iptables-save -t nat | grep -c CNI-) CNI rules)"

# 3. A second container reaches a listener on the test's bridge and the first container.
in_netns busybox nc -l -p 9090 > "$BBX_DIR/received" &
listener=$!
sleep 0.3
peer=$(bbx_run client /bin/sh -c \
  "ip -4 -o addr show eth0; echo hello-from-the-vm | nc $gateway 9090; nc -w 5 $web_ip 8080 </dev/null" 2>&1 || true)
wait "$listener" || true
[ "$(cat "$BBX_DIR/received")" = hello-from-the-vm ] && pass "TCP from a container to a listener on the test's bridge" ||
  fail "the bridge listener got '$(cat "$BBX_DIR/received")' (container said: $peer)"
grep -q hello-from-cni <<<"$peer" && pass "two containers reach each other" ||
  fail "client could not reach web: $peer"
grep -q "inet $subnet_prefix\." <<<"$peer" && pass "client's eth0 is in $subnet_prefix.0/24" ||
  fail "client's eth0: $peer"
# Only web's lease may be there now (client is gone).
[ "$(bbx_cni_leftovers | grep -c '^lease')" = 1 ] && pass "client's lease is gone, web's stays" ||
  fail "leases with web running: $(bbx_cni_leftovers | grep '^lease' | tr '\n' ' ')"

# 4. Delete: nothing of web is left.
bbx_remove web
left=$(bbx_cni_leftovers "$web_ip")
[ -z "$left" ] && pass "after delete: no lease, veth, netns, cache or rule" || fail "left after delete: $left"

# 5. kill -9 of the shim, then delete: the cached result lets DEL run.
bbx_run_detached crash /bin/sleep 600 || fail "ctr run -d crash"
crash_ip=$(ctl net leases | awk '$NF == "crash" {print $1}' | cut -d/ -f1)
shim=$(bbx_shim_pid_of crash || true)
if [ -n "$shim" ] && [ -n "$crash_ip" ]; then
  kill -KILL "$shim"
  for _ in $(seq 50); do kill -0 "$shim" 2>/dev/null || break; sleep 0.1; done
  bbx_remove crash
  left=$(bbx_cni_leftovers "$crash_ip")
  [ -z "$left" ] && pass "kill -9 of the shim, then delete: nothing left ($crash_ip released)" ||
    fail "left after kill -9 + delete: $left"
else
  fail "crash container: shim '$shim' address '$crash_ip'"
fi

# 5b. kill -9 of the shim while containerd is stopped (so its dead-shim cleanup, the
# shim's `delete`, cannot run first), then `beaconbox-ctl gc` without any delete: gc
# runs DEL from the cached result. ctl runs in containerd's mount namespace, where the
# container's netns is pinned.
bbx_run_detached gcme /bin/sleep 600 || fail "ctr run -d gcme"
gc_ip=$(ctl net leases | awk '$NF == "gcme" {print $1}' | cut -d/ -f1)
shim=$(bbx_shim_pid_of gcme || true)
if [ -n "$shim" ] && [ -n "$gc_ip" ]; then
  kill -STOP "$BBX_CONTAINERD_PID"
  kill -KILL "$shim"
  for _ in $(seq 50); do kill -0 "$shim" 2>/dev/null || break; sleep 0.1; done
  [ -n "$(bbx_cni_leftovers "$gc_ip" | grep '^lease')" ] && pass "gcme's lease outlives its shim (containerd stopped)" ||
    fail "gcme's lease went before gc: nothing for gc to do"
  gc_said=$(nsenter --mount="/proc/$BBX_CONTAINERD_PID/ns/mnt" --net="/run/netns/$BBX_NETNS"               "$output/beaconbox-ctl" --config "$BBX_BEACONBOX_CONFIG" gc 2>&1 || true)
  left=$(bbx_cni_leftovers "$gc_ip")
  kill -CONT "$BBX_CONTAINERD_PID"
  grep -q "released lease of $BBX_NS/gcme" <<<"$gc_said" && pass "gc released gcme's attachment" ||
    fail "gc said: $gc_said"
  [ -z "$left" ] && pass "kill -9 of the shim, then gc (no delete): nothing left ($gc_ip released)" ||
    fail "left after kill -9 + gc: $left"
  bbx_remove gcme
else
  fail "gcme container: shim '$shim' address '$gc_ip'"
fi

# 6. A conflist without tc-redirect-tap: the network plugin makes the TAP itself.
bbx_cni_write_conflist iptables "" ""
in_netns busybox nc -l -p 9091 > "$BBX_DIR/received2" &
listener=$!
sleep 0.3
said=$(bbx_run notap /bin/sh -c "ip -4 -o addr show eth0; echo hello-without-tc-redirect-tap | nc $gateway 9091" 2>&1 || true)
wait "$listener" || true
[ "$(cat "$BBX_DIR/received2")" = hello-without-tc-redirect-tap ] &&
  pass "without tc-redirect-tap in the list: the plugin's own TAP carries the VM's traffic" ||
  fail "without tc-redirect-tap: listener got '$(cat "$BBX_DIR/received2")' (container: $said)"
left=$(bbx_cni_leftovers)
[ -z "$left" ] && pass "without tc-redirect-tap: nothing left after delete" || fail "left: $left"
bbx_cni_write_conflist iptables

# 7. Dual stack: host-local hands out an IPv4 and an IPv6 address; the guest's eth0
# gets both (static, as in bridge mode) and an IPv6 default route through the bridge.
cni_ipv6_prefix=fd77:77
gw6=$cni_ipv6_prefix::1
bbx_cni_write_conflist iptables
bbx_run_detached dual /bin/sleep 600 || fail "ctr run -d dual"
leases=$(ctl net leases)
dual4=$(awk '$NF == "dual" {print $1}' <<<"$leases" | cut -d/ -f1)
dual6=$(awk '$NF == "dual" {print $2}' <<<"$leases" | cut -d/ -f1)
[[ $dual4 == "$subnet_prefix".* && $dual6 == "$cni_ipv6_prefix"::* ]] &&
  pass "net leases shows both of dual's addresses ($dual4, $dual6)" || fail "net leases: $leases"
[ -n "$dual6" ] && [ -e "$cni_dir/ipam/$network/$dual6" ] && pass "host-local's store holds $dual6" ||
  fail "host-local's store: $(ls "$cni_dir/ipam/$network" 2>&1)"
# ICMPv6 echo from the bridge to the guest (its eth0 answers for the lease address).
ok6=""
for _ in $(seq 10); do
  in_netns busybox ping -6 -c1 -W3 "$dual6" > /dev/null 2>&1 && { ok6=1; break; }
  sleep 1
done
[ -n "$ok6" ] && pass "ICMPv6 echo from the test's bridge to $dual6" || fail "ping -6 $dual6 from the bridge side"
# From a second dual-stack container: its IPv6 address and default route, ICMPv6 to
# the bridge and to dual, TCP to an IPv6 listener on the test's bridge.
bbx_listen6 "$gw6" 9096 "$BBX_DIR/received6" &
listener=$!
sleep 0.5
said6=$(bbx_run dual2 /bin/sh -c "ip -6 addr show dev eth0; ip -6 route;
  ping -6 -c1 -W5 $gw6 >/dev/null && echo PING-GATEWAY-OK; ping -6 -c1 -W5 $dual6 >/dev/null && echo PING-PEER-OK;
  echo hello-over-ipv6-cni | nc $gw6 9096" 2>&1 || true)
wait "$listener" || true
received6=$(cat "$BBX_DIR/received6")
grep -q "inet6 $cni_ipv6_prefix::[0-9a-f:]*/64 scope global" <<<"$said6" && pass "dual2's eth0 has a global IPv6 address in $cni_ipv6_prefix::/64" ||
  fail "dual2's IPv6 addresses: $said6"
grep -q "^default via $gw6 dev eth0" <<<"$said6" && pass "dual2's IPv6 default route goes through $gw6" ||
  fail "dual2's IPv6 default route: $said6"
grep -q PING-GATEWAY-OK <<<"$said6" && grep -q PING-PEER-OK <<<"$said6" &&
  pass "ICMPv6 echo from a container to the bridge and to another container" || fail "ICMPv6 from dual2: $said6"
grep -q "^hello-over-ipv6-cni $cni_ipv6_prefix::" <<<"$received6" &&
  pass "TCP over IPv6 from a container to a listener on the test's bridge ($received6)" ||
  fail "the IPv6 listener got '$received6' (container said: $said6)"
bbx_remove dual
left=$(bbx_cni_leftovers "$dual4" "$dual6")
[ -z "$left" ] && pass "dual stack, after delete: no lease of either family, veth, netns, cache or rule" ||
  fail "dual stack, left after delete: $left"
cni_ipv6_prefix=""
bbx_cni_write_conflist iptables

# 8. Bad input: one line naming the file or plugin, nothing left.
bad_run() {  # bad_run ID EXPECTED_TEXT WHAT
  local id=$1 expected=$2 what=$3 out
  out=$(bbx_run "$id" /bin/true 2>&1) && { fail "$what: the container ran"; return; }
  bbx_remove "$id"
  if grep -qF -- "$expected" <<<"$out" && [ "$(grep -c . <<<"$out")" -le 2 ]; then
    pass "$what: $(grep -F -- "$expected" <<<"$out" | cut -c1-220)"
  else
    fail "$what: expected a line naming '$expected', got: $out"
  fi
  local left
  left=$(bbx_cni_leftovers)
  [ -z "$left" ] && pass "$what: nothing left" || fail "$what: left: $left"
}
printf '{"cniVersion": "1.0.0", "name": "%s", "plugins": [' "$network" > "$conflist"
bad_run broken "$conflist" "broken conflist"
bbx_cni_write_conflist iptables bbx-no-such-plugin
bad_run missing '"bbx-no-such-plugin"' "missing plugin binary"
# firewalld as the backend: there is no firewalld on the private containerd's D-Bus
# (its /run is its own), so firewall fails ADD after bridge and portmap succeeded.
bbx_cni_write_conflist firewalld
bad_run failing "CNI plugin firewall ADD" "a plugin failing ADD"

bbx_e2e_finish
