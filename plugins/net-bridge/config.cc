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

Result<Ipv6> ParseIpv6(std::string_view text) {
  std::string copy(text);
  in6_addr parsed{};
  if (copy.size() > INET6_ADDRSTRLEN || inet_pton(AF_INET6, copy.c_str(), &parsed) != 1) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "\"" + copy.substr(0, 64) + "\" is not an IPv6 address");
  }
  Ipv6 address = 0;
  for (uint8_t byte : parsed.s6_addr) address = (address << 8) | byte;
  return address;
}

std::string FormatIpv6(Ipv6 address) {
  in6_addr raw{};
  for (int i = 15; i >= 0; --i) {
    raw.s6_addr[i] = uint8_t(address);
    address >>= 8;
  }
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, &raw, text, sizeof(text));
  return text;
}

namespace {
Ipv6 HostMask6(uint32_t prefix_length) {
  return prefix_length >= 128 ? Ipv6(0) : (~Ipv6(0)) >> prefix_length;
}
}  // namespace

Ipv6 Prefix6::Last() const { return network | HostMask6(prefix_length); }

bool Prefix6::Contains(Ipv6 address) const {
  return (address & ~HostMask6(prefix_length)) == network;
}

bool Prefix6::Overlaps(const Prefix6& other) const {
  return Contains(other.network) || other.Contains(network);
}

std::string Prefix6::ToString() const {
  return FormatIpv6(network) + "/" + std::to_string(prefix_length);
}

LeaseRange6 LeaseRangeOf(const Prefix6& prefix) {
  Ipv6 reserved = prefix.prefix_length <= 119 ? 0x100 : 2;
  return LeaseRange6{prefix.network + reserved, prefix.Last()};
}

Prefix6 DefaultPrefix6() {
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (unsigned char c : std::string_view("beaconbox")) hash = (hash ^ c) * 0x100000001b3ull;
  Ipv6 global_id = hash & ((uint64_t(1) << 40) - 1);
  return Prefix6{(Ipv6(0xfd) << 120) | (global_id << 80), 64};
}

Result<Prefix6> ParsePrefix6(std::string_view text) {
  const std::string quoted = "\"" + std::string(text.substr(0, 64)) + "\"";
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     quoted + " needs a prefix length, e.g. fd57:dba9:ddb6::/64");
  }
  auto network = ParseIpv6(text.substr(0, slash));
  if (!network.ok()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     quoted + " is not an IPv6 prefix (like fd57:dba9:ddb6::/64)");
  }
  std::string prefix_text(text.substr(slash + 1));
  if (prefix_text.empty() || prefix_text.size() > 3 ||
      prefix_text.find_first_not_of("0123456789") != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument, quoted + ": bad prefix length");
  }
  uint32_t length = static_cast<uint32_t>(std::stoul(prefix_text));
  if (length < 64 || length > 126) {
    return MakeError(ErrorCode::kInvalidArgument,
                     quoted + ": prefix length must be 64..126 (a /64 or longer)");
  }
  Prefix6 prefix{*network & ~HostMask6(length), length};
  if (prefix.network != *network) {
    return MakeError(
        ErrorCode::kInvalidArgument,
        quoted + " has host bits set: use " + FormatIpv6(prefix.network) + "/" + prefix_text);
  }
  struct Reserved {
    Prefix6 range;
    const char* what;
  };
  const Reserved reserved[] = {
      {{Ipv6(0), 8}, "the reserved ::/8 (unspecified, loopback, IPv4-mapped)"},
      {{Ipv6(0xfe80) << 112, 10}, "link-local fe80::/10"},
      {{Ipv6(0xff) << 120, 8}, "multicast ff00::/8"},
  };
  for (const Reserved& range : reserved) {
    if (range.range.Contains(prefix.network)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       quoted + " is in " + range.what + ": use a ULA (fd00::/8) or global prefix");
    }
  }
  return prefix;
}

uint64_t BridgeConfig::PoolSize6() const {
  LeaseRange6 range = LeaseRangeOf(prefix6);
  Ipv6 size = range.last - range.first + 1;
  return size > Ipv6(UINT64_MAX) ? UINT64_MAX : uint64_t(size);
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
                                   "nft_bridge_table",
                                   "ipv4",
                                   "ipv6",
                                   "ipv6_prefix",
                                   "ipv6_gateway",
                                   "ipv6_dns_servers",
                                   "ipv6_masquerade"};
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
  for (auto [key, out] :
       {std::pair{"remove_rules_when_idle", &config.remove_rules_when_idle},
        std::pair{"enable_ip_forward", &config.enable_ip_forward}, std::pair{"ipv4", &config.ipv4},
        std::pair{"ipv6", &config.ipv6}, std::pair{"ipv6_masquerade", &config.ipv6_masquerade}}) {
    if (auto node = table[key]; node) {
      if (!node.is_boolean()) return ConfigError(key, "must be true or false");
      *out = *node.value<bool>();
    }
  }
  if (!config.ipv4 && !config.ipv6) {
    return ConfigError("ipv4", "ipv4 and ipv6 are both false: a container needs one of them");
  }
  // dns_servers: either family; ipv6_dns_servers: IPv6 only (both go to resolv.conf).
  for (const char* key : {"dns_servers", "ipv6_dns_servers"}) {
    bool v6_only = std::string_view(key) == "ipv6_dns_servers";
    auto node = table[key];
    if (!node) continue;
    const toml::array* servers = node.as_array();
    if (servers == nullptr) return ConfigError(key, "must be an array of strings");
    if (config.dns_servers.size() + servers->size() > 8)
      return ConfigError(key, "at most 8 servers in dns_servers and ipv6_dns_servers");
    for (const auto& server : *servers) {
      auto text = server.value<std::string>();
      if (!text) return ConfigError(key, "must be an array of strings");
      bool v4 = ParseIpv4(*text).ok(), v6 = ParseIpv6(*text).ok();
      if (v6_only ? !v6 : !(v4 || v6))
        return ConfigError(key, "\"" + text->substr(0, 64) + "\" is not an " +
                                    (v6_only ? "IPv6" : "IP") + " address");
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
  std::string prefix6_text, gateway6_text;
  BBX_RETURN_IF_ERROR(string_key("ipv6_prefix", prefix6_text));
  BBX_RETURN_IF_ERROR(string_key("ipv6_gateway", gateway6_text));
  if (!prefix6_text.empty()) {
    auto prefix = ParsePrefix6(prefix6_text);
    if (!prefix.ok()) return ConfigError("ipv6_prefix", prefix.error().message);
    config.prefix6 = *prefix;
  }
  config.gateway6 = config.prefix6.network + 1;
  if (!gateway6_text.empty()) {
    auto gateway = ParseIpv6(gateway6_text);
    if (!gateway.ok()) return ConfigError("ipv6_gateway", gateway.error().message);
    config.gateway6 = *gateway;
  }
  const LeaseRange6 range6 = LeaseRangeOf(config.prefix6);
  if (!config.prefix6.Contains(config.gateway6) || config.gateway6 == config.prefix6.network) {
    return ConfigError("ipv6_gateway", FormatIpv6(config.gateway6) + " is not a host address of " +
                                           config.prefix6.ToString());
  }
  if (config.gateway6 >= range6.first) {
    return ConfigError("ipv6_gateway", FormatIpv6(config.gateway6) + " is inside the lease range " +
                                           FormatIpv6(range6.first) + " - " +
                                           FormatIpv6(range6.last) + ": use an address below " +
                                           FormatIpv6(range6.first) + " (default " +
                                           FormatIpv6(config.prefix6.network + 1) + ")");
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
