#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here; container commands are single-quoted on purpose.
# shellcheck disable=SC2015,SC2016
# Kubernetes' CRI through containerd's CRI plugin (issue 17), driven by bbx-cri, the
# project's own CRI v1 client (tests/e2e/cri_client), as the kubelet would: one private
# containerd with CRI on, a CNI network of the test's own (bridge + host-local, in the
# test's network namespace), a pause stand-in and busybox imported into k8s.io (no
# registry). Per runtime handler: a pod of two containers where one listens on TCP
# and the other reaches it over localhost (the test's netns too, at the pod's IP from
# CNI; dual stack: its IPv6 address and IPv6 default route, TCP and ICMPv6 echo from
# the test's netns to that address; and at a hostPort of the pod that CNI's portmap maps
# to it), the pod's hostname and a pid namespace per container as the kubelet's
# defaults ask, both see the same emptyDir (a host dir
# mounted into both), ExecSync into one (stdout, stderr, exit code), logs at CRI's
# log path in CRI's format; removing the pod leaves no container, shim, VM, TAP or
# veth, IP lease, portmap rule, containerd lease, mount, netns or cgroup. Pod sizing
# (beaconbox): the pod declares 1 CPU, 640 MiB (and a RuntimeClass overhead) in
# RunPodSandbox; the VM boots at that size where containerd passes it on (else at the
# defaults, saying so), and the client's limits (1.5 CPUs, 1 GiB) grow it (nproc,
# MemTotal through ExecSync). Prints how long the pod
# start (RunPodSandbox + CreateContainer + StartContainer) and the second container
# (CreateContainer + StartContainer) took (no assertion on time). In the same pod
# (volume_and_stream_checks): a third container with CRI's file volumes as the kubelet
# makes them, ContainerStats/ListContainerStats, and Exec (-i, -it), Attach and
# PortForward through containerd's streaming server (bbx-cri's WebSocket client).
# An erofs pod (handler beaconbox-erofs: the same shim with a config of storage.driver
# "erofs", named by the runtime's ConfigPath option): a sandbox and one app container
# with CRI's volumes, which reach the running VM over the pod's volume share the VM
# booted with: the kubelet's /etc/hosts, an emptyDir written in the container and read
# on the host, a read-only configMap-like directory; removing the pod leaves no share,
# mount, loop device, VM directory, virtiofsd or QEMU.
#   cri_e2e.sh OUTPUT_DIR [system|1.7|2] [runc|beaconbox|erofs|both]
# runc (the expected answer) is the default; `both` (ctest's e2e_cri) runs runc, then
# beaconbox (one shim and one VM per pod, the VM on the pod network CRI made through
# net-cni's configured_netns), then the erofs pod, in the same containerd. BBX_CRI_CLIENT
# names the bbx-cri binary (ctest sets it).
# Exit 0: all passed; 1: a check failed; 77: containerd 1.7 or 2 cannot be extracted.
set -euo pipefail
usage="usage: cri_e2e.sh OUTPUT_DIR [system|1.7|2] [runc|beaconbox|erofs|both]"
output=${1:?$usage}
export BBX_CONTAINERD=${2:-system}
case ${3:-runc} in
  runc) handlers=(runc) ;;
  beaconbox) handlers=(beaconbox) ;;
  erofs) handlers=(beaconbox-erofs) ;;
  both) handlers=(runc beaconbox beaconbox-erofs) ;;
  *) echo "cri_e2e.sh: handler '$3' is none of runc, beaconbox, erofs, both ($usage)" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
[ -d "$output" ] && output=$(cd "$output" && pwd)
cri_client=${BBX_CRI_CLIENT:-}
if [ -z "$cri_client" ] || [ ! -x "$cri_client" ]; then
  echo "FAIL: bbx-cri (BBX_CRI_CLIENT='$cri_client') is not built: install libgrpc++-dev and" \
       "protobuf-compiler-grpc (scripts/setup.sh), re-run cmake, build the target bbx-cri" >&2
  exit 1
fi
for plugin in bridge host-local loopback; do
  [ -x "/usr/lib/cni/$plugin" ] ||
    { echo "FAIL: /usr/lib/cni/$plugin missing: apt-get install containernetworking-plugins" >&2; exit 1; }
done
export BBX_OUTPUT_DIR=$output
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$here/../../scripts/lib/containerd-env.sh"
if [[ " ${handlers[*]} " == *" beaconbox "* ]]; then bbx_require_beaconbox "$output"; fi
if [[ " ${handlers[*]} " == *" beaconbox-erofs "* ]]; then
  bbx_require_beaconbox "$output" plugins/storage-erofs.so
fi
bbx_select_containerd_or_skip
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

work=$(mktemp -d /tmp/bbx-cri.XXXXXX)
trap 'rm -rf "$work"' EXIT
suffix=$(tr '[:upper:]' '[:lower:]' <<<"${work##*.}")
# The pods' cgroups go under a parent of the test's own (as the kubelet names one),
# never under a k8s.io another containerd may use.
cgroup_parent=/bbx-cri-$suffix
subnet_prefix=10.79.0
subnet6_prefix=fd79:79  # dual stack (issue 18)
BBX_CRI_SUBNET_PREFIX=$subnet_prefix BBX_CRI_SUBNET6_PREFIX=$subnet6_prefix bbx_cri_prepare "$work"
network=$BBX_CRI_NETWORK
mkdir -p "$work/logs"
# The erofs pod's runtime handler: beaconbox's shim with its own config file (storage
# erofs, transport blk: a pod's images go over its one layer share all the same; written
# once bbx_env_start wrote the default one), as an operator adds a second RuntimeClass.
erofs_config=$work/beaconbox-erofs.toml
cat >> "$BBX_CRI_DIR/cri.toml" <<EOF
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.beaconbox-erofs]
    runtime_type = "$BBX_BEACONBOX_RUNTIME"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.beaconbox-erofs.options]
      ConfigPath = "$erofs_config"
EOF

cri() { "$cri_client" "$BBX_SOCK" "$@"; }
# Before containerd stops: remove what CRI still has (its CNI teardown needs containerd).
bbx_on_stop() { bbx_cri_remove_pods "$cri_client"; }
# After containerd stopped: the cgroup parent and the work dir.
remove_work() {
  bbx_cri_remove_cgroup_parent "$cgroup_parent"
  rm -rf "$work"
}
trap 'status=$?; remove_work; exit $status' EXIT
bbx_env_start
trap 'status=$?; bbx_env_stop || true; remove_work; exit $status' EXIT

cp "$BBX_BEACONBOX_CONFIG" "$erofs_config"
(BBX_BEACONBOX_CONFIG=$erofs_config && bbx_use_erofs blk) || fail "could not write the erofs config $erofs_config"

# The images, in k8s.io: busybox for the containers, a pause stand-in for the sandboxes.
bbx_cri_import_images "$cri_client"
cri version | grep -q '^runtime_api_version=v1' && pass "CRI v1 answers: $(cri version | tr '\n' ' ')" ||
  fail "CRI Version: $(cri version 2>&1 | tr '\n' ' ')"
pass "CRI sees $BBX_IMAGE and the pause stand-in $BBX_CRI_PAUSE_IMAGE"

# bbx-cri's failures: one line, exit 125 (CRI's own error, and a usage error).
code=0
said=$(cri start no-such-container 2>&1) || code=$?
[ "$code" = 125 ] && [ "$(wc -l <<<"$said")" = 1 ] && [[ $said == "bbx-cri: StartContainer: NotFound: "* ]] &&
  pass "bbx-cri names CRI's error in one line: ${said:0:100}" || fail "bbx-cri start of no container: exit $code: $said"
code=0
said=$(cri create some-pod c "$BBX_IMAGE" --mount relative:/data -- true 2>&1) || code=$?
[ "$code" = 125 ] && [ "$(wc -l <<<"$said")" = 1 ] && [[ $said == *"--mount wants HOST:CTR"* ]] &&
  pass "bbx-cri refuses a bad --mount in one line" || fail "bbx-cri create --mount relative: exit $code: $said"
code=0
said=$(cri run-pod some-pod --cpus 1.2345 2>&1) || code=$?
[ "$code" = 125 ] && [ "$(wc -l <<<"$said")" = 1 ] && [[ $said == *"--cpus wants CPUs from 0.001 to 256"* ]] &&
  pass "bbx-cri refuses a bad --cpus in one line" || fail "bbx-cri run-pod --cpus 1.2345: exit $code: $said"
code=0
said=$(cri run-pod bad-port --port 70000:8080 2>&1) || code=$?
[ "$code" = 125 ] && [ "$(wc -l <<<"$said")" = 1 ] && [[ $said == *"--port wants HOST:CTR"*"'70000:8080'"* ]] &&
  [ -z "$(cri pods 2>&1)" ] &&
  pass "bbx-cri refuses a bad --port in one line, before any pod" || fail "bbx-cri run-pod --port 70000:8080: exit $code: $said"

ms_now() { date +%s%3N; }
# CRI's log format: RFC 3339 time, stream, tag (F: full line, P: partial), the line.
log_line_re() { printf '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2}) %s F %s$' "$1" "$2"; }
# What a removed pod may leave behind, one line each (an empty output is the pass).
leftovers() {
  local f
  cri pods 2>&1 | sed 's/^/pod /'
  cri containers 2>&1 | sed 's/^/container /'
  bbx_ctr containers ls -q 2>&1 | sed 's/^/containerd container /'
  bbx_ctr tasks ls -q 2>&1 | sed 's/^/containerd task /'
  bbx_ctr leases ls -q 2>&1 | sed 's/^/containerd lease /'
  others | while read -r f; do echo "process $f $(exe_of "$f")"; done
  in_netns ip -o link show type tun 2>/dev/null | awk '{print "tap " $2}'
  in_netns ip -o link show type veth 2>/dev/null | awk '{print "veth " $2}'
  # CNI's portmap: a DNAT chain per pod with a hostPort (iptables in containerd's netns).
  in_netns iptables -w -t nat -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-DN-/ {print "portmap-rule " $2}'
  for f in "$work/ipam/$network"/*; do
    [ -e "$f" ] || continue
    case ${f##*/} in lock | last_reserved_ip.*) ;; *) echo "lease ${f##*/}" ;; esac
  done
  for f in "/proc/$BBX_CONTAINERD_PID/root/run/netns"/*; do [ -e "$f" ] && echo "netns ${f##*/}"; done
  # beaconbox's net-cni attachment (configured_netns: the TAP in CRI's netns).
  for f in "$BBX_DIR/beacon/state/cni"/*.json; do [ -e "$f" ] && echo "cni-attachment ${f##*/}"; done
  bbx_env_mounts | grep -E 'io\.containerd\.(grpc\.v1\.cri|runtime\.v2\.task)|/beacon/' | sed 's/^/mount /'
  grep -F "$BBX_DIR/beacon" /proc/self/mountinfo | awk '{print "host mount " $5}'
  for f in /sys/fs/cgroup/"$cgroup_parent"/* /sys/fs/cgroup/*/"$cgroup_parent"/*; do
    [ -d "$f" ] && echo "cgroup $f"
  done
  return 0
}

# check_vm_size WHAT ID VCPUS MIB: the VM of container ID, seen from inside (nproc,
# MemTotal: below MIB by what the kernel reserves, but not far).
check_vm_size() {
  local got n m
  got=$(cri exec "$2" /bin/sh -c 'echo "$(nproc) $(( $(awk "/MemTotal/ {print \$2}" /proc/meminfo) / 1024 ))"' 2>&1 || true)
  read -r n m <<<"$got"
  [ "$n" = "$3" ] && [[ $m =~ ^[0-9]+$ ]] && [ "$m" -le "$4" ] && [ "$m" -gt $(($4 - 160)) ] &&
    pass "beaconbox: $1: $n vCPUs, MemTotal $m MiB (a $3 vCPU, $4 MiB VM)" ||
    fail "beaconbox: $1: the guest has '$got' (nproc, MemTotal MiB), want $3 vCPUs and MemTotal in ($(($4 - 160)), $4]"
}
# The pod VM's boot size: the pod's resources where containerd turns them into the
# sandbox annotations (io.kubernetes.cri.sandbox-cpu-quota/-period, -memory) - 1 CPU,
# 640 MiB + vm.guest_overhead_mib 128 - else the defaults (vm.vcpus 1, vm.memory_mib
# 512), saying which containerd does not pass them. The overhead is never passed.
check_pod_boot_size() {
  local pod=$1 server=$2 spec version
  version=$(cri version 2>/dev/null | sed -n 's/^runtime_version=//p')
  spec=$(bbx_ctr containers info "$pod" 2>&1 || true)
  if grep -q '"io.kubernetes.cri.sandbox-memory": "671088640"' <<<"$spec" &&
     grep -q '"io.kubernetes.cri.sandbox-cpu-quota": "100000"' <<<"$spec"; then
    pass "beaconbox: containerd $version puts the pod's resources on the sandbox ($(grep -o '"io.kubernetes.cri.sandbox-[a-z-]*": "[0-9-]*"' <<<"$spec" | tr -d '"' | tr '\n' ' '))"
    check_vm_size "the pod's resources (1 CPU, 640 MiB) sized the VM" "$server" 1 768
  else
    echo "note: containerd $version does not pass the pod's resources to the runtime (no io.kubernetes.cri.sandbox-memory/-cpu-quota on the sandbox): the VM has the defaults"
    check_vm_size "the VM without the pod's resources has the defaults" "$server" 1 512
  fi
}

# One pod with HANDLER: the checks above. The first step that fails ends the pod's
# checks (the pod is still removed and what it left is still listed).
# What the pod's server sends to a client in the test's netns at ADDRESS PORT (retried
# for up to 10 s while the listener or the path to it comes up).
server_says() {
  local said="" _
  for _ in $(seq 10); do
    said=$(in_netns busybox nc -w 3 "$1" "$2" < /dev/null 2>&1 || true)
    [ "$said" = hello-from-server ] && break
    sleep 1
  done
  printf '%s' "$said"
}

pod_checks() {
  local handler=$1 pod server client t0 tp t1 t2 t3 said status_of shared=$work/emptydir-$1 ip left
  # The pod's hostPort (one per handler: a mapping of the last pod must not answer).
  local host_port=$((30080 + ${#handler}))
  mkdir -p "$shared"
  echo "== handler $handler"
  cleanup_failures_before=$(grep -c 'failed to clean up after shim disconnected' "$BBX_DIR/containerd.log" || true)
  t0=$(ms_now)
  # The pod's resources (1 CPU, 640 MiB) and a RuntimeClass overhead, as the kubelet
  # sends them in LinuxPodSandboxConfig.
  if ! pod=$(cri run-pod "web-$handler" --handler "$handler" --log-dir "$work/logs/$handler" \
               --cgroup-parent "$cgroup_parent" --hostname "web-$handler" --cpus 1 --memory 640 \
               --overhead-cpus 0.25 --overhead-memory 64 --port "$host_port:8080" 2>&1); then
    fail "$handler: RunPodSandbox: $pod"
    return 0
  fi
  tp=$(ms_now)
  pass "$handler: RunPodSandbox: pod ${pod:0:12} in $((tp - t0)) ms"
  status_of=$(cri pod-status "$pod" 2>&1 || true)
  ip=$(sed -n 's/^ip=//p' <<<"$status_of")
  grep -qx state=SANDBOX_READY <<<"$status_of" && grep -qx "runtime_handler=$handler" <<<"$status_of" &&
    [[ $ip == "$subnet_prefix".* ]] &&
    pass "$handler: pod ready with $ip from the test's CNI network" || fail "$handler: pod status: $(tr '\n' ' ' <<<"$status_of")"
  # The server: lines on stdout and stderr for the log, then answers every connection.
  if ! server=$(cri create "$pod" server "$BBX_IMAGE" --mount "$shared:/data" --log server/0.log -- \
                  /bin/sh -c 'echo hello-log-stdout; echo hello-log-stderr >&2
                              (while true; do seq 1 150000 | nc -l -p 8082; done) &
                              while true; do echo hello-from-server | nc -l -p 8080; done' 2>&1) ||
     ! said=$(cri start "$server" 2>&1); then
    fail "$handler: the first container (CreateContainer + StartContainer): $server $said"
    teardown "$handler" "$pod"
    return 0
  fi
  t1=$(ms_now)
  pass "$handler: pod start (RunPodSandbox + CreateContainer + StartContainer): $((t1 - t0)) ms"
  [ "$handler" = beaconbox ] && check_pod_boot_size "$pod" "$server"
  # The client reaches the server over localhost from its own command too (its log);
  # its limits (1.5 CPUs, 1 GiB) are beyond the pod's declared 1 CPU, 640 MiB.
  if ! client=$(cri create "$pod" client "$BBX_IMAGE" --mount "$shared:/data" --log client/0.log \
                  --cpus 1.5 --memory 1024 -- \
                  /bin/sh -c 'for i in $(seq 60); do nc -w 2 127.0.0.1 8080 </dev/null && break; sleep 1; done
                              exec sleep 2147483647' 2>&1) ||
     ! t2=$(ms_now) || ! said=$(cri start "$client" 2>&1); then
    fail "$handler: the second container (CreateContainer + StartContainer): $client $said"
    teardown "$handler" "$pod"
    return 0
  fi
  t3=$(ms_now)
  pass "$handler: second container of the pod (CreateContainer + StartContainer): $((t3 - t1)) ms (create $((t2 - t1)) ms)"
  # 1 GiB + vm.guest_overhead_mib 128 needs 1152 MiB: the VM grows from 768 (or the
  # default 512) in 128 MiB blocks to 1152 MiB; 1.5 CPUs need 2 vCPUs.
  [ "$handler" = beaconbox ] && check_vm_size "the client's limits (1.5 CPUs, 1 GiB) grew the pod's VM" "$client" 2 1152
  echo "measure: handler=$handler run_pod_sandbox_ms=$((tp - t0)) pod_start_ms=$((t1 - t0)) second_container_ms=$((t3 - t1))"

  for id in "$server" "$client"; do
    status_of=$(cri status "$id" 2>&1 || true)
    grep -qx state=CONTAINER_RUNNING <<<"$status_of" && pass "$handler: $(sed -n 's/^name=//p' <<<"$status_of") running" ||
      fail "$handler: container status: $(tr '\n' ' ' <<<"$status_of")"
  done
  [ "$(cri containers "$pod" | grep -c ' CONTAINER_RUNNING ')" = 2 ] &&
    pass "$handler: ListContainers of the pod: two running" || fail "$handler: ListContainers: $(cri containers "$pod" 2>&1)"

  # Localhost between the containers, by ExecSync (the listener restarts after each
  # connection: ask a few times).
  said=""
  for _ in $(seq 20); do
    said=$(cri exec "$client" --timeout 10 nc -w 3 127.0.0.1 8080 2>&1 </dev/null || true)
    [ "$said" = hello-from-server ] && break
    sleep 1
  done
  [ "$said" = hello-from-server ] && pass "$handler: client reaches server's 127.0.0.1:8080 (ExecSync)" ||
    fail "$handler: client's nc to 127.0.0.1:8080 said '$said'"
  # The pod's IP (CNI's, in the netns CRI made) reaches the server from the test's netns.
  said=$(server_says "$ip" 8080)
  # With beaconbox the VM serves it: net-cni's configured_netns couples a TAP to the
  # eth0 CNI made in CRI's netns (bbx_cri_prepare sets BEACON_CNI_CONFIGURED_NETNS).
  [ "$said" = hello-from-server ] && pass "$handler: the test's netns reaches server at the pod IP $ip:8080" ||
    fail "$handler: nc to the pod IP $ip:8080 said '$said'"
  # Dual stack: the pod's eth0 has host-local's IPv6 address and an IPv6 default route
  # (with beaconbox the VM took both from the eth0 CRI's CNI made), reached from the
  # test's netns over TCP and ICMPv6.
  local ip6
  said=$(cri exec "$client" /bin/sh -c 'ip -6 addr show dev eth0; ip -6 route' 2>&1 || true)
  ip6=$(sed -n "s|.*inet6 \($subnet6_prefix::[0-9a-f:]*\)/64 scope global.*|\1|p" <<<"$said" | head -1)
  [ -n "$ip6" ] && grep -q "^default via $subnet6_prefix::1 dev eth0" <<<"$said" &&
    pass "$handler: the pod has $ip6 from the test's IPv6 range and an IPv6 default route" ||
    fail "$handler: the pod's IPv6: $(tr '\n' ' ' <<<"$said")"
  said=""
  [ -z "$ip6" ] || said=$(server_says "$ip6" 8080)
  [ "$said" = hello-from-server ] && pass "$handler: the test's netns reaches server at [$ip6]:8080" ||
    fail "$handler: nc to the pod's IPv6 address [$ip6]:8080 said '$said'"
  [ -n "$ip6" ] && in_netns busybox ping -6 -c1 -W5 "$ip6" > /dev/null 2>&1 &&
    pass "$handler: ICMPv6 echo from the test's netns to $ip6" || fail "$handler: ping -6 $ip6"
  # hostPort: the pod's mapping $host_port -> 8080 at an address of containerd's netns
  # (the CNI bridge's), served by CNI's portmap (DNAT to the pod IP, then as above).
  said=$(server_says "$subnet_prefix.1" "$host_port")
  [ "$said" = hello-from-server ] && pass "$handler: hostPort $subnet_prefix.1:$host_port reaches server's 8080" ||
    fail "$handler: nc to hostPort $subnet_prefix.1:$host_port said '$said'"
  # The emptyDir: written in one, read in the other and on the host.
  said=$(cri exec "$server" /bin/sh -c "echo shared-by-$handler > /data/from-server" 2>&1) &&
    pass "$handler: server writes the emptyDir" || fail "$handler: server's write: $said"
  said=$(cri exec "$client" cat /data/from-server 2>&1 || true)
  [ "$said" = "shared-by-$handler" ] && [ "$(cat "$shared/from-server" 2>&1)" = "shared-by-$handler" ] &&
    pass "$handler: client and host read what server wrote in the emptyDir" ||
    fail "$handler: client read '$said', host '$(cat "$shared/from-server" 2>&1)'"
  # Namespaces as the kubelet asks by default: UTS (the pod's hostname) shared, the
  # pid namespace each container's own (pid 1 is its command, not the pause process).
  said=$(cri exec "$client" hostname 2>&1 || true)
  [ "$said" = "web-$handler" ] && pass "$handler: client's hostname is the pod's ($said)" ||
    fail "$handler: client's hostname '$said', not web-$handler"
  said=$(cri exec "$server" /bin/sh -c 'tr "\0" " " < /proc/1/cmdline' 2>&1 || true)
  [[ $said == "/bin/sh -c echo hello-log-stdout"* ]] && pass "$handler: server's pid 1 is its own command" ||
    fail "$handler: server's pid 1 runs '${said:0:80}'"
  # ExecSync's streams and exit code.
  local code=0
  said=$(cri exec "$server" /bin/sh -c 'echo to-stdout; echo to-stderr >&2; exit 3' 2>"$work/stderr") || code=$?
  [ "$said" = to-stdout ] && [ "$(cat "$work/stderr")" = to-stderr ] && [ "$code" = 3 ] &&
    pass "$handler: ExecSync gives stdout, stderr and exit code 3" ||
    fail "$handler: ExecSync said '$said', stderr '$(cat "$work/stderr")', exit $code"

  # Logs at CRI's path (pod log dir + the container's log path), in CRI's format.
  local log=$work/logs/$handler/server/0.log
  status_of=$(cri status "$server" 2>&1 || true)
  grep -qx "log_path=$log" <<<"$status_of" && pass "$handler: server's log path is $log" ||
    fail "$handler: server's log path: $(grep log_path <<<"$status_of")"
  for _ in $(seq 20); do grep -qE "$(log_line_re stderr hello-log-stderr)" "$log" 2>/dev/null && break; sleep 0.5; done
  grep -qE "$(log_line_re stdout hello-log-stdout)" "$log" 2>/dev/null &&
    grep -qE "$(log_line_re stderr hello-log-stderr)" "$log" 2>/dev/null &&
    pass "$handler: server's stdout and stderr lines in CRI's log format" ||
    fail "$handler: server's log $log: $(head -c 400 "$log" 2>&1 | tr '\n' '|')"
  local client_log=$work/logs/$handler/client/0.log
  grep -qE "$(log_line_re stdout hello-from-server)" "$client_log" 2>/dev/null &&
    pass "$handler: client's own command reached server over localhost (its log)" ||
    fail "$handler: client's log $client_log: $(head -c 400 "$client_log" 2>&1 | tr '\n' '|')"

  local tv
  tv=$(ms_now)
  volume_and_stream_checks "$handler" "$pod" "$server"
  echo "measure: handler=$handler volume_stats_stream_checks_ms=$(($(ms_now) - tv))"

  # The leftovers check can fail: while the pod runs it lists the pod's parts.
  left=$(leftovers | cut -d' ' -f1 | sort -u | tr '\n' ' ')
  local kind missing=""
  local kinds="pod container process veth lease portmap-rule netns mount"
  [ "$handler" = beaconbox ] && kinds+=" cni-attachment"
  for kind in $kinds; do
    [[ " $left" == *" $kind "* ]] || missing+=" $kind"
  done
  [ -z "$missing" ] && pass "$handler: the leftovers check sees the running pod's: $left" ||
    fail "$handler: the leftovers check misses the running pod's$missing (sees: $left)"

  teardown "$handler" "$pod"
}

# Issue 17 item 5 in the same pod: CRI's file volumes as the kubelet makes them (a
# container "vol"), stats, and the streaming ops through containerd's streaming server
# (bbx-cri speaks the kubelet's WebSocket protocol; the server's URLs are on
# 127.0.0.1 of containerd's netns, so the streaming commands run there).
cri_in_netns() { in_netns "$cri_client" "$BBX_SOCK" "$@"; }
volume_and_stream_checks() {
  local handler=$1 pod=$2 server=$3 vol_dir=$work/volumes-$1 vol said code expected i
  # A configMap-like directory of files and a secret-like single file (both read-only),
  # a hostPath file read-write, the kubelet's /etc/hosts (read-write, as it mounts
  # it) and /dev/termination-log (read-write, read on the host after the exit).
  mkdir -p "$vol_dir/config"
  echo "value-one" > "$vol_dir/config/key1"
  echo "value-two" > "$vol_dir/config/key2"
  echo "secret-of-$handler" > "$vol_dir/token"
  echo "host-line" > "$vol_dir/hostfile"
  printf '127.0.0.1 localhost\n10.79.0.250 bbx-hosts-entry-%s\n' "$handler" > "$vol_dir/hosts"
  : > "$vol_dir/termination-log"
  chmod 0644 "$vol_dir"/config/* "$vol_dir"/token "$vol_dir"/hostfile "$vol_dir"/hosts
  chmod 0666 "$vol_dir/termination-log"
  if ! vol=$(cri create "$pod" vol "$BBX_IMAGE" --stdin --log vol/0.log \
               --mount "$vol_dir/config:/etc/config:ro" --mount "$vol_dir/token:/var/run/secrets/token:ro" \
               --mount "$vol_dir/hostfile:/mnt/hostfile" --mount "$vol_dir/hosts:/etc/hosts" \
               --mount "$vol_dir/termination-log:/dev/termination-log" -- \
               /bin/sh -c 'while read l; do [ "$l" = quit ] && break; echo "got:$l"; done
                           echo "bye-from-vol" > /dev/termination-log' 2>&1) ||
     ! said=$(cri start "$vol" 2>&1); then
    fail "$handler: the volume container (CreateContainer + StartContainer): $vol $said"
    return 0
  fi
  pass "$handler: third container 'vol' with file volumes and stdin started"
  said=$(cri exec "$vol" cat /etc/config/key1 /etc/config/key2 /var/run/secrets/token 2>&1 | tr '\n' ' ' || true)
  [ "$said" = "value-one value-two secret-of-$handler " ] &&
    pass "$handler: configMap directory and secret file read in the container" ||
    fail "$handler: vol read '$said' from /etc/config and the secret file"
  for i in /etc/config/key1 /etc/config/new /var/run/secrets/token; do
    code=0
    said=$(cri exec "$vol" /bin/sh -c "echo x > $i" 2>&1) || code=$?
    [ "$code" != 0 ] && [[ $said == *"Read-only file system"* ]] &&
      pass "$handler: read-only $i refuses a write" || fail "$handler: write to read-only $i: exit $code '$said'"
  done
  [ "$(cat "$vol_dir/config/key1" "$vol_dir/token" | tr '\n' ' ')" = "value-one secret-of-$handler " ] ||
    fail "$handler: a read-only volume changed on the host"
  said=$(cri exec "$vol" /bin/sh -c 'echo container-line >> /mnt/hostfile && cat /mnt/hostfile' 2>&1 | tr '\n' ' ' || true)
  [ "$said" = "host-line container-line " ] && [ "$(tr '\n' ' ' < "$vol_dir/hostfile")" = "host-line container-line " ] &&
    pass "$handler: hostPath file written in the container, seen on the host" ||
    fail "$handler: hostPath file: container '$said', host '$(tr '\n' ' ' < "$vol_dir/hostfile")'"
  said=$(cri exec "$vol" grep -c "bbx-hosts-entry-$handler" /etc/hosts 2>&1 || true)
  [ "$said" = 1 ] && pass "$handler: /etc/hosts is the kubelet's file" || fail "$handler: /etc/hosts: '$said'"
  # /etc/resolv.conf is CRI's own (the sandbox's, written by containerd).
  expected=$(find "$BBX_DIR" -path "*/sandboxes/$pod/resolv.conf" 2>/dev/null | head -1)
  said=$(cri exec "$vol" cat /etc/resolv.conf 2>&1 || true)
  [ -n "$expected" ] && [ "$said" = "$(cat "$expected")" ] &&
    pass "$handler: /etc/resolv.conf is the sandbox's ($(wc -l < "$expected") lines)" ||
    fail "$handler: /etc/resolv.conf '${said:0:100}', the sandbox's '$expected'"

  # Stats: a busy loop in the server first; its CPU and memory are not zero.
  cri exec "$server" --timeout 60 /bin/sh -c 'i=0; while [ $i -lt 10000 ]; do i=$((i+1)); done' > /dev/null 2>&1 || true
  said=$(cri stats "$server" 2>&1 || true)
  local cpu mem
  cpu=$(sed -n 's/^cpu_usage_core_nano_seconds=//p' <<<"$said")
  mem=$(sed -n 's/^memory_working_set_bytes=//p' <<<"$said")
  [[ $cpu =~ ^[1-9][0-9]*$ ]] && [[ $mem =~ ^[1-9][0-9]*$ ]] &&
    pass "$handler: ContainerStats of the busy server: cpu ${cpu} ns, working set ${mem} bytes" ||
    fail "$handler: ContainerStats: $(tr '\n' ' ' <<<"$said")"
  said=$(cri list-stats "$pod" 2>&1 || true)
  [ "$(awk '$3 ~ /^[1-9][0-9]*$/ && $4 ~ /^[1-9][0-9]*$/' <<<"$said" | wc -l)" = 3 ] &&
    pass "$handler: ListContainerStats of the pod: three containers with CPU and memory" ||
    fail "$handler: ListContainerStats: $(tr '\n' ';' <<<"$said")"

  # Exec over the streaming server: stdin echoed back through cat; a tty with -t (and
  # none without); stdout, stderr and the exit code apart without one.
  said=$(cri_in_netns exec-stream "$server" -i --input $'hello-through-stdin\n' --until hello-through-stdin -- cat 2>&1 || true)
  [ "$said" = hello-through-stdin ] && pass "$handler: exec -i: stdin comes back through cat" ||
    fail "$handler: exec -i cat: '$said'"
  # -t with -i as `crictl exec -it` (containerd 1.6 returns no output of a tty exec
  # without stdin, with runc too).
  said=$(cri_in_netns exec-stream "$server" -i -t --input $'done\n' -- /bin/sh -c 'tty; read l; echo "read:$l"' 2>&1 | tr -d '\r' || true)
  grep -qE '^/dev/pts/[0-9]+$' <<<"$said" && grep -qx read:done <<<"$said" &&
    pass "$handler: exec -it: the command has a tty ($(grep -m1 /dev/pts <<<"$said")) and reads its stdin" ||
    fail "$handler: exec -it tty: '$(tr '\n' '|' <<<"$said")'"
  code=0
  said=$(cri_in_netns exec-stream "$server" -- /bin/sh -c 'tty; echo to-stderr >&2; exit 3' 2>"$work/stderr") || code=$?
  [ "$said" = "not a tty" ] && [ "$(cat "$work/stderr")" = to-stderr ] && [ "$code" = 3 ] &&
    pass "$handler: exec without -t: no tty, stderr apart, exit code 3" ||
    fail "$handler: exec without -t said '$said', stderr '$(cat "$work/stderr")', exit $code"
  # Attach: the container's stdin reaches it, its output comes back; then "quit" ends it.
  said=$(cri_in_netns attach "$vol" -i --input $'ping-attach\n' --until got:ping-attach 2>&1 || true)
  [ "$said" = got:ping-attach ] && pass "$handler: attach: stdin reaches the container, its output comes back" ||
    fail "$handler: attach: '$said'"
  said=$(cri_in_netns attach "$vol" -i --input $'quit\n' 2>&1) || fail "$handler: attach to end vol: $said"
  for _ in $(seq 50); do cri status "$vol" 2>/dev/null | grep -qx state=CONTAINER_EXITED && break; sleep 0.2; done
  said=$(cri status "$vol" 2>&1 || true)
  grep -qx state=CONTAINER_EXITED <<<"$said" && grep -qx exit_code=0 <<<"$said" &&
    [ "$(cat "$vol_dir/termination-log")" = bye-from-vol ] &&
    pass "$handler: vol exited 0; its /dev/termination-log is read on the host" ||
    fail "$handler: vol after quit: $(tr '\n' ' ' <<<"$said") termination-log '$(cat "$vol_dir/termination-log")'"
  # Port-forward to the server's listener (it restarts after each connection).
  for _ in $(seq 5); do
    said=$(cri_in_netns port-forward "$pod" 8080 --until hello-from-server --for 10 2>&1 || true)
    [ "$said" = hello-from-server ] && break
    sleep 0.5
  done
  # beaconbox: containerd dials localhost:8080 in CRI's pod netns; the shim's relay
  # there carries the connection into the VM (host/shim/port_forward.h).
  [ "$said" = hello-from-server ] && pass "$handler: port-forward to the pod's 8080 returns the listener's bytes" ||
    fail "$handler: port-forward to 8080: '${said:0:400}'"
  # 1 MB through the forward, more than one call of the relay carries (256 KiB):
  # every byte, in order.
  said=$(cri_in_netns port-forward "$pod" 8082 --until $'\n150000\n' --for 60 2>&1 | md5sum) || true
  [ "$said" = "$(seq 1 150000 | md5sum)" ] &&
    pass "$handler: port-forward carries 1 MB from the pod's 8082 intact" ||
    fail "$handler: port-forward of 1 MB from 8082: $(cri_in_netns port-forward "$pod" 8082 --until $'\n150000\n' --for 60 2>&1 | wc -c) bytes, md5 $said"
  # A port nobody listens on. runc: containerd's own error naming the port (its dial
  # fails). beaconbox: containerd's dial reaches the relay, which resets the
  # connection when the guest finds nothing there: the forward fails, nothing comes.
  code=0
  said=$(cri_in_netns port-forward "$pod" 8081 --for 20 2>&1) || code=$?
  if [ "$handler" = runc ]; then
    [ "$code" != 0 ] && [[ $said == *"port-forward to port 8081 failed: "*"failed to connect to localhost:8081"* ]] &&
      pass "$handler: port-forward to a port nobody listens on fails naming it" ||
      fail "$handler: port-forward to the unused 8081: exit $code '${said:0:400}'"
  else
    [ "$code" != 0 ] && [[ $said == *"port-forward to port 8081 failed: "*":8081"*"connection reset by peer"* ]] &&
      pass "$handler: port-forward to a port nobody listens on fails naming it (reset by the relay)" ||
      fail "$handler: port-forward to the unused 8081: exit $code '${said:0:400}'"
  fi
}

# StopPodSandbox + RemovePodSandbox (which removes the pod's containers, as the
# kubelet's garbage collection relies on), then nothing of the pod may be left.
teardown() {
  local handler=$1 pod=$2 said left
  said=$(cri stop-pod "$pod" 2>&1) && pass "$handler: StopPodSandbox" || fail "$handler: StopPodSandbox: $said"
  said=$(cri rm-pod "$pod" 2>&1) && pass "$handler: RemovePodSandbox" || fail "$handler: RemovePodSandbox: $said"
  # Shims and VMs exit after the delete: give them a moment.
  for _ in $(seq 100); do left=$(leftovers); [ -z "$left" ] && break; sleep 0.2; done
  [ -z "$left" ] && pass "$handler: the removed pod left no container, shim, VM, TAP, veth, lease, portmap rule, mount, netns or cgroup" ||
    fail "$handler: left after RemovePodSandbox: $(tr '\n' ';' <<<"$left")"
  # containerd runs the shim's `delete` action after each container's shim
  # connection ends; its stdout must be a DeleteResponse (a log line there once made
  # it "proto: illegal wireType 7").
  said=$(grep -c 'failed to clean up after shim disconnected' "$BBX_DIR/containerd.log" || true)
  [ "$said" = "$cleanup_failures_before" ] && pass "$handler: containerd read every delete action's answer" ||
    fail "$handler: containerd could not read $((said - cleanup_failures_before)) delete answer(s): $(grep 'failed to clean up after shim' "$BBX_DIR/containerd.log" | tail -1 | cut -c1-300)"
}

# The erofs pod (handler beaconbox-erofs): see the top. Its images are converted to
# EROFS on first use (cached in <state_dir>/erofs).
erofs_pod_checks() {
  local handler=beaconbox-erofs pod app said code t0 root left extra expected
  local vol_dir=$work/erofs-volumes cache_dir=$BBX_DIR/beacon/state/erofs
  echo "== handler $handler"
  mkdir -p "$vol_dir/emptydir" "$vol_dir/config"
  echo erofs-config-value > "$vol_dir/config/key"
  printf '127.0.0.1 localhost\n10.79.0.251 bbx-erofs-hosts-entry\n' > "$vol_dir/hosts"
  chmod 0644 "$vol_dir/config/key" "$vol_dir/hosts"
  cleanup_failures_before=$(grep -c 'failed to clean up after shim disconnected' "$BBX_DIR/containerd.log" || true)
  t0=$(ms_now)
  if ! pod=$(cri run-pod erofs-pod --handler "$handler" --log-dir "$work/logs/$handler" \
               --cgroup-parent "$cgroup_parent" --hostname erofs-pod 2>&1); then
    fail "$handler: RunPodSandbox: $pod"
    return 0
  fi
  pass "$handler: RunPodSandbox: pod ${pod:0:12} in $(($(ms_now) - t0)) ms"
  if ! app=$(cri create "$pod" app "$BBX_IMAGE" --log app/0.log --mount "$vol_dir/emptydir:/data" \
               --mount "$vol_dir/config:/etc/config:ro" --mount "$vol_dir/hosts:/etc/hosts" -- \
               /bin/sh -c 'exec sleep 2147483647' 2>&1) ||
     ! said=$(cri start "$app" 2>&1); then
    fail "$handler: the app container with volumes (CreateContainer + StartContainer): $app $said"
    teardown "$handler" "$pod"
    return 0
  fi
  pass "$handler: the app container with CRI's volumes runs in the pod's VM"
  echo "measure: handler=$handler pod_start_ms=$(($(ms_now) - t0))"
  local qemus=0 virtiofsds=0 pid
  for pid in $(others); do
    case $(exe_of "$pid") in
      qemu-system-*) qemus=$((qemus + 1)) ;;
      virtiofsd) virtiofsds=$((virtiofsds + 1)) ;;
    esac
  done
  # Two virtiofsd: the pod's layer share and its volume share.
  [ "$qemus" = 1 ] && pass "$handler: the sandbox and the app run in one VM ($virtiofsds virtiofsd)" ||
    fail "$handler: $qemus QEMU processes for the pod"
  # The root is the guest's overlay of the EROFS layers, not a virtio-fs rootfs.
  root=$(cri exec "$app" awk '$5 == "/"' /proc/self/mountinfo 2>&1 || true)
  [[ $root == *" overlay "*"lowerdir="*"layers/0"* ]] &&
    pass "$handler: the app runs on its EROFS image layers (root: ${root:0:100})" ||
    fail "$handler: the app's root is '${root:0:300}', not an overlay of EROFS layers"
  said=$(cri exec "$app" grep -c bbx-erofs-hosts-entry /etc/hosts 2>&1 || true)
  [ "$said" = 1 ] && pass "$handler: /etc/hosts is the kubelet's file" || fail "$handler: /etc/hosts: '$said'"
  expected=$(find "$BBX_DIR" -path "*/sandboxes/$pod/resolv.conf" 2>/dev/null | head -1)
  said=$(cri exec "$app" cat /etc/resolv.conf 2>&1 || true)
  [ -n "$expected" ] && [ "$said" = "$(cat "$expected")" ] &&
    pass "$handler: /etc/resolv.conf is the sandbox's" ||
    fail "$handler: /etc/resolv.conf '${said:0:100}', the sandbox's '$expected'"
  said=$(cri exec "$app" /bin/sh -c 'echo written-in-erofs-pod > /data/from-app && cat /data/from-app' 2>&1 || true)
  [ "$said" = written-in-erofs-pod ] && [ "$(cat "$vol_dir/emptydir/from-app" 2>&1)" = written-in-erofs-pod ] &&
    pass "$handler: the emptyDir written in the container is read on the host" ||
    fail "$handler: emptyDir: container '$said', host '$(cat "$vol_dir/emptydir/from-app" 2>&1)'"
  said=$(cri exec "$app" cat /etc/config/key 2>&1 || true)
  [ "$said" = erofs-config-value ] && pass "$handler: the read-only directory volume is read" ||
    fail "$handler: cat /etc/config/key: '$said'"
  code=0
  said=$(cri exec "$app" /bin/sh -c 'echo x > /etc/config/key' 2>&1) || code=$?
  [ "$code" != 0 ] && [[ $said == *"Read-only file system"* ]] &&
    [ "$(cat "$vol_dir/config/key")" = erofs-config-value ] &&
    pass "$handler: the read-only volume refuses a write" || fail "$handler: write to /etc/config/key: exit $code '$said'"
  # While the pod runs the checks below see its parts (so they can fail).
  left=$(leftovers | cut -d' ' -f1 | sort -u | tr '\n' ' ')
  extra=$(find "$cache_dir/shares" -mindepth 1 -maxdepth 1 2>/dev/null || true)
  [[ " $left" == *" process "* ]] && [[ " $left" == *" mount "* ]] && [ -n "$extra" ] &&
    pass "$handler: the leftovers checks see the running pod's: $left, layer share" ||
    fail "$handler: the leftovers checks miss the running pod's processes, mounts or layer share (see: $left; '$extra')"
  teardown "$handler" "$pod"
  # What only an erofs pod makes: its layer share, loop devices, the VM directory.
  extra=$(find "$cache_dir/shares" -mindepth 1 2>/dev/null | sed 's/^/share /' || true)
  extra+=$(losetup -a 2>/dev/null | grep -F "$BBX_DIR" | sed 's/^/loop /' || true)
  extra+=$(find "$BBX_DIR/beacon/run" -mindepth 2 \( -path '*/vm/*' -o -path '*/s/*' \) 2>/dev/null | sed 's/^/file /' || true)
  [ -z "$extra" ] && pass "$handler: no layer share, loop device or VM directory left" ||
    fail "$handler: left: $(tr '\n' ';' <<<"$extra")"
  [ "$(cat "$vol_dir/emptydir/from-app" 2>&1)" = written-in-erofs-pod ] &&
    [ "$(cat "$vol_dir/config/key")" = erofs-config-value ] &&
    pass "$handler: the volumes' host files outlive the pod" || fail "$handler: a volume's host file changed with the pod"
  echo "measure: handler=$handler erofs_pod_checks_ms=$(($(ms_now) - t0))"
}

for handler in "${handlers[@]}"; do
  if [ "$handler" = beaconbox-erofs ]; then erofs_pod_checks; else pod_checks "$handler"; fi
done
bbx_e2e_finish "cri: ${handlers[*]}: a pod of two containers through containerd's CRI plugin"
