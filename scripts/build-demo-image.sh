#!/usr/bin/env bash
# Builds a small OCI image tarball from Debian's busybox-static, importable with
# `ctr image import` (no registry: the machine has no internet). Reproducible:
# fixed mtimes, sorted entries, gzip -n.
#   build-demo-image.sh OUT.tar [NAME:TAG]
set -euo pipefail

out=${1:?usage: build-demo-image.sh OUT.tar [NAME:TAG]}
ref=${2:-beaconbox.local/busybox:latest}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "build-demo-image.sh: $busybox missing: run scripts/setup.sh (busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root,run}
cp "$busybox" "$root/bin/busybox"
for applet in sh ash echo cat ls uname true false sleep id hostname ip ifconfig route nc wget \
              ps kill env printf test mount grep head tail wc date mkdir rm seq sync; do
  ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"

blobs="$work/oci/blobs/sha256"
mkdir -p "$blobs"
layer_tar="$work/layer.tar"
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | \
  tar --create --no-recursion --numeric-owner --owner=0 --group=0 --mtime=@0 \
      --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
      --file "$layer_tar" --files-from -)
diff_id=$(sha256sum "$layer_tar" | cut -d' ' -f1)
gzip -n -9 < "$layer_tar" > "$work/layer.tar.gz"
layer_digest=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$blobs/$layer_digest"

config='{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]}}'
printf '%s' "$config" > "$work/config.json"
config_digest=$(sha256sum "$work/config.json" | cut -d' ' -f1)
config_size=$(stat -c %s "$work/config.json")
mv "$work/config.json" "$blobs/$config_digest"

manifest='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$config_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"$layer_digest"'","size":'"$layer_size"'}]}'
printf '%s' "$manifest" > "$work/manifest.json"
manifest_digest=$(sha256sum "$work/manifest.json" | cut -d' ' -f1)
manifest_size=$(stat -c %s "$work/manifest.json")
mv "$work/manifest.json" "$blobs/$manifest_digest"

printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci/oci-layout"
printf '%s' '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest_digest"'","size":'"$manifest_size"',"annotations":{"io.containerd.image.name":"'"$ref"'","org.opencontainers.image.ref.name":"'"${ref##*:}"'"}}]}' > "$work/oci/index.json"

(cd "$work/oci" && find . -mindepth 1 | LC_ALL=C sort | \
  tar --create --no-recursion --numeric-owner --owner=0 --group=0 --mtime=@0 --format=posix \
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
      --file "$work/image.tar" --files-from -)
mv "$work/image.tar" "$out"
echo "$ref"
