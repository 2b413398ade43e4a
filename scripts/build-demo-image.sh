#!/usr/bin/env bash
# Builds a small OCI image tarball from Debian's busybox-static, importable with
# `ctr image import` (no registry: the machine has no internet). Only tar, gzip and
# sha256sum are used. Reproducible: fixed mtimes and owners, sorted entries, gzip -n;
# the same busybox gives the same bytes.
#
#   build-demo-image.sh OUT.tar [NAME:TAG]    prints NAME:TAG on stdout
# With BBX_IMAGE_BARE=1 the rootfs holds /bin/busybox alone: no applet links, no
# directory a runtime mounts on (/proc, /dev, /sys, /etc ...), like Kubernetes' pause
# image, which holds only /pause. Its command is /bin/busybox sh; BBX_IMAGE_CMD (a JSON
# array) replaces the command, e.g. '["/bin/busybox","sleep","2147483647"]' for a stand-in
# of that pause image.
set -euo pipefail

die() { echo "build-demo-image.sh: $*" >&2; exit 1; }

out=${1:?usage: build-demo-image.sh OUT.tar [NAME:TAG]}
ref=${2:-docker.io/beaconbox/busybox:demo}
busybox=${BBX_BUSYBOX:-/bin/busybox}
case $ref in *:*) ;; *) die "image name '$ref' has no :TAG" ;; esac
[ -x "$busybox" ] || die "$busybox missing: run scripts/setup.sh (package busybox-static)"
if ! file -b "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  command -v file >/dev/null && die "$busybox is not statically linked: install busybox-static"
fi
for tool in tar gzip sha256sum; do command -v "$tool" >/dev/null || die "$tool not found"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/bbx-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
umask 022
root="$work/rootfs"
cmd='["/bin/sh"]'
if [ "${BBX_IMAGE_BARE:-}" = 1 ]; then
  mkdir -p "$root/bin"
  install -m 0755 "$busybox" "$root/bin/busybox"
  cmd='["/bin/busybox","sh"]'
else
  mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root,run,var}
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  install -m 0755 "$busybox" "$root/bin/busybox"
  # The applets the demo, the tests and the benchmarks call.
  applets=(sh ash echo cat ls uname true false sleep id hostname ip ifconfig route ping nc wget
           ps kill env printf test mount umount grep head tail wc date mkdir rm seq sync cut
           tr sed awk stat readlink nproc free dmesg)
  for applet in "${applets[@]}"; do
    ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  printf 'beaconbox-demo\n' > "$root/etc/hostname"
fi

# Deterministic tar of the current directory's contents to $1.
det_tar() {
  tar --create --file "$1" --sort=name --format=gnu --numeric-owner --owner=0 --group=0 \
      --mtime=@0 .
}

blobs="$work/oci/blobs/sha256"
mkdir -p "$blobs"
# put_blob FILE -> moves FILE into blobs/, prints "DIGEST SIZE"
put_blob() {
  local digest size
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$blobs/$digest"
  echo "$digest $size"
}

cmd=${BBX_IMAGE_CMD:-$cmd}

(cd "$root" && det_tar "$work/layer.tar")
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 < "$work/layer.tar" > "$work/layer.tar.gz"
read -r layer_digest layer_size < <(put_blob "$work/layer.tar.gz")

printf '%s' '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":'"$cmd"',"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},"history":[{"created_by":"scripts/build-demo-image.sh (busybox-static)"}]}' \
  > "$work/config.json"
read -r config_digest config_size < <(put_blob "$work/config.json")

printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'"$config_digest"'","size":'"$config_size"'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'"$layer_digest"'","size":'"$layer_size"'}]}' \
  > "$work/manifest.json"
read -r manifest_digest manifest_size < <(put_blob "$work/manifest.json")

# ctr names the image after io.containerd.image.name when present (1.6 and 1.7);
# org.opencontainers.image.ref.name carries the tag as the OCI layout spec says.
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$work/oci/oci-layout"
printf '%s' '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:'"$manifest_digest"'","size":'"$manifest_size"',"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"'"$ref"'","org.opencontainers.image.ref.name":"'"${ref##*:}"'"}}]}' \
  > "$work/oci/index.json"

(cd "$work/oci" && det_tar "$work/image.tar")
mkdir -p "$(dirname "$out")"
mv "$work/image.tar" "$out"
echo "$ref"
