#!/usr/bin/env bash
# Builds task_client (containerd's Go client, for the Task API calls ctr cannot make)
# offline from Debian's Go sources under /usr/share/gocode (GOPATH mode, no module
# downloads), into a cache directory: the first build takes minutes, later ones reuse
# Go's build cache. Prints the binary's path.
#   build.sh [CACHE_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)/task_client.go
cache=${1:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/beaconbox/task_client}
command -v go >/dev/null || { echo "build.sh: no go binary: install golang-go (scripts/setup.sh)" >&2; exit 1; }
[ -d /usr/share/gocode/src/github.com/containerd/containerd ] ||
  { echo "build.sh: no containerd Go sources: install golang-github-containerd-containerd-dev" >&2; exit 1; }
mkdir -p "$cache/gopath/src/task_client"
if ! cmp -s "$src" "$cache/gopath/src/task_client/task_client.go" || [ ! -x "$cache/task_client" ]; then
  cp "$src" "$cache/gopath/src/task_client/task_client.go"
  (cd "$cache/gopath/src/task_client" &&
   GOPATH="$cache/gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOPROXY=off \
     GOCACHE="$cache/gocache" go build -o "$cache/task_client.new" . >&2)
  mv "$cache/task_client.new" "$cache/task_client"
fi
echo "$cache/task_client"
