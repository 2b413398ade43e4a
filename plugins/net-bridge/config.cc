#include "plugins/net-bridge/config.h"

#include <arpa/inet.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>

#include "plugins/common/host_dirs.h"

namespace beaconbox::net {

Result<Ipv4> ParseIpv4(std::string_view text) {
  std::string copy(text);
  in_addr parsed{};
  if (inet_pton(AF_INET, copy.c_str(), &parsed) != 1) {
    return MakeError(ErrorCode::kInvalidArgument, "\"" + copy + "\" is not an IPv4 address");
  }
  return ntohl(parsed.s_addr);
}

std::string FormatIpv4(Ipv4 address) {
  in_addr raw{htonl(address)};
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &raw, text, sizeof(text));
  return text;
}

Ipv4 Subnet::Broadcast() const { return network | (0xffffffffu >> prefix_length); }

bool Subnet::Contains(Ipv4 address) const {
  uint32_t mask = prefix_length == 0 ? 0 : 0xffffffffu << (32 - prefix_length);
  return (address & mask) == network;
}

std::string Subnet::ToString() const {
  return FormatIpv4(network) + "/" + std::to_string(prefix_length);
}

Result<Subnet> ParseSubnet(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "subnet \"" + std::string(text) + "\" needs a prefix length, e.g. 10.88.0.0/16");
  }
  BBX_ASSIGN_OR_RETURN(Ipv4 network, ParseIpv4(text.substr(0, slash)));
  std::string prefix_text(text.substr(slash + 1));
  if (prefix_text.empty() || prefix_text.size() > 2 ||
      prefix_text.find_first_not_of("0123456789") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "subnet \"" + std::string(text) + "\": bad prefix length");
  }
  uint32_t prefix = static_cast<uint32_t>(std::stoul(prefix_text));
  if (prefix < 8 || prefix > 30) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "subnet \"" + std::string(text) + "\": prefix length must be 8..30");
  }
  Subnet subnet{network, prefix};
  if (subnet.Broadcast() - (0xffffffffu >> prefix) != network) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "subnet \"" + std::string(text) + "\" has host bits set: use " +
                         FormatIpv4(network & ~(0xffffffffu >> prefix)) + "/" + prefix_text);
  }
  return subnet;
}

uint32_t BridgeConfig::PoolSize() const {
  return (subnet.Broadcast() - subnet.network - 1) - 1;  // hosts minus the gateway
}

bool IsValidInterfaceName(std::string_view name) {
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  for (char c : name) {
    if (c == '/' || c == ':' || c <= ' ' || c == 0x7f) return false;
  }
  return true;
}

namespace {

bool IsValidNftName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return std::isalpha(static_cast<unsigned char>(name[0]));
}

Error ConfigError(std::string_view key, std::string_view what) {
  return MakeError(ErrorCode::kInvalidArgument,
                   "config key " + std::string(key) + ": " + std::string(what));
}

}  // namespace

Result<BridgeConfig> ParseBridgeConfig(std::string_view toml_text, const std::string& state_dir) {
  BridgeConfig config;
  toml::table table;
  try {
    table = toml::parse(toml_text);
  } catch (const toml::parse_error& parse_error) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "config: " + std::string(parse_error.description()));
  }
  for (const auto& [key, value] : table) {
    static const char* kKnown[] = {"bridge",
                                   "subnet",
                                   "gateway",
                                   "mtu",
                                   "dns_servers",
                                   "db_path",
                                   "reconcile_interval_seconds",
                                   "remove_rules_when_idle",
                                   "enable_ip_forward",
                                   "nft_filter_table",
                                   "nft_nat_table",
                                   "nft_bridge_table"};
    bool known = false;
    for (const char* name : kKnown) known = known || key.str() == name;
    if (!known) return ConfigError(key.str(), "unknown key (see plugins/net-bridge/README.md)");
  }
  auto string_key = [&](const char* key, std::string& out) -> Status {
    if (auto node = table[key]; node) {
      if (!node.is_string()) return ConfigError(key, "must be a string");
      out = *node.value<std::string>();
    }
    return Status::Ok();
  };
  std::string subnet_text = config.subnet.ToString();
  std::string gateway_text;
  BBX_RETURN_IF_ERROR(string_key("bridge", config.bridge));
  BBX_RETURN_IF_ERROR(string_key("subnet", subnet_text));
  BBX_RETURN_IF_ERROR(string_key("gateway", gateway_text));
  BBX_RETURN_IF_ERROR(string_key("db_path", config.db_path));
  BBX_RETURN_IF_ERROR(string_key("nft_filter_table", config.nft_filter_table));
  BBX_RETURN_IF_ERROR(string_key("nft_nat_table", config.nft_nat_table));
  BBX_RETURN_IF_ERROR(string_key("nft_bridge_table", config.nft_bridge_table));
  if (auto node = table["mtu"]; node) {
    if (!node.is_integer()) return ConfigError("mtu", "must be an integer");
    int64_t mtu = *node.value<int64_t>();
    if (mtu < 576 || mtu > 65535) return ConfigError("mtu", "must be 576..65535");
    config.mtu = static_cast<uint32_t>(mtu);
  }
  if (auto node = table["reconcile_interval_seconds"]; node) {
    if (!node.is_integer()) return ConfigError("reconcile_interval_seconds", "must be an integer");
    config.reconcile_interval_seconds = *node.value<int64_t>();
    if (config.reconcile_interval_seconds < 0 || config.reconcile_interval_seconds > 86400) {
      return ConfigError("reconcile_interval_seconds", "must be 0 (off) .. 86400");
    }
  }
  for (const char* key : {"remove_rules_when_idle", "enable_ip_forward"}) {
    if (auto node = table[key]; node) {
      if (!node.is_boolean()) return ConfigError(key, "must be true or false");
      (std::string_view(key) == "enable_ip_forward" ? config.enable_ip_forward
                                                    : config.remove_rules_when_idle) =
          *node.value<bool>();
    }
  }
  if (auto node = table["dns_servers"]; node) {
    const toml::array* servers = node.as_array();
    if (servers == nullptr) return ConfigError("dns_servers", "must be an array of strings");
    if (servers->size() > 8) return ConfigError("dns_servers", "at most 8 servers");
    for (const auto& server : *servers) {
      auto text = server.value<std::string>();
      if (!text) return ConfigError("dns_servers", "must be an array of strings");
      if (!ParseIpv4(*text).ok())
        return ConfigError("dns_servers", "\"" + *text + "\" is not an IPv4 address");
      config.dns_servers.push_back(*text);
    }
  }

  bool plain_name = std::all_of(config.bridge.begin(), config.bridge.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  if (!IsValidInterfaceName(config.bridge) || !plain_name || config.bridge.starts_with("beacon-")) {
    return ConfigError("bridge", "\"" + config.bridge +
                                     "\" is not a usable interface name (1-15 of "
                                     "A-Z a-z 0-9 - _ ., not starting with beacon-)");
  }
  auto subnet = ParseSubnet(subnet_text);
  if (!subnet.ok()) return ConfigError("subnet", subnet.error().message);
  config.subnet = *subnet;
  if (gateway_text.empty()) {
    config.gateway = config.subnet.network + 1;
  } else {
    auto gateway = ParseIpv4(gateway_text);
    if (!gateway.ok()) return ConfigError("gateway", gateway.error().message);
    config.gateway = *gateway;
  }
  if (!config.subnet.Contains(config.gateway) || config.gateway == config.subnet.network ||
      config.gateway == config.subnet.Broadcast()) {
    return ConfigError("gateway", FormatIpv4(config.gateway) + " is not a host address of " +
                                      config.subnet.ToString());
  }
  BBX_RETURN_IF_ERROR(
      plugins::DefaultPathUnder(config.db_path, "db_path", state_dir, "state", "network.db"));
  for (auto [key, name] : {std::pair{"nft_filter_table", &config.nft_filter_table},
                           std::pair{"nft_nat_table", &config.nft_nat_table},
                           std::pair{"nft_bridge_table", &config.nft_bridge_table}}) {
    if (!IsValidNftName(*name)) {
      return ConfigError(key, "\"" + *name + "\" must be letters, digits and _ (max 64)");
    }
  }
  if (config.nft_filter_table == config.nft_nat_table) {
    return ConfigError("nft_nat_table", "must differ from nft_filter_table");
  }
  return config;
}

}  // namespace beaconbox::net
