// The directories the host gives a plugin (bbx_host_services: state_dir, run_dir),
// read as far as the host's struct has them, and config keys whose default path lies
// under one of them (net-bridge's db_path, net-cni's cache_dir and netns_dir).
#pragma once

#include <string>
#include <string_view>

#include "beaconbox/plugin_abi.h"
#include "common/base/result.h"

namespace beaconbox::plugins {

struct HostDirs {
  std::string state_dir;  // "" when the host gave none
  std::string run_dir;
};

HostDirs HostDirsOf(const bbx_host_services* host);

// Fills the path config key `key` when it is unset with `base` + "/" + `leaf`, and
// checks the result is absolute. `base_name` ("state", "run") names `base` in the
// one-line error ("config key K: no state directory given: set it").
Status DefaultPathUnder(std::string& value, std::string_view key, const std::string& base,
                        std::string_view base_name, std::string_view leaf);

}  // namespace beaconbox::plugins
