#!/usr/bin/env bash
# pass never fails, so `A && pass || fail` is if-then-else here.
# shellcheck disable=SC2015
# Registering with containerd (issue 12, item 3): `beaconbox-ctl containerd-config`
# asks the real containerd for its version and prints the runtime entry in the config
# version it reads; that containerd, with its CRI plugin on and the entry appended to
# its config, starts, loads CRI and shows the beaconbox runtime with its type and
# ConfigPath in the CRI config it logs. No VM is started.
#   containerd_config_e2e.sh OUTPUT_DIR [system|1.7|2]
# Exit 0: all passed; 1: a check failed; 77: containerd 1.7 or 2 cannot be extracted.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
output=${1:?usage: containerd_config_e2e.sh OUTPUT_DIR [system|1.7|2]}
export BBX_OUTPUT_DIR=$output BBX_CONTAINERD=${2:-system}
[ -x "$output/beaconbox-ctl" ] || { echo "FAIL: no $output/beaconbox-ctl (run make)" >&2; exit 1; }
if [ "$BBX_CONTAINERD" = 1.7 ] || [ "$BBX_CONTAINERD" = 2 ]; then
  wanted=$BBX_CONTAINERD
  if ! BBX_CONTAINERD=$("$repo/scripts/fetch-containerd.sh" --version "$wanted"); then
    echo "SKIP: containerd $wanted could not be extracted from Debian's package (see above)"
    exit 77
  fi
fi
# shellcheck source-path=SCRIPTDIR source=../../scripts/lib/containerd-env.sh
source "$repo/scripts/lib/containerd-env.sh"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$here/lib.sh"
bin=$(bbx_containerd_bin_dir)
version=$("$bin/containerd" --version | awk '{print $3}')
echo "containerd: $version"

work=$(mktemp -d /tmp/bbx-ctrd-config.XXXXXX)
trap 'rm -rf "$work"' EXIT
config_path=/etc/beaconbox/config.toml
snippet=$("$output/beaconbox-ctl" --config "$config_path" containerd-config --containerd "$bin/containerd")
printf '%s\n' "$snippet" > "$work/runtime.toml"
case $version in
  1.6.* | 1.7.*) want_table='[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.beaconbox]' want_version=2 ;;
  2.*) want_table='[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.beaconbox]' want_version=3 ;;
  *) echo "FAIL: containerd $version is neither 1.6, 1.7 nor 2.x" >&2; exit 1 ;;
esac
grep -qxF "$want_table" <<<"$snippet" && grep -q "(config version $want_version)" <<<"$snippet" &&
  pass "containerd-config prints the config version $want_version entry for containerd $version" ||
  fail "containerd-config for $version printed: $snippet"
grep -qx '  runtime_type = "io.containerd.beaconbox.v1"' <<<"$snippet" &&
  grep -qx "  ConfigPath = \"$config_path\"" <<<"$snippet" &&
  pass "runtime_type io.containerd.beaconbox.v1, options ConfigPath $config_path" ||
  fail "runtime_type or ConfigPath missing: $snippet"

# containerd reads it: CRI on, the printed entry appended to the private config after
# runc's, as in a config.toml written by `containerd config default` (the entry's
# comment says why runc's must be there).
{ printf '%s\n  runtime_type = "io.containerd.runc.v2"\n' "${want_table%beaconbox]}runc]"
  cat "$work/runtime.toml"; } > "$work/extra.toml"
export BBX_CONTAINERD_CRI=1 BBX_CONTAINERD_CONFIG_EXTRA=$work/extra.toml BBX_LOG_LEVEL=debug
bbx_env_start
trap 'status=$?; bbx_env_stop || true; rm -rf "$work"; exit $status' EXIT
plugins=$(bbx_ctr plugins ls 2>&1)
cri_state=$(awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" {print $NF}' <<<"$plugins")
[ "$cri_state" = ok ] &&
  pass "containerd loads its CRI plugin with the entry in its config" ||
  fail "CRI plugin state '$cri_state': $(grep -w cri <<<"$plugins" | tr -s ' ')"
# CRI logs the config it runs with: the runtime is there. 1.6/1.7 print Go's %+v of
# their struct (beaconbox:{Type:... Options:map[ConfigPath:...]}), 2.x JSON
# ("beaconbox":{"runtimeType":"...",...,"options":{"ConfigPath":"..."}), quoted in
# the log line.
entry=$(grep -oE 'beaconbox(:|\\":)\{.*' "$BBX_DIR/containerd.log" | head -1 | cut -c1-2000 | tr -d '\\' || true)
logged=${entry%%\}*}
if grep -qE 'Type(:|":")io\.containerd\.beaconbox\.v1' <<<"$logged" &&
   grep -qE "ConfigPath(:|\":\")$config_path" <<<"$entry"; then
  pass "CRI's runtime beaconbox: type io.containerd.beaconbox.v1, options ConfigPath $config_path"
else
  fail "CRI does not show the beaconbox runtime: '${logged:0:400}'; $(grep -m3 -iE 'level=(error|fatal)' "$BBX_DIR/containerd.log" | cut -c1-300)"
fi
grep -iE 'level=(error|fatal).*(beaconbox|runtime|toml|decode)' "$BBX_DIR/containerd.log" | head -3 |
  sed 's/^/  containerd: /' | grep . && fail "containerd logged errors about the entry"
if [ "$failures" -ne 0 ]; then
  echo "$failures check(s) failed; containerd's config and log:" >&2
  cat "$BBX_DIR/containerd.toml" >&2
  tail -40 "$BBX_DIR/containerd.log" >&2
  exit 1
fi
echo "containerd-config: containerd $version accepts the printed entry"
