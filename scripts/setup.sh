#!/usr/bin/env bash
# Installs every build and runtime dependency of beaconbox from Debian's archive.
# Idempotent: packages already present are skipped, so a second run is quick.
#   setup.sh            what make test needs
#   setup.sh --critest  also what make test-critest needs (Debian's Go 1.19 for
#                       cri-tools v1.26.1, docker-registry for its images)
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake pkg-config clang-format ccache
  # make fuzz: clang and its libFuzzer + sanitizer runtimes
  clang libclang-rt-14-dev
  # libraries the host, plugins and guest build against
  libboost-dev libboost-filesystem-dev libprotobuf-dev protobuf-compiler
  libnl-3-dev libnl-route-3-dev libnftables-dev liblmdb-dev libssl-dev libspdlog-dev
  libfmt-dev libtomlplusplus-dev libgtest-dev libgmock-dev nlohmann-json3-dev zlib1g-dev
  # runtime: containerd and the guest's parts
  containerd crun qemu-system-x86 qemu-utils erofs-utils containernetworking-plugins
  busybox-static linux-image-cloud-amd64 cpio kmod zstd
  # make deb and make test-packages: Debian's packaging tools
  debhelper dpkg-dev fakeroot lintian
  # network tooling used by the plugins' tests; iptables for CNI's portmap (hostPort in
  # e2e_cri)
  iproute2 nftables iptables
  # reference sources: containerd's .proto files and the Go ttrpc used for interop
  golang-go golang-github-containerd-containerd-dev golang-github-containerd-ttrpc-dev
  golang-github-gogo-protobuf-dev golang-google-protobuf-dev
  # bbx-cri, the CRI test client of tests/e2e/cri_client: gRPC for C++
  libgrpc++-dev protobuf-compiler-grpc
)

critest=
case ${1:-} in
  "") ;;
  --critest) critest=1; packages+=(golang-1.19-go docker-registry python3) ;;
  *) echo "setup.sh: unknown option '$1' (only --critest)" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
# docker-registry's package would serve the machine's port 5000 where an init system
# runs its service; make test-critest starts its own in a network namespace only.
if [ -n "$critest" ] && [[ " ${missing[*]} " == *" docker-registry "* ]]; then
  if [ -d /run/systemd/system ]; then
    "${sudo_cmd[@]}" systemctl disable --now docker-registry.service || true
  elif [ -x /etc/init.d/docker-registry ]; then
    "${sudo_cmd[@]}" /etc/init.d/docker-registry stop || true
  fi
fi
