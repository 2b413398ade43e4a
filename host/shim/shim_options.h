// What the shim's `start` action does with the options containerd hands it, as
// runc's shim does: the options (runc's, containerd.runc.v1.Options, the ones
// containerd passes for any runtime configured with them) come on stdin as a
// protobuf Any; `shim_cgroup` names the cgroup the serving shim joins. Then the
// serving shim's OOM score is containerd's + 1, so that the kernel's OOM killer
// takes a shim before containerd.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/base/result.h"

namespace beaconbox::shim {

struct ShimStartOptions {
  std::string shim_cgroup;  // "" = stay where containerd started the shim
  // The beaconbox config file this runtime entry names, "" = the default lookup
  // (BEACONBOX_CONFIG, /etc/beaconbox/config.toml): runtimeoptions.v1.Options'
  // config_path, what CRI makes of a runtime's `options` table (ConfigPath) for any
  // runtime_type but runc's, and what `ctr run --runtime-config-path` sends.
  std::string config_path;
};

// `any_bytes` as read from stdin: empty (no options), or a serialized Any: runc's
// options (shim cgroup) or runtimeoptions.v1.Options (config path, which must be
// absolute). Options of another type are ignored (they mean nothing to this shim).
Result<ShimStartOptions> ParseShimStartOptions(std::string_view any_bytes);

// Moves `pid` into the group `cgroup` (a path as in /proc/self/cgroup:
// "/system.slice/shim"): below `cgroup_root` with cgroup v2, else in every v1
// hierarchy mounted below it, as runc's shim. Refuses "..", relative paths and a
// group missing in any hierarchy.
Status JoinShimCgroup(pid_t pid, const std::string& cgroup,
                      const std::string& cgroup_root = "/sys/fs/cgroup");

// oom_score_adj of `pid` := that of `parent` + 1, at most 1000 (runc's shim).
Status AdjustShimOomScore(pid_t pid, pid_t parent, const std::string& proc_root = "/proc");

}  // namespace beaconbox::shim
