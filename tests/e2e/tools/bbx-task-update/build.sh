#!/usr/bin/env bash
# Builds bbx-task-update (main.go) once per source version, offline, in GOPATH mode
# against Debian's golang-github-containerd-containerd-dev (/usr/share/gocode), and
# prints the binary's path. The binary is cached under ${XDG_CACHE_HOME:-~/.cache}.
#   build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "bbx-task-update/build.sh: $*" >&2; exit 1; }
command -v go >/dev/null || die "go not found: install golang-go and golang-github-containerd-containerd-dev"
[ -d /usr/share/gocode/src/github.com/containerd/containerd ] ||
  die "/usr/share/gocode lacks containerd's sources: install golang-github-containerd-containerd-dev"
cache=${XDG_CACHE_HOME:-$HOME/.cache}/beaconbox/bbx-task-update
sum=$(sha256sum "$here/main.go" | cut -c1-16)
bin="$cache/bbx-task-update-$sum"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache/gopath/src/bbx-task-update"
  cp "$here/main.go" "$cache/gopath/src/bbx-task-update/main.go"
  (cd "$cache/gopath/src/bbx-task-update" &&
   GO111MODULE=off GOPATH="$cache/gopath:/usr/share/gocode" GOFLAGS= go build -o "$bin.tmp" .) >&2 ||
    die "go build failed"
  mv -f "$bin.tmp" "$bin"
fi
echo "$bin"
