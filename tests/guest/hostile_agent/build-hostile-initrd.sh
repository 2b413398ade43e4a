#!/usr/bin/env bash
# TEST ONLY: the hostile guest image (tests/e2e/hostile_guest_e2e.sh). It is the real
# initrd (kernel modules, /etc/beaconbox) followed by a second cpio archive holding
# only /init = the hostile agent: the kernel unpacks concatenated archives in order
# and a later file replaces an earlier one of the same name. Never installed, never
# the default: only the test's beaconbox config points at it.
#   build-hostile-initrd.sh --initrd REAL_INITRD --agent HOSTILE_AGENT --output PATH
set -euo pipefail

initrd="" agent="" output=""
while [ $# -gt 0 ]; do
  case "$1" in
    --initrd) initrd="$2"; shift 2 ;;
    --agent) agent="$2"; shift 2 ;;
    --output) output="$2"; shift 2 ;;
    *) echo "build-hostile-initrd.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$initrd" ] && [ -n "$agent" ] && [ -n "$output" ] || {
  echo "usage: build-hostile-initrd.sh --initrd REAL_INITRD --agent HOSTILE_AGENT --output PATH" >&2; exit 2; }
[ -r "$initrd" ] || { echo "build-hostile-initrd.sh: $initrd not built (build target guest_image)" >&2; exit 1; }
[ -x "$agent" ] || { echo "build-hostile-initrd.sh: $agent not built" >&2; exit 1; }

epoch=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$initrd")}
stage=$(mktemp -d "$(dirname "$output")/.hostile-initrd.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/root"
strip --strip-all -o "$stage/root/init" "$agent"
chmod 0755 "$stage/root/init"
touch -h -d "@$epoch" "$stage/root/init"
(cd "$stage/root" && echo init | cpio -o -H newc --reproducible -R 0:0 --quiet) | gzip -n -9 > "$stage/overlay"
cat "$initrd" "$stage/overlay" > "$stage/initrd"
chmod 0644 "$stage/initrd"
mv -f "$stage/initrd" "$output"
echo "build-hostile-initrd.sh: $output (TEST ONLY: /init is the hostile agent)"
