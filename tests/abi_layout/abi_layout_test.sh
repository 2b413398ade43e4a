#!/bin/sh
# The plugin ABI's layout against its recorded baseline (plugin-abi/abi/layout.txt):
# plugin-abi/abi/layout_dump.c prints the offset and size of every member of every
# public struct and the value of every enum constant; every baseline line must still
# be printed as is. Appending passes; moving, resizing, removing or renaming fails.
#
# The script proves both directions on copies of the header: a moved member, a resized
# member and a removed member must fail; appended members must pass.
#
#   abi_layout_test.sh CC SOURCE_DIR WORK_DIR     the test (ctest runs it)
#   abi_layout_test.sh --update CC SOURCE_DIR     rewrite the baseline, deliberately
set -eu

if [ "$1" = --update ]; then
  cc=$2 src=$3
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$cc" -std=c11 -I "$src/plugin-abi/include" "$src/plugin-abi/abi/layout_dump.c" -o "$work/dump"
  "$work/dump" > "$src/plugin-abi/abi/layout.txt"
  echo "rewrote $src/plugin-abi/abi/layout.txt: review the diff, it is an ABI change"
  exit 0
fi

cc=$1 src=$2 work=$3
header="$src/plugin-abi/include/beaconbox/plugin_abi.h"
baseline="$src/plugin-abi/abi/layout.txt"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# check INCLUDE_DIR: 0 when the header there keeps every baseline line.
check() {
  if ! "$cc" -std=c11 -Wall -Werror -pedantic -I "$1" "$src/plugin-abi/abi/layout_dump.c" \
       -o "$work/dump" 2> "$work/cc.err"; then
    echo "  layout_dump.c does not compile against it (a member removed or renamed):"
    sed 's/^/    /' "$work/cc.err" | head -5
    return 1
  fi
  "$work/dump" > "$work/now.txt"
  changed=$(grep -vxF -f "$work/now.txt" "$baseline" || true)
  if [ -n "$changed" ]; then
    echo "  baseline lines no longer true:"
    echo "$changed" | sed 's/^/    /'
    return 1
  fi
  return 0
}

# mutate NAME SED_SCRIPT: a copy of the header with the script applied.
mutate() {
  mkdir -p "$work/$1/beaconbox"
  sed "$2" "$header" > "$work/$1/beaconbox/plugin_abi.h"
  if cmp -s "$header" "$work/$1/beaconbox/plugin_abi.h"; then
    echo "FAIL: mutation $1 changed nothing: fix the test's sed script"
    exit 1
  fi
}

failed=0
echo "the header as it is:"
if check "$src/plugin-abi/include"; then
  echo "  keeps the baseline"
  extra=$(grep -vxF -f "$baseline" "$work/now.txt" || true)
  if [ -n "$extra" ]; then
    echo "  new since the baseline (appended; record them with --update):"
    echo "$extra" | sed 's/^/    /'
  fi
else
  echo "FAIL: plugin_abi.h breaks the recorded ABI (plugin-abi/README.md, 'Changing the ABI')"
  failed=1
fi

# Must fail: host_context moved after share_dir; abi_version widened; env_var removed.
mutate moved '/^  void \*host_context; /d; /^  const char \*share_dir;$/a\
  void *host_context;'
mutate resized 's/^  uint32_t abi_version; \/\* the version negotiated/  uint64_t abi_version; \/* the version negotiated/'
mutate removed '/^  const char \*env_var;$/d'
for name in moved resized removed; do
  echo "mutation $name:"
  if check "$work/$name" > "$work/$name.out"; then
    echo "FAIL: a $name member was not caught"
    failed=1
  else
    sed 's/^/  /' "$work/$name.out" | head -4
    echo "  caught, as it must be"
  fi
done

# Must pass: a member appended to the host services, the common ops and the vmm ops.
mutate appended '/^} bbx_host_services;$/i\
  const char *appended_dir;
/^} bbx_plugin_common_ops;$/i\
  bbx_status (*appended_hook)(bbx_plugin *plugin, bbx_error *error);
/^} bbx_vmm_ops;$/i\
  bbx_status (*vm_appended_hook)(bbx_vm *vm, bbx_error *error);'
echo "mutation appended:"
if check "$work/appended" > "$work/appended.out"; then
  echo "  passes, as it must"
else
  cat "$work/appended.out"
  echo "FAIL: appending members was refused"
  failed=1
fi
exit $failed
