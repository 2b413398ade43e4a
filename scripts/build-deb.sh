#!/usr/bin/env bash
# `make deb`: beaconbox's Debian packages with Debian's own tooling (debhelper,
# dpkg-buildpackage -b), built out of tree so that the checkout stays clean: the
# checkout's files (tracked and untracked, not ignored) are copied to
# _build/deb/beaconbox-<version>/ (a fixed path, so ccache hits across runs), the
# packages land in _build/deb/, lintian checks each, and they are copied to
# _output/deb/ (older ones removed).
#   scripts/build-deb.sh [OUTPUT_DIR]      (default <repo>/_output/deb)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/_output/deb}
for tool in dpkg-buildpackage dh dpkg-parsechangelog fakeroot; do
  command -v "$tool" > /dev/null || { echo "build-deb: $tool not found: run scripts/setup.sh (installs debhelper, dpkg-dev, fakeroot)" >&2; exit 1; }
done
version=$(cd "$repo" && dpkg-parsechangelog -SVersion)
top=$repo/_build/deb
src=$top/beaconbox-$version
rm -rf --one-file-system "$top"
mkdir -p "$src"
# The working tree as it is (uncommitted edits included), without build outputs.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r \
  sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) |
  tar -C "$repo" --null -T - -cf - | tar -C "$src" -xf -
# debhelper (compat 13) points HOME at a temp dir: keep ccache's own cache dir, and
# paths relative to the copy so that objects are shared between builds.
if command -v ccache > /dev/null; then
  CCACHE_DIR=$(ccache -k cache_dir 2>/dev/null || ccache --get-config cache_dir)
  export CCACHE_DIR CCACHE_BASEDIR=$src CCACHE_NOHASHDIR=true
fi
(cd "$src" && dpkg-buildpackage -b -us -uc -j"$(nproc)" > "$top/build.log" 2>&1) || {
  echo "build-deb: dpkg-buildpackage failed; the end of $top/build.log:" >&2
  tail -40 "$top/build.log" >&2
  exit 1
}
# lintian on every package: no error and no warning that is not overridden (each
# override in debian/<package>.lintian-overrides carries its reason). LINTIAN=0 skips.
if [ "${LINTIAN:-1}" != 0 ]; then
  command -v lintian > /dev/null || { echo "build-deb: lintian not found: run scripts/setup.sh" >&2; exit 1; }
  if ! lintian --fail-on error,warning --display-level '>=warning' "$top"/*.deb > "$top/lintian.log" 2>&1; then
    echo "build-deb: lintian found errors or warnings without an override:" >&2
    cat "$top/lintian.log" >&2
    exit 1
  fi
  echo "build-deb: lintian: no errors, no warnings left ($(grep -c . "$top/lintian.log" || true) lines of output)"
fi
mkdir -p "$out"
rm -f "$out"/*.deb
cp "$top"/*.deb "$out"/
echo "build-deb: $(cd "$out" && ls -1 ./*.deb | wc -l) packages in $out:"
(cd "$out" && for d in ./*.deb; do printf '  %-52s %s\n' "${d#./}" "$(dpkg-deb -f "$d" Version)"; done)
