#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here.
# shellcheck disable=SC2015
# One shim per pod (issue 17, the shim side), driven as containerd's CRI plugin drives
# a runtime but with ctr: a sandbox container (annotation
# io.kubernetes.cri.container-type=sandbox, sandbox-id P) in a network namespace the
# test made (--with-ns network:...), then an app container (container-type=container,
# sandbox-id P) with the sandbox's network, IPC and UTS namespaces as CRI names them.
# runc's shim first, the expected answer:
#   - one shim serves both containers;
#   - the app container reaches a TCP listener of the sandbox container on localhost
#     and shares its network and UTS namespaces;
#   - deleting the app container leaves the shim and sandbox up; deleting the sandbox
#     ends the shim.
# Then beaconbox:
#   - the sandbox container boots one VM; the app container's `start` gets the pod's
#     shim (still one shim, one QEMU);
#   - the app container runs in that VM (its rootfs in the VM's one virtio-fs share,
#     mounted there after boot) and passes runc's checks: localhost, net/UTS/IPC
#     namespaces and hostname shared, its own writable rootfs;
#   - deleting the app container leaves the VM and sandbox up; deleting the sandbox
#     ends the shim and leaves no VM process, mount or socket.
# Pod sizing (issue 17 item 2), read from the guest (nproc, /proc/meminfo):
#   - the sandbox carries the pod resources containerd's CRI sets (1.6.20 too: e2e_cri)
#     (io.kubernetes.cri.sandbox-cpu-quota/-period/-shares, -memory: 1 CPU, 640 MiB):
#     the VM boots with 1 vCPU and 640 + 128 MiB (vm.guest_overhead_mib);
#   - the app container's limits (--cpus 1.5, 1 GiB) grow it to 2 vCPUs and
#     768 + 3 x 128 MiB (1 GiB + 128 MiB);
#   - a further container whose limit does not fit (2 GiB more, vm.max_memory_mib 2048)
#     is refused with one line and adds no shim or VM.
# A pod with [storage] driver = "erofs" (the shims read the config at each start): a
# sandbox and two app containers in one VM, each on its own image layers as EROFS
# (the pod's containers get them over one read-only share of the VM, as a running VM
# gets no new disk), each rootfs its own; deleting the pod leaves no VM, mount, loop
# device, share of the images, TAP or lease; so does SIGKILL of the pod's shim followed
# by `ctr task delete` of each container.
#   pod_e2e.sh OUTPUT_DIR [system|1.7|2]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BBX_OUTPUT_DIR=${1:?usage: pod_e2e.sh OUTPUT_DIR [system|1.7|2]}
export BBX_CONTAINERD=${2:-system}
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
bbx_select_containerd_or_skip
bbx_require_beaconbox "$BBX_OUTPUT_DIR" plugins/storage-erofs.so
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"

# The pod's network namespace, as CRI would make it: a process of the test's own holds
# it (ended by its pid at the end); containerd and the shims reach it by /proc path.
netns_holder=
bbx_on_stop() {
  if [ -n "$netns_holder" ]; then
    kill -KILL "$netns_holder" 2>/dev/null || true
    wait "$netns_holder" 2>/dev/null || true
  fi
}
bbx_env_start
bbx_import_demo_image
unshare --net /bin/sh -c 'ip link set lo up && exec sleep 3600' </dev/null >/dev/null 2>&1 &
netns_holder=$!
for _ in $(seq 50); do
  [ "$(readlink "/proc/$netns_holder/ns/net")" != "$(readlink /proc/self/ns/net)" ] && break
  sleep 0.1
done
pod_netns=/proc/$netns_holder/ns/net

ctl() { timeout 300 "$BBX_CONTAINERD_BIN/ctr" --address "$BBX_SOCK" --namespace "$BBX_NS" "$@"; }
task_pid() { ctl task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $2}'; }
task_status() { ctl task ls 2>/dev/null | awk -v id="$1" '$1 == id {print $3}'; }
wait_running() {
  local i
  for i in $(seq 600); do
    [ "$(task_status "$1")" = RUNNING ] && return 0
    sleep 0.2
  done
  return 1
}
shim_count() { bbx_shim_pids | wc -l; }
# QEMU processes of this environment (the shims' VMs).
qemu_count() {
  local pid n=0
  for pid in $(bbx_env_pids); do
    case $(exe_of "$pid") in qemu-system-*) n=$((n + 1)) ;; esac
  done
  echo "$n"
}
exec_in() {  # exec_in ID EXEC_ID CMD...: the command's stdout
  local id=$1 exec_id=$2
  shift 2
  ctl task exec --fifo-dir "$BBX_DIR/fifo" --exec-id "$exec_id" "$id" "$@" </dev/null
}
remove() {  # remove ID: kill, delete the task, remove the container
  ctl task kill -s KILL "$1" >/dev/null 2>&1 || true
  local i
  for i in $(seq 100); do
    [ "$(task_status "$1")" = STOPPED ] && break
    sleep 0.2
  done
  ctl task delete "$1" >/dev/null 2>&1 || true
  ctl container rm "$1" >/dev/null 2>&1 || true
}

MiB=1048576
# The pod's resources as containerd 1.7/2's CRI writes them on the sandbox container.
sandbox_annotations=(--annotation io.kubernetes.cri.container-type=sandbox
                     --annotation io.kubernetes.cri.sandbox-cpu-period=100000
                     --annotation io.kubernetes.cri.sandbox-cpu-quota=100000
                     --annotation io.kubernetes.cri.sandbox-cpu-shares=1024
                     --annotation io.kubernetes.cri.sandbox-memory=$((640 * MiB)))
# The guest's view of the VM's size: "NPROC MEMTOTAL_MIB".
# shellcheck disable=SC2016
vm_size_in() { exec_in "$1" "size-$2" /bin/sh -c 'echo "$(nproc) $(( $(awk "/MemTotal/ {print \$2}" /proc/meminfo) / 1024 ))"' 2>&1 || true; }
# check_vm_size WHAT ID VCPUS MIB: MemTotal of a VM of MIB MiB is below MIB (kernel,
# reserved) but not far.
check_vm_size() {
  local got n m
  got=$(vm_size_in "$2" "$RANDOM")
  read -r n m <<<"$got"
  [ "$n" = "$3" ] && [ -n "$m" ] && [ "$m" -le "$4" ] 2>/dev/null && [ "$m" -gt $(($4 - 160)) ] &&
    pass "beaconbox: $1: $n vCPUs, MemTotal $m MiB (a $3 vCPU, $4 MiB VM)" ||
    fail "beaconbox: $1: the guest has '$got' (nproc, MemTotal MiB), want $3 vCPUs and MemTotal in ($(($4 - 160)), $4]"
}
# The sandbox: busybox httpd on localhost:8080 of the pod's network namespace.
sandbox_cmd=(/bin/sh -c 'mkdir -p /tmp/www && echo pod-hello > /tmp/www/index.html &&
                         exec httpd -f -p 127.0.0.1:8080 -h /tmp/www')

for runtime in io.containerd.runc.v2 io.containerd.beaconbox.v1; do
  name=${runtime#io.containerd.}
  name=${name%%.*}
  pod=pod-$name app=app-$name
  shims_before=$(shim_count)

  started=$(date +%s%N)
  if ! out=$(ctl run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" \
               "${sandbox_annotations[@]}" --annotation "io.kubernetes.cri.sandbox-id=$pod" \
               --with-ns "network:$pod_netns" "$BBX_IMAGE" "$pod" "${sandbox_cmd[@]}" \
               </dev/null 2>&1) || ! wait_running "$pod"; then
    fail "$name: the sandbox container $pod did not run: $out"
    remove "$pod"
    continue
  fi
  pod_pid=$(task_pid "$pod")
  # Reported, never asserted (timing belongs in bench/).
  echo "measured: $name: sandbox container ctr run -d until RUNNING $(( ($(date +%s%N) - started) / 1000000 )) ms"
  [ "$(shim_count)" -eq $((shims_before + 1)) ] &&
    pass "$name: the sandbox container runs under one new shim" ||
    fail "$name: $((  $(shim_count) - shims_before )) new shims for the sandbox container"
  if [ "$name" = beaconbox ]; then
    [ "$(qemu_count)" -eq 1 ] && pass "beaconbox: the sandbox container booted one VM" ||
      fail "beaconbox: $(qemu_count) QEMU processes for the sandbox container"
    check_vm_size "the pod's annotations (1 CPU, 640 MiB) size the VM" "$pod" 1 768
  fi

  # The app container, with the pod's namespaces as CRI gives them: the pod's netns
  # path, the sandbox task's IPC and UTS namespaces by /proc/<its pid>.
  started=$(date +%s%N)
  app_out=$(ctl run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" \
              --annotation io.kubernetes.cri.container-type=container \
              --annotation "io.kubernetes.cri.sandbox-id=$pod" \
              --with-ns "network:$pod_netns" --with-ns "ipc:/proc/$pod_pid/ns/ipc" \
              --with-ns "uts:/proc/$pod_pid/ns/uts" --cpus 1.5 --memory-limit $((1024 * MiB)) \
              "$BBX_IMAGE" "$app" /bin/sleep 3600 </dev/null 2>&1) && app_ran=1 || app_ran=0
  echo "measured: $name: app container ctr run -d answered in $(( ($(date +%s%N) - started) / 1000000 )) ms (ran: $app_ran)"
  [ "$(shim_count)" -eq $((shims_before + 1)) ] &&
    pass "$name: the app container's start reuses the pod's shim (no second shim)" ||
    fail "$name: $(( $(shim_count) - shims_before )) shims for the pod after the app container"

  # The same checks for both runtimes: in beaconbox the app container runs in the
  # pod's VM, its rootfs mounted below the VM's one virtio-fs share after boot.
  if [ "$app_ran" = 1 ] && wait_running "$app"; then
    got=$(exec_in "$app" e1 wget -q -O - http://127.0.0.1:8080/ 2>&1 || true)
    [ "$got" = pod-hello ] &&
      pass "$name: the app container reaches the sandbox's listener on localhost" ||
      fail "$name: the app container got '$got' from localhost:8080"
    for ns in net uts ipc; do
      in_app=$(exec_in "$app" "ns-$ns" readlink "/proc/self/ns/$ns" 2>&1 || true)
      in_pod=$(exec_in "$pod" "ns-$ns" readlink "/proc/self/ns/$ns" 2>&1 || true)
      [ -n "$in_app" ] && [ "$in_app" = "$in_pod" ] &&
        pass "$name: the app container shares the sandbox's $ns namespace" ||
        fail "$name: $ns namespace: app '$in_app', sandbox '$in_pod'"
    done
    [ "$(exec_in "$app" h1 hostname)" = "$(exec_in "$pod" h2 hostname)" ] &&
      pass "$name: both containers see the same hostname" ||
      fail "$name: the containers see different hostnames"
    # Its own rootfs (the image's), writable, not the sandbox's.
    exec_in "$app" w1 /bin/sh -c 'echo app-wrote > /app-file' >/dev/null 2>&1 || true
    got=$(exec_in "$app" r1 cat /app-file 2>&1 || true)
    [ "$got" = app-wrote ] && pass "$name: the app container writes its own rootfs" ||
      fail "$name: writing /app-file in the app container: '$got'"
    in_pod=$(exec_in "$pod" r2 cat /app-file 2>&1 || true)
    [ "$in_pod" != app-wrote ] && pass "$name: the sandbox does not see the app's rootfs" ||
      fail "$name: the sandbox sees the app container's /app-file"
  else
    fail "$name: the app container did not run: $app_out"
  fi
  if [ "$name" = beaconbox ]; then
    [ "$(qemu_count)" -eq 1 ] && pass "beaconbox: still one VM for the pod" ||
      fail "beaconbox: $(qemu_count) QEMU processes after the app container"
    if [ "$app_ran" = 1 ]; then
      check_vm_size "the app container's limits (1.5 CPUs, 1 GiB) grew the VM" "$app" 2 1152
      # 1 GiB + 2 GiB + 128 MiB is beyond vm.max_memory_mib (2048): refused, one line.
      big=big-$name
      out=$(ctl run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" \
              --annotation io.kubernetes.cri.container-type=container \
              --annotation "io.kubernetes.cri.sandbox-id=$pod" \
              --with-ns "network:$pod_netns" --memory-limit $((2048 * MiB)) \
              "$BBX_IMAGE" "$big" /bin/sleep 3600 </dev/null 2>&1) && big_ran=1 || big_ran=0
      reason=$(printf '%s\n' "$out" | grep -m1 -o 'container big-[^"]*does not fit[^"]*' || true)
      [ "$big_ran" = 0 ] && [ -n "$reason" ] && [[ $reason == *vm.max_memory_mib* ]] &&
        pass "beaconbox: a container that does not fit is refused: $(printf '%s' "$reason" | cut -c1-240)" ||
        fail "beaconbox: a 2 GiB container beside 1 GiB in a 2 GiB-maximum VM: ran=$big_ran: $out"
      remove "$big"
      [ "$(qemu_count)" -eq 1 ] && [ "$(shim_count)" -eq $((shims_before + 1)) ] &&
        pass "beaconbox: the refused container left the pod's one shim and VM as they were" ||
        fail "beaconbox: after the refused container: $(qemu_count) QEMU, $(( $(shim_count) - shims_before )) shims"
      check_vm_size "the refused container changed nothing" "$pod" 2 1152
    fi
  fi

  # Deleting the app container leaves the pod's shim and sandbox up.
  remove "$app"
  [ "$(task_status "$pod")" = RUNNING ] && [ "$(shim_count)" -eq $((shims_before + 1)) ] &&
    pass "$name: deleting the app container leaves the shim and the sandbox running" ||
    fail "$name: after deleting the app container: sandbox '$(task_status "$pod")'," \
         "$(( $(shim_count) - shims_before )) shims"
  if [ "$name" = beaconbox ]; then
    [ "$(qemu_count)" -eq 1 ] && pass "beaconbox: the VM stays while the sandbox runs" ||
      fail "beaconbox: $(qemu_count) QEMU processes after deleting the app container"
  fi

  # Deleting the sandbox ends the shim (and beaconbox's VM).
  remove "$pod"
  gone=0
  for _ in $(seq 100); do
    [ "$(shim_count)" -eq "$shims_before" ] && { gone=1; break; }
    sleep 0.2
  done
  [ "$gone" = 1 ] && pass "$name: deleting the sandbox ends the pod's shim" ||
    fail "$name: $(( $(shim_count) - shims_before )) shims left after deleting the sandbox"
done

# Nothing of the pods is left: no process of the environment but containerd, no
# mount under it beyond containerd's own, no VM directory or shim socket.
left=$(others | while read -r pid; do [ "$pid" = "$netns_holder" ] || echo "$pid $(exe_of "$pid")"; done)
[ -z "$left" ] && pass "no shim, VM or helper process is left" || fail "processes left: $left"
mounts=$(bbx_env_mounts | grep -E "/io.containerd.runtime.v2.task/|/beacon/" || true)
[ -z "$mounts" ] && pass "no mount is left" || fail "mounts left: $mounts"
files=$(find "$BBX_DIR/beacon/run" -mindepth 2 \( -path '*/vm/*' -o -path '*/s/*' \) 2>/dev/null || true)
[ -z "$files" ] && pass "no VM directory or shim socket is left" || fail "left: $files"

# The erofs storage driver for a pod.
bbx_use_erofs || fail "could not select driver erofs"
cache_dir=$BBX_DIR/beacon/state/erofs
runtime=io.containerd.beaconbox.v1
# erofs_pod POD ENDING: the sandbox POD and app containers POD-app1, POD-app2; ENDING
# "delete" removes them (apps first, as CRI does); "kill9" SIGKILLs the pod's shim
# first, then deletes each task (containerd runs the shim's delete action from the
# state file the dead shim left), the apps first.
erofs_pod() {
  local pod=$1 ending=$2 app1=$1-app1 app2=$1-app2 app out id root layers shares left mounts loops
  local files taps leases shim pod_pid ids=()
  if ctl run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" \
       --annotation io.kubernetes.cri.container-type=sandbox --annotation "io.kubernetes.cri.sandbox-id=$pod" \
       --with-ns "network:$pod_netns" "$BBX_IMAGE" "$pod" /bin/sleep 3600 </dev/null >/dev/null 2>&1 &&
     wait_running "$pod"; then
    ids+=("$pod")
    pod_pid=$(task_pid "$pod")
    for app in "$app1" "$app2"; do
      if out=$(ctl run -d --fifo-dir "$BBX_DIR/fifo" --runtime "$runtime" \
                 --annotation io.kubernetes.cri.container-type=container \
                 --annotation "io.kubernetes.cri.sandbox-id=$pod" \
                 --with-ns "network:$pod_netns" --with-ns "ipc:/proc/$pod_pid/ns/ipc" \
                 --with-ns "uts:/proc/$pod_pid/ns/uts" \
                 "$BBX_IMAGE" "$app" /bin/sleep 3600 </dev/null 2>&1) && wait_running "$app"; then
        ids+=("$app")
      else
        fail "erofs $pod: the app container $app did not run: $(printf '%s' "$out" | tail -c 400)"
      fi
    done
  else
    fail "erofs $pod: the sandbox container did not run"
  fi
  if [ "${#ids[@]}" = 3 ]; then
    [ "$(qemu_count)" -eq 1 ] && pass "erofs $pod: the sandbox and two app containers run in one VM" ||
      fail "erofs $pod: $(qemu_count) QEMU processes for the pod"
    for id in "${ids[@]}"; do
      # The root is the guest's overlay of the layers vminitd mounted from the images.
      # shellcheck disable=SC2016
      root=$(exec_in "$id" "root-$id" awk '$5 == "/"' /proc/self/mountinfo 2>&1 || true)
      layers=$(grep -c "erofs layer .* for $BBX_NS/$id\([^a-z0-9-]\|\$\)" "$BBX_DIR/containerd.log" || true)
      [[ $root == *" overlay "*"lowerdir="*"layers/0"* ]] && [ "$layers" -ge 1 ] &&
        pass "erofs $pod: $id runs on its $layers image layer(s) as EROFS (root: ${root:0:120})" ||
        fail "erofs $pod: $id: root '$root', $layers erofs layer log line(s)"
    done
    exec_in "$app1" w-e1 /bin/sh -c 'echo app1-wrote > /erofs-file' >/dev/null 2>&1 || true
    [ "$(exec_in "$app1" r-e1 cat /erofs-file 2>&1)" = app1-wrote ] &&
      [ "$(exec_in "$app2" r-e2 cat /erofs-file 2>&1)" != app1-wrote ] &&
      [ "$(exec_in "$pod" r-e3 cat /erofs-file 2>&1)" != app1-wrote ] &&
      pass "erofs $pod: app1 writes its own rootfs; app2 and the sandbox do not see it" ||
      fail "erofs $pod: a write to app1's rootfs is missing there or seen elsewhere"
    shares=$(find "$cache_dir/shares" -mindepth 2 -maxdepth 2 2>/dev/null | sed 's|.*/shares/||' | tr '\n' ' ')
    [ "$(wc -w <<<"$shares")" = 3 ] && pass "erofs $pod: one share of the VM holds the three containers' images: $shares" ||
      fail "erofs $pod: the pod's layer share holds '$shares'"
  fi
  if [ "$ending" = kill9 ]; then
    shim=$(bbx_shim_pids)
    if [ "$(wc -w <<<"$shim")" = 1 ]; then
      kill -KILL "$shim"
      pass "erofs $pod: the pod's shim $shim killed with SIGKILL"
    else
      fail "erofs $pod: not one shim to kill: '$shim'"
    fi
    for _ in $(seq 50); do [ "$(task_status "$pod")" = RUNNING ] || break; sleep 0.2; done
  fi
  for id in "$app2" "$app1" "$pod"; do
    if [ "$ending" = kill9 ]; then
      # No shim to kill through: the delete runs the shim's delete action.
      ctl task delete "$id" >/dev/null 2>&1 || true
      ctl container rm "$id" >/dev/null 2>&1 || true
    else
      remove "$id"
    fi
  done
  for _ in $(seq 100); do [ "$(qemu_count)" -eq 0 ] && break; sleep 0.2; done
  left=$(others | while read -r pid; do [ "$pid" = "$netns_holder" ] || echo "$pid $(exe_of "$pid")"; done)
  mounts=$(bbx_env_mounts | grep -E "/io.containerd.runtime.v2.task/|/beacon/" || true)
  loops=$(losetup -a 2>/dev/null | grep -F "$BBX_DIR" || true)
  shares=$(find "$cache_dir/shares" -mindepth 1 2>/dev/null || true)
  files=$(find "$BBX_DIR/beacon/run" -mindepth 2 \( -path '*/vm/*' -o -path '*/s/*' \) 2>/dev/null || true)
  taps=$(nsenter --net="$pod_netns" ip -o link show type tun 2>/dev/null | awk '{print $2}' || true)
  leases=$(ctl leases ls -q 2>/dev/null || true)
  [ -z "$left$mounts$loops$shares$files$taps$leases" ] &&
    pass "erofs $pod ($ending): nothing left: no VM or shim, mount, loop device, image share, VM directory, TAP or lease" ||
    fail "erofs $pod ($ending): left: processes '$left' mounts '$mounts' loops '$loops' shares '$shares' files '$files' taps '$taps' leases '$leases'"
}
erofs_pod epod delete
# Issue 17 follow-up: the pod's shim killed with two app containers in its VM.
erofs_pod kpod kill9

bbx_e2e_finish "pod end-to-end: all checks passed"
