#!/usr/bin/env bash
# Extracts the uncompressed kernel (an ELF vmlinux) from an x86 bzImage and checks it
# has a PVH entry point (the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY, type 18), the form
# Cloud Hypervisor direct-boots and QEMU boots with -kernel without decompressing.
#
# Written from the x86 boot protocol (Documentation/arch/x86/boot.rst): the protected-
# mode part starts at (setup_sects + 1) * 512 (setup_sects at 0x1f1, 0 meaning 4); the
# compressed payload is at payload_offset (0x248) from there, payload_length (0x24c)
# bytes long, and ends with the uncompressed size as 4 little-endian bytes.
#
# usage: extract-vmlinux.sh BZIMAGE OUT
# Exit 0: OUT written. Exit 3: the kernel has no PVH entry (OUT not written, one line
# on stderr says so). Exit 1: anything else (one line on stderr).
set -euo pipefail

die() { echo "extract-vmlinux.sh: $*" >&2; exit 1; }
[ $# -eq 2 ] || { echo "usage: extract-vmlinux.sh BZIMAGE OUT" >&2; exit 2; }
bzimage=$1 out=$2
for tool in od dd readelf; do
  command -v "$tool" >/dev/null || die "$tool not found (coreutils, binutils)"
done

u8() { od -An -tu1 -j "$1" -N1 "$bzimage" | tr -d ' '; }
u32() { od -An -tu4 -j "$1" -N4 "$bzimage" | tr -d ' '; }
hex() { od -An -tx1 -j "$1" -N "$2" "$bzimage" | tr -d ' \n'; }

[ "$(hex $((0x202)) 4)" = 48647253 ] || die "$bzimage is not a bzImage (no HdrS boot header)"
setup_sects=$(u8 $((0x1f1)))
[ "$setup_sects" -ne 0 ] || setup_sects=4
payload_offset=$(u32 $((0x248)))
payload_length=$(u32 $((0x24c)))
[ "$payload_length" -gt 4 ] || die "$bzimage has no compressed payload (boot protocol < 2.08?)"
start=$(((setup_sects + 1) * 512 + payload_offset))

magic=$(hex "$start" 6)
case "$magic" in
  1f8b*) decompress=(gzip -dc) ;;
  fd377a585a00) decompress=(xz -dc) ;;
  28b52ffd*) decompress=(zstd -dc) ;;
  02214c18*) decompress=(lz4 -dc) ;;  # the legacy LZ4 frame the kernel build writes
  425a68*) decompress=(bzip2 -dc) ;;
  5d0000*) decompress=(xz --format=lzma -dc) ;;
  *) die "$bzimage: unknown payload compression (magic $magic at byte $start)" ;;
esac
command -v "${decompress[0]}" >/dev/null || die "${decompress[0]} not found: apt-get install ${decompress[0]}"

tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
# The payload without its 4-byte size trailer, decompressed.
dd if="$bzimage" bs=1M iflag=skip_bytes,count_bytes skip="$start" count=$((payload_length - 4)) \
  status=none | "${decompress[@]}" > "$tmp" || die "decompressing the payload of $bzimage failed"
want=$(u32 $((start + payload_length - 4)))
got=$(stat -c %s "$tmp")
[ "$got" = "$want" ] || die "$bzimage: decompressed $got bytes, its trailer says $want"
[ "$(od -An -tx1 -N4 "$tmp" | tr -d ' ')" = 7f454c46 ] || die "$bzimage: the payload is not an ELF vmlinux"
if ! readelf -nW "$tmp" | grep -qE 'Xen .*(\(0x00000012\)|PHYS32_ENTRY)'; then
  echo "extract-vmlinux.sh: $bzimage has no PVH entry (no Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY: the kernel lacks CONFIG_PVH); keep booting the bzImage" >&2
  exit 3
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
