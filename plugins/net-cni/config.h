// The net-cni plugin's configuration (keys documented in README.md).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::cni {

struct CniConfig {
  std::string conf_dir = "/etc/cni/net.d";
  // Where plugin binaries are looked up, in order (also the plugins' CNI_PATH).
  std::vector<std::string> bin_dirs = {"/opt/cni/bin", "/usr/lib/cni", "/usr/lib/beaconbox/cni"};
  std::string network_name = "beacon-net";
  std::string ifname = "eth0";
  std::string tap_name = "tap0";  // the TAP the plugin makes without tc-redirect-tap
  std::string cache_dir;          // empty: <state_dir>/cni
  std::string netns_dir;          // empty: <run_dir>/netns
  int64_t timeout_seconds = 60;   // per plugin invocation
  // The container's network namespace (the spec's, e.g. CRI's pod netns) was
  // configured by CNI already: no list runs, the VM takes `ifname` as it is there.
  bool configured_netns = false;
};

// Parses the plugin's TOML table; `state_dir` and `run_dir` give the defaults.
Result<CniConfig> ParseCniConfig(std::string_view toml_text, const std::string& state_dir,
                                 const std::string& run_dir);

}  // namespace beaconbox::cni
