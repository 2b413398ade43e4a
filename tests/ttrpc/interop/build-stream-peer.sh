#!/usr/bin/env bash
# Builds ttrpc_stream_peer against containerd's Go ttrpc 1.2, which bookworm lacks:
# trixie's golang-github-containerd-ttrpc-dev is downloaded from the Debian
# archive with a private apt setup (the system's apt is not touched) and
# extracted into a cache directory; the rest of its imports come from bookworm's
# Go packages under /usr/share/gocode. Offline once cached.
#
#   build-stream-peer.sh OUTPUT SOURCE WORK_DIR
#
# When the package cannot be had, writes the reason to OUTPUT.skip and exits 0, so
# that the build goes on and the test reports itself skipped with that reason.
set -euo pipefail

out=$1 src=$2 work=$3
cache=${BEACONBOX_TTRPC12_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/beaconbox/ttrpc-1.2}
gocode="$cache/usr/share/gocode"
rm -f "$out.skip"

skip() {
  echo "build-stream-peer.sh: $*" >&2
  echo "$*" > "$out.skip"
  exit 0
}

if [ ! -f "$gocode/src/github.com/containerd/ttrpc/stream.go" ]; then
  apt_dir=$(mktemp -d "${TMPDIR:-/tmp}/bbx-ttrpc-apt.XXXXXX")
  trap 'rm -rf "$apt_dir"' EXIT
  mkdir -p "$apt_dir"/{state/lists/partial,cache/archives/partial,download}
  : > "$apt_dir/state/status"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  # The mirror the system uses for Debian's main archive, else deb.debian.org.
  mirror=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
           grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -1 | tr -d ' ' || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "deb [signed-by=$keyring] ${mirror%/} trixie main" > "$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=/dev/null"
            -o "Dir::State=$apt_dir/state" -o "Dir::State::status=$apt_dir/state/status"
            -o "Dir::Cache=$apt_dir/cache" -o "APT::Sandbox::User=root"
            -o "Debug::NoLocking=true" -o "Acquire::Languages=none")
  apt-get "${apt_opts[@]}" -qq update >"$apt_dir/log" 2>&1 ||
    skip "apt-get update of $mirror trixie failed ($(tail -1 "$apt_dir/log")); Go ttrpc 1.2 unavailable"
  (cd "$apt_dir/download" && apt-get "${apt_opts[@]}" -qq download golang-github-containerd-ttrpc-dev) \
    >"$apt_dir/log" 2>&1 ||
    skip "apt-get download golang-github-containerd-ttrpc-dev (trixie) failed: $(tail -1 "$apt_dir/log")"
  rm -rf "$cache.partial"
  mkdir -p "$cache.partial"
  dpkg-deb -x "$apt_dir"/download/golang-github-containerd-ttrpc-dev_*.deb "$cache.partial"
  [ -f "$cache.partial/usr/share/gocode/src/github.com/containerd/ttrpc/stream.go" ] ||
    skip "trixie's golang-github-containerd-ttrpc-dev has no stream support (no stream.go)"
  rm -rf "$cache"
  mv "$cache.partial" "$cache"
fi

mkdir -p "$work/gopath/src/ttrpc_stream_peer"
cp "$src" "$work/gopath/src/ttrpc_stream_peer/"
cd "$work/gopath/src/ttrpc_stream_peer"
GOPATH="$work/gopath:$gocode:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOPROXY=off \
  GOCACHE="$work/gocache" go build -o "$out" .
