# shellcheck shell=bash
# What every e2e script uses to report checks and look at what is left, sourced after
# scripts/lib/containerd-env.sh. A script ends with `[ "$failures" -eq 0 ]` (or its
# own summary) so that one failed check fails the test while the others still run.
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
in_netns() { ip netns exec "$BBX_NETNS" "$@"; }
# The executable's name of PID, or "" once it is gone.
exe_of() { basename "$(readlink "/proc/$1/exe" 2>/dev/null)" 2>/dev/null || true; }
# This environment's processes but containerd. A process may vanish while /proc is
# read (cat fails under pipefail): never fatal.
others() { { bbx_env_pids || true; } | { grep -vx "$BBX_CONTAINERD_PID" || true; }; }
