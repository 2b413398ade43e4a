#!/usr/bin/env bash
# Builds a multi-layer OCI image tarball for erofs_e2e.sh, importable with
# `ctr image import` (no registry). Layers, bottom to top:
#   1. busybox-static with its applets, list-xattrs (list_xattrs.c, static), and /data:
#      replaced (v1), deleted, opq/{a,b}, gonedir/x, keep
#   2. /data/replaced (v2), a whiteout of /data/deleted, /data/opq opaque with c only,
#      symlinks (relative, absolute, dangling), hard links, a fifo, a 16 MiB file, a
#      user.* xattr, files owned by 1234:5678 (one setuid), a sticky directory
#   3. a whiteout of the directory /data/gonedir, /data/late, /data/newdir/deep/file
# For bench/erofs: BBX_BIG_MIB sizes /data/big (default 16), BBX_TREE_FILES adds a
# tree of that many small files under /data/tree in layer 3 (default 0).
#   build_layered_image.sh OUT.tar NAME:TAG    prints NAME:TAG on stdout
set -euo pipefail
die() { echo "build_layered_image.sh: $*" >&2; exit 1; }
out=${1:?usage: build_layered_image.sh OUT.tar NAME:TAG}
ref=${2:?usage: build_layered_image.sh OUT.tar NAME:TAG}
here=$(cd "$(dirname "$0")" && pwd)
busybox=${BBX_BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || die "$busybox missing: run scripts/setup.sh (package busybox-static)"
for tool in tar gzip sha256sum cc python3; do command -v "$tool" >/dev/null || die "$tool not found"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/bbx-layered.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 022

l1="$work/l1" l2="$work/l2" l3="$work/l3"
mkdir -p "$l1"/{bin,etc,proc,sys,dev,tmp,root,run,data/opq,data/gonedir}
install -m 0755 "$busybox" "$l1/bin/busybox"
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$l1/bin/$applet"
done
cc -static -O2 -o "$l1/bin/list-xattrs" "$here/list_xattrs.c" || die "cc -static list_xattrs.c failed (libc6-dev)"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$l1/etc/passwd"
printf 'root:x:0:\n' > "$l1/etc/group"
echo v1 > "$l1/data/replaced"
echo doomed > "$l1/data/deleted"
echo a > "$l1/data/opq/a"
echo b > "$l1/data/opq/b"
echo x > "$l1/data/gonedir/x"
echo keep > "$l1/data/keep"

mkdir -p "$l2/data/opq" "$l2/data/sticky"
echo v2 > "$l2/data/replaced"
: > "$l2/data/.wh.deleted"
: > "$l2/data/opq/.wh..wh..opq"
echo c > "$l2/data/opq/c"
ln -s replaced "$l2/data/link"
ln -s /data/keep "$l2/data/abslink"
ln -s /nonexistent "$l2/data/dangling"
echo linked > "$l2/data/hl1"
ln "$l2/data/hl1" "$l2/data/hl2"
mkfifo "$l2/data/fifo"
head -c $((${BBX_BIG_MIB:-16} * 1048576)) /dev/urandom > "$l2/data/big"
echo xattr > "$l2/data/x"
python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.beaconbox", b"hello")' "$l2/data/x" ||
  die "cannot set a user.* xattr in $work (file system without user xattrs?)"
echo owned > "$l2/data/owned"
chown 1234:5678 "$l2/data/owned"
cp "$busybox" "$l2/data/setuid" && chown 1234:5678 "$l2/data/setuid" && chmod 4755 "$l2/data/setuid"
chmod 1777 "$l2/data/sticky"

mkdir -p "$l3/data/newdir/deep"
: > "$l3/data/.wh.gonedir"
echo layer3 > "$l3/data/late"
echo deep > "$l3/data/newdir/deep/file"
tree_files=${BBX_TREE_FILES:-0}
for ((i = 0; i < tree_files; i++)); do
  [ $((i % 100)) -eq 0 ] && mkdir -p "$l3/data/tree/d$((i / 100))"
  echo "$i" > "$l3/data/tree/d$((i / 100))/f$i"
done

blobs="$work/oci/blobs/sha256"
mkdir -p "$blobs"
put_blob() {  # put_blob FILE -> "DIGEST SIZE"
  local digest size
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$blobs/$digest"
  echo "$digest $size"
}
diff_ids=() layers=()
for layer in "$l1" "$l2" "$l3"; do
  # pax keeps the user.* xattr (SCHILY.xattr), owners are kept numerically.
  (cd "$layer" && tar --create --file "$layer.tar" --sort=name --format=pax --xattrs \
     --xattrs-include='user.*' --numeric-owner --mtime=@1700000000 .)
  diff_ids+=("\"sha256:$(sha256sum "$layer.tar" | cut -d' ' -f1)\"")
  gzip -n -1 < "$layer.tar" > "$layer.tar.gz"
  read -r digest size < <(put_blob "$layer.tar.gz")
  layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$digest\",\"size\":$size}")
done
join() { local IFS=,; echo "$*"; }
printf '%s' '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":['"$(join "${diff_ids[@]}")"']}}' \
  > "$work/config.json"
read -r config_digest config_size < <(put_blob "$work/config.json")
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$config_size"'},"layers":['"$(join "${layers[@]}")"']}' \
  > "$work/manifest.json"
read -r manifest_digest manifest_size < <(put_blob "$work/manifest.json")
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$work/oci/oci-layout"
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest_digest"'","size":'"$manifest_size"',"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"'"$ref"'","org.opencontainers.image.ref.name":"'"${ref##*:}"'"}}]}' \
  > "$work/oci/index.json"
(cd "$work/oci" && tar --create --file "$work/image.tar" --sort=name --numeric-owner --owner=0 --group=0 .)
mkdir -p "$(dirname "$out")"
mv "$work/image.tar" "$out"
echo "$ref"
