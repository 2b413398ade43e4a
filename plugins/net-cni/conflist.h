// CNI network configuration lists (CNI spec, "Configuration format"): found by
// network name in a configuration directory, checked, and turned into each plugin's
// stdin for ADD, CHECK and DEL (name and cniVersion from the list, runtimeConfig for
// the capabilities a plugin declares, prevResult from the previous plugin).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::cni {

struct CniPluginConf {
  std::string type;                       // the binary's name in bin_dir
  nlohmann::json conf;                    // the plugin's object as written
  std::vector<std::string> capabilities;  // those set to true
};

struct CniConfList {
  std::string file;  // where it came from, for messages
  std::string name;
  std::string cni_version;
  bool disable_check = false;
  std::vector<CniPluginConf> plugins;
};

// Parses a .conflist (or a single-plugin .conf/.json, which becomes a list of one).
// Errors name `file`: "<file>: plugins[2] has no type".
Result<CniConfList> ParseConfList(std::string_view text, const std::string& file);

// The first file in `conf_dir` (*.conflist, *.conf, *.json, by name) whose network is
// `network_name`. kNotFound naming the directory and the network when there is none;
// a file that does not parse is skipped unless its name says it is the one asked for
// (<network_name>.conflist and the like), whose error is returned.
Result<CniConfList> LoadConfList(const std::string& conf_dir, const std::string& network_name);

// A port mapping as CNI's portMappings capability carries it.
struct PortMapping {
  int host_port = 0;
  int container_port = 0;
  std::string protocol = "tcp";
  std::string host_ip;
};

// The annotation holding port mappings, a JSON array of
// {"hostPort", "containerPort", "protocol", "hostIP"}.
inline constexpr const char* kPortMappingsAnnotation = "io.beaconbox.cni.port-mappings";
Result<std::vector<PortMapping>> ParsePortMappings(std::string_view text);

// The stdin of plugin `index` of `list`: its conf with the list's name and
// cniVersion, "runtimeConfig" holding what it declared among `runtime_config`'s
// members, and `prev_result` when not null.
std::string PluginStdin(const CniConfList& list, size_t index, const nlohmann::json& runtime_config,
                        const nlohmann::json& prev_result);

// runtime_config for `mappings` ({"portMappings": [...]}, or {} when none).
nlohmann::json RuntimeConfigFor(const std::vector<PortMapping>& mappings);

}  // namespace beaconbox::cni
