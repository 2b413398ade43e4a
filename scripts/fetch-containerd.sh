#!/usr/bin/env bash
# Extracts a second containerd version from a Debian package into a cache directory,
# for running the end-to-end tests under more than bookworm's containerd 1.6:
#   1.7 (default): trixie's `containerd`;  2: sid's `containerd` (2.1 and later).
# The system's apt setup is not changed: apt-get runs with its own sources list,
# state and cache directories (same mirror as the system's bookworm sources).
#
#   fetch-containerd.sh [--version 1.7|2] [CACHE_DIR]
#
# CACHE_DIR defaults to $BEACONBOX_CONTAINERD_CACHE, else
# ${XDG_CACHE_HOME:-~/.cache}/beaconbox/containerd-<version>. Prints the directory that
# holds containerd, ctr and containerd-shim-runc-v2. Skips the download when a
# containerd of that version is already there. Exit 1 with one line on stderr on any
# failure.
set -euo pipefail

die() { echo "fetch-containerd.sh: $*" >&2; exit 1; }

want_major_minor=1.7
if [ "${1:-}" = --version ]; then
  want_major_minor=${2:?fetch-containerd.sh: --version wants 1.7 or 2}
  shift 2
fi
case $want_major_minor in
  1.7) suite=trixie ;;
  2) suite=sid ;;
  *) die "--version $want_major_minor: only 1.7 (Debian trixie) or 2 (Debian sid) can be fetched" ;;
esac
cache=${1:-${BEACONBOX_CONTAINERD_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/beaconbox/containerd-$want_major_minor}}

# "containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+b4" -> 1.7.24~ds1
version_of() { "$1" --version 2>/dev/null | awk '{print $3}'; }

if [ -x "$cache/usr/bin/containerd" ]; then
  have=$(version_of "$cache/usr/bin/containerd")
  case $have in
    "$want_major_minor".*) echo "$cache/usr/bin"; exit 0 ;;
    *) echo "fetch-containerd.sh: $cache holds containerd '$have', fetching again" >&2 ;;
  esac
fi

for tool in apt-get dpkg-deb; do
  command -v "$tool" >/dev/null || die "$tool not found: this script needs Debian's apt"
done

# The mirror the system already uses for Debian's main archive (deb822 .sources
# files or one-line sources.list entries); the security archive is skipped.
system_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f"
  done
}
mirror=$(system_mirror | grep -E '/debian/?$' | grep -v security | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "$keyring missing: install debian-archive-keyring"

apt_dir=$(mktemp -d "${TMPDIR:-/tmp}/bbx-apt.XXXXXX")
partial="$cache.partial.$$"
cleanup() { rm -rf "$apt_dir" "$partial"; }
trap cleanup EXIT
mkdir -p "$apt_dir"/{etc,state/lists/partial,cache/archives/partial,download}
: > "$apt_dir/state/status"
echo "deb [signed-by=$keyring] $mirror $suite main" > "$apt_dir/etc/sources.list"

# Every directory apt reads or writes is ours; nothing under /etc/apt or
# /var/lib/apt changes. Root's apt would drop to the _apt user for downloads,
# which cannot write into our private (0700) temp dir.
apt_opts=(
  -o "Dir::Etc::SourceList=$apt_dir/etc/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::Etc::Preferences=/dev/null"
  -o "Dir::Etc::PreferencesParts=/dev/null"
  -o "Dir::State=$apt_dir/state"
  -o "Dir::State::status=$apt_dir/state/status"
  -o "Dir::Cache=$apt_dir/cache"
  -o "APT::Sandbox::User=root"
  -o "Debug::NoLocking=true"
  -o "Acquire::Languages=none"
)
echo "fetch-containerd.sh: containerd from $mirror $suite into $cache" >&2
apt-get "${apt_opts[@]}" -qq update >"$apt_dir/update.log" 2>&1 ||
  die "apt-get update of $mirror $suite failed: $(tail -1 "$apt_dir/update.log")"
(cd "$apt_dir/download" && apt-get "${apt_opts[@]}" -qq download containerd) \
  >"$apt_dir/download.log" 2>&1 ||
  die "apt-get download containerd ($suite) failed: $(tail -1 "$apt_dir/download.log")"
deb=$(find "$apt_dir/download" -name 'containerd_*.deb' | head -1)
[ -n "$deb" ] || die "apt-get download left no containerd_*.deb"

mkdir -p "$partial"
dpkg-deb -x "$deb" "$partial"
[ -x "$partial/usr/bin/containerd" ] || die "$(basename "$deb") has no usr/bin/containerd"
have=$(version_of "$partial/usr/bin/containerd")
[ -n "$have" ] || die "$(basename "$deb"): containerd --version does not run on this machine ($("$partial/usr/bin/containerd" --version 2>&1 | head -1))"
case $have in
  "$want_major_minor".*) ;;
  *) die "$suite's containerd is $have, not $want_major_minor.x ($(basename "$deb"))" ;;
esac
rm -rf "$cache"
mkdir -p "$(dirname "$cache")"
mv "$partial" "$cache"
echo "fetch-containerd.sh: $("$cache/usr/bin/containerd" --version)" >&2
echo "$cache/usr/bin"
