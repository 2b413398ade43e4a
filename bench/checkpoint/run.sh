#!/usr/bin/env bash
# VM-level checkpoint cost under QEMU (issue 19 item 2): an idle beaconbox guest
# (kernel + initrd as the shim boots them, virtio-serial agent channel, no virtio-fs:
# the shape of a VM with storage.driver = "erofs") is booted until vminitd serves, then
# saved with QMP `stop` + `migrate` to a file and restored with `-incoming defer` +
# `migrate-incoming` from it. Prints save time, state file size and restore time; the
# baseline in the same run is the cold boot of the same VM to "vminitd: serving on".
#   bench/checkpoint/run.sh [-n ITERATIONS] [-m MEMORY_MIB] [-o OUTPUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
iterations=3
memory=512
output=${BEACONBOX_OUTPUT_DIR:-$repo/_output}
while getopts 'n:m:o:' opt; do
  case $opt in
    n) iterations=$OPTARG ;;
    m) memory=$OPTARG ;;
    o) output=$OPTARG ;;
    *) echo "usage: run.sh [-n ITERATIONS] [-m MEMORY_MIB] [-o OUTPUT_DIR]" >&2; exit 2 ;;
  esac
done
kernel=$output/beaconbox-kernel-x86_64
initrd=$output/beaconbox-initrd
for f in "$kernel" "$initrd"; do
  [ -r "$f" ] || { echo "bench/checkpoint: $f not readable: build first (make)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/bbx-bench-checkpoint.XXXXXX)
qemu_pid=
stop_qemu() {
  if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; fi
  qemu_pid=
}
trap 'stop_qemu; rm -rf "$work"' EXIT

start_qemu() {  # extra qemu args...
  rm -f "$work/qmp.sock" "$work/agent.sock" "$work/console.log"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/token"
  qemu-system-x86_64 -nodefaults -no-user-config -nographic -no-reboot \
    -accel tcg,thread=single -M q35 -cpu max -smp 1 -m "${memory}M" \
    -object "memory-backend-memfd,id=mem,size=${memory}M,share=on" -numa node,memdev=mem \
    -kernel "$kernel" -initrd "$initrd" \
    -append "console=ttyS0 quiet loglevel=4 reboot=t i8042.noaux i8042.nokbd i8042.nopnp i8042.dumbkbd 8250.nr_uarts=1 tsc=reliable no_timer_check noreplace-smp cryptomgr.notests rcupdate.rcu_expedited=1 panic=-1 beaconbox.channel=virtio-serial:beaconbox.agent swiotlb=noforce" \
    -serial "file:$work/console.log" -qmp "unix:$work/qmp.sock,server=on,wait=off" \
    -fw_cfg "name=opt/io.beaconbox/agent-token,file=$work/token" \
    -device virtio-serial-pci,id=serial0 -chardev "socket,id=agent,path=$work/agent.sock,server=on,wait=off" \
    -device virtserialport,chardev=agent,name=beaconbox.agent \
    -device virtio-balloon-pci,id=balloon0,free-page-reporting=on "$@" >"$work/qemu.log" 2>&1 &
  qemu_pid=$!
}
# QMP driver: qmp.py SOCKET save FILE | restore FILE. Prints elapsed ms.
cat > "$work/qmp.py" <<'PY'
import json, socket, sys, time
sock_path, action, path = sys.argv[1:4]
for _ in range(300):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(sock_path); break
    except OSError:
        time.sleep(0.05)
f = s.makefile("rw")
def call(cmd, args=None):
    f.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r: return r["return"]
        if "error" in r: sys.exit("qmp %s: %s" % (cmd, r["error"]))
f.readline(); call("qmp_capabilities")
start = time.monotonic()
if action == "save":
    call("stop"); call("migrate", {"uri": "exec:cat > " + path})
    while call("query-migrate").get("status") not in ("completed", "failed"): time.sleep(0.01)
    if call("query-migrate")["status"] != "completed": sys.exit("migration failed")
else:
    call("migrate-incoming", {"uri": "exec:cat " + path})
    while call("query-migrate").get("status") not in ("completed", "failed"): time.sleep(0.01)
    call("cont")
    while not call("query-status")["running"]: time.sleep(0.01)
print(int((time.monotonic() - start) * 1000))
PY
wait_serving() {
  local deadline=$((SECONDS + 120))
  until grep -q 'vminitd: serving on' "$work/console.log" 2>/dev/null; do
    kill -0 "$qemu_pid" 2>/dev/null || { echo "QEMU exited: $(tail -c 400 "$work/qemu.log")" >&2; exit 1; }
    [ $SECONDS -lt $deadline ] || { echo "guest did not serve within 120 s" >&2; exit 1; }
    sleep 0.05
  done
}
echo "== $(nproc) CPUs, TCG, ${memory} MiB guest, $iterations runs; $(qemu-system-x86_64 --version | head -1)"
for i in $(seq "$iterations"); do
  t0=$(date +%s%N); start_qemu; wait_serving; boot=$((($(date +%s%N) - t0) / 1000000))
  sleep 1  # let the agent settle into waiting for its host
  save=$(python3 "$work/qmp.py" "$work/qmp.sock" save "$work/state")
  size=$(stat -c %s "$work/state")
  stop_qemu
  t0=$(date +%s%N); start_qemu -incoming defer
  restore=$(python3 "$work/qmp.py" "$work/qmp.sock" restore "$work/state")
  total=$((($(date +%s%N) - t0) / 1000000))
  sleep 1
  kill -0 "$qemu_pid" 2>/dev/null || { echo "restored QEMU died: $(tail -c 400 "$work/qemu.log")" >&2; exit 1; }
  stop_qemu
  printf 'run %d: cold boot to agent %5d ms | save %5d ms, state %6d KiB | restore %5d ms (QEMU start + load %5d ms)\n' \
    "$i" "$boot" "$save" "$((size / 1024))" "$restore" "$total"
  rm -f "$work/state"
done
