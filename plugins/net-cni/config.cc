#include "plugins/net-cni/config.h"

#include <toml++/toml.h>

#include "plugins/common/host_dirs.h"
#include "plugins/net-cni/tap_redirect.h"

namespace beaconbox::cni {
namespace {

Error ConfigError(std::string_view key, std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument,
                   "config key " + std::string(key) + ": " + std::string(what));
}

}  // namespace

Result<CniConfig> ParseCniConfig(std::string_view toml_text, const std::string& state_dir,
                                 const std::string& run_dir) {
  CniConfig config;
  toml::table table;
  try {
    table = toml::parse(toml_text);
  } catch (const toml::parse_error& parse_error) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "config: " + std::string(parse_error.description()));
  }
  static const char* kKnown[] = {"conf_dir",  "bin_dir",         "network_name",
                                 "ifname",    "tap_name",        "cache_dir",
                                 "netns_dir", "timeout_seconds", "configured_netns"};
  for (const auto& [key, value] : table) {
    bool known = false;
    for (const char* name : kKnown) known = known || key.str() == name;
    if (!known) return ConfigError(key.str(), "unknown key (see plugins/net-cni/README.md)");
  }
  auto string_key = [&](const char* key, std::string& out) -> Status {
    if (auto node = table[key]; node) {
      if (!node.is_string()) return ConfigError(key, "must be a string");
      out = *node.value<std::string>();
    }
    return Status::Ok();
  };
  std::string bin_dir;
  BBX_RETURN_IF_ERROR(string_key("conf_dir", config.conf_dir));
  BBX_RETURN_IF_ERROR(string_key("bin_dir", bin_dir));
  BBX_RETURN_IF_ERROR(string_key("network_name", config.network_name));
  BBX_RETURN_IF_ERROR(string_key("ifname", config.ifname));
  BBX_RETURN_IF_ERROR(string_key("tap_name", config.tap_name));
  BBX_RETURN_IF_ERROR(string_key("cache_dir", config.cache_dir));
  BBX_RETURN_IF_ERROR(string_key("netns_dir", config.netns_dir));
  if (auto node = table["timeout_seconds"]; node) {
    if (!node.is_integer()) return ConfigError("timeout_seconds", "must be an integer");
    config.timeout_seconds = *node.value<int64_t>();
    if (config.timeout_seconds < 1 || config.timeout_seconds > 600) {
      return ConfigError("timeout_seconds", "must be 1..600");
    }
  }
  if (auto node = table["configured_netns"]; node) {
    if (!node.is_boolean()) return ConfigError("configured_netns", "must be true or false");
    config.configured_netns = *node.value<bool>();
  }
  if (!bin_dir.empty()) {
    config.bin_dirs.clear();
    size_t start = 0;
    while (start <= bin_dir.size()) {
      size_t colon = bin_dir.find(':', start);
      if (colon == std::string::npos) colon = bin_dir.size();
      std::string dir = bin_dir.substr(start, colon - start);
      if (!dir.empty()) {
        if (dir.front() != '/') {
          return ConfigError("bin_dir", "\"" + dir + "\" is not absolute (a : separated list)");
        }
        config.bin_dirs.push_back(dir);
      }
      start = colon + 1;
    }
    if (config.bin_dirs.empty()) return ConfigError("bin_dir", "names no directory");
  }
  if (config.conf_dir.empty() || config.conf_dir.front() != '/') {
    return ConfigError("conf_dir", "must be an absolute path");
  }
  if (config.network_name.empty()) return ConfigError("network_name", "must not be empty");
  for (auto [key, name] :
       {std::pair{"ifname", &config.ifname}, std::pair{"tap_name", &config.tap_name}}) {
    if (!IsValidInterfaceName(*name)) return ConfigError(key, "not an interface name");
  }
  if (config.ifname == config.tap_name) return ConfigError("tap_name", "must differ from ifname");
  BBX_RETURN_IF_ERROR(
      plugins::DefaultPathUnder(config.cache_dir, "cache_dir", state_dir, "state", "cni"));
  BBX_RETURN_IF_ERROR(
      plugins::DefaultPathUnder(config.netns_dir, "netns_dir", run_dir, "run", "netns"));
  return config;
}

}  // namespace beaconbox::cni
