#!/usr/bin/env bash
# Extracts containerd 1.7 from Debian trixie's `containerd` package into a cache
# directory, for the end-to-end tests against a second containerd version. The
# system's apt setup is not changed: apt runs with its own sources list and state.
#   fetch-containerd.sh [CACHE_DIR]   prints the directory holding bin/containerd
set -euo pipefail
cache=${1:-${BEACONBOX_CACHE_DIR:-$HOME/.cache/beaconbox}/containerd-trixie}
if [ -x "$cache/usr/bin/containerd" ]; then
  echo "$cache/usr/bin"
  exit 0
fi
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-http://deb.debian.org/debian}
apt_dir=$(mktemp -d)
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir"/{lists/partial,archives/partial,etc}
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$apt_dir/etc/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/etc/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
          -o "Dir::Cache::archives=$apt_dir/archives" -o "Debug::NoLocking=1"
          -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" update -qq >/dev/null
(cd "$apt_dir/archives" && apt-get "${apt_opts[@]}" download containerd >/dev/null)
deb=$(ls "$apt_dir"/archives/containerd_*.deb)
mkdir -p "$cache.partial"
dpkg-deb -x "$deb" "$cache.partial"
rm -rf "$cache"
mv "$cache.partial" "$cache"
echo "$cache/usr/bin"
