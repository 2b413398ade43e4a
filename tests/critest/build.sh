#!/usr/bin/env bash
# Builds critest and crictl from a cri-tools checkout, offline, as cri-tools' Makefile
# does (`go test -c ./cmd/critest`, `go build ./cmd/crictl`, vendored modules), with
# Debian's Go 1.19. Neither Debian nor any registry reachable here has cri-tools, so
# the sources come from the caller:
#   CRI_TOOLS_SRC=DIR   a cri-tools checkout (v1.26.1: later tags need Go 1.20)
#   CRI_TOOLS_GIT=DIR   a (bare) git dir holding tag v1.26.1; it is checked out into
#                       OUT/src
#
#   build.sh OUT        writes OUT/bin/critest and OUT/bin/crictl
#   build.sh OUT --check  only checks that the sources are given (exit 0) or not (2)
# Without either variable it prints one line saying what to provide and exits 2.
set -euo pipefail

CRI_TOOLS_TAG=v1.26.1
out=${1:?usage: build.sh OUT}
mkdir -p "$out"
out=$(cd "$out" && pwd)
die() { echo "test-critest: $1" >&2; exit "${2:-1}"; }
clone_hint="git clone --branch $CRI_TOOLS_TAG https://github.com/kubernetes-sigs/cri-tools"

if [ -n "${CRI_TOOLS_SRC:-}" ]; then
  [ -f "$CRI_TOOLS_SRC/cmd/critest/cri_test.go" ] && [ -d "$CRI_TOOLS_SRC/vendor" ] ||
    die "CRI_TOOLS_SRC=$CRI_TOOLS_SRC is not a cri-tools checkout with vendor/ (get one: $clone_hint)" 2
  src=$(cd "$CRI_TOOLS_SRC" && pwd)
elif [ -n "${CRI_TOOLS_GIT:-}" ]; then
  git --git-dir="$CRI_TOOLS_GIT" rev-parse -q --verify "refs/tags/$CRI_TOOLS_TAG" > /dev/null 2>&1 ||
    die "CRI_TOOLS_GIT=$CRI_TOOLS_GIT is not a git dir with tag $CRI_TOOLS_TAG (get one: $clone_hint)" 2
  src="$out/src"
else
  die "needs cri-tools $CRI_TOOLS_TAG: run '$clone_hint' and pass CRI_TOOLS_SRC=<that dir> (or CRI_TOOLS_GIT=<a git dir with the tag>)" 2
fi

[ "${2:-}" = --check ] && exit 0
if [ -n "${CRI_TOOLS_GIT:-}" ] && [ -z "${CRI_TOOLS_SRC:-}" ]; then
  rm -rf "$src"
  mkdir -p "$src"
  git --git-dir="$CRI_TOOLS_GIT" archive "$CRI_TOOLS_TAG" | tar -x -C "$src"
fi

go=
for candidate in /usr/lib/go-1.19/bin/go "$(command -v go || true)"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] && { go=$candidate; break; }
done
[ -n "$go" ] || die "no Go compiler: apt-get install golang-1.19-go"
case $("$go" version) in
  *go1.19*) ;;
  *) echo "test-critest: $("$go" version): cri-tools $CRI_TOOLS_TAG is known to build with Go 1.19 (golang-1.19-go)" >&2 ;;
esac

version=${CRI_TOOLS_TAG#v}
ldflags="-X github.com/kubernetes-sigs/cri-tools/pkg/version.Version=$version"
mkdir -p "$out/bin" "$out/go/cache" "$out/go/path"
# Offline: vendored modules only, no proxy, no checksum database.
export GOFLAGS=-mod=vendor GOPROXY=off GOSUMDB=off GO111MODULE=on CGO_ENABLED=0 \
       GOCACHE="$out/go/cache" GOPATH="$out/go/path" GOTOOLCHAIN=local
cd "$src"
nice "$go" test -c -o "$out/bin/critest" -trimpath -ldflags "$ldflags" ./cmd/critest
nice "$go" build -o "$out/bin/crictl" -trimpath -ldflags "$ldflags" ./cmd/crictl
# All of its output is read (sed, not head): under pipefail, critest writing its
# second line into a closed pipe would fail the build with SIGPIPE (status 141).
"$out/bin/critest" -version | sed -n 1p >&2
