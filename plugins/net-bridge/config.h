// The net-bridge plugin's configuration and the IPv4 arithmetic it rests on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::net {

// Host byte order IPv4 address.
using Ipv4 = uint32_t;

Result<Ipv4> ParseIpv4(std::string_view text);
std::string FormatIpv4(Ipv4 address);

struct Subnet {
  Ipv4 network = 0;
  uint32_t prefix_length = 0;

  Ipv4 Broadcast() const;
  bool Contains(Ipv4 address) const;
  std::string ToString() const;  // "10.88.0.0/16"
};

// "10.88.0.0/16"; host bits must be zero; prefix 8..30 (a pool needs room).
Result<Subnet> ParseSubnet(std::string_view text);

struct BridgeConfig {
  std::string bridge = "beacon0";
  Subnet subnet{0x0a580000u, 16};  // 10.88.0.0/16
  Ipv4 gateway = 0x0a580001u;      // 10.88.0.1
  uint32_t mtu = 1500;
  std::vector<std::string> dns_servers;
  std::string db_path;  // empty: <state_dir>/network.db
  int64_t reconcile_interval_seconds = 60;
  bool remove_rules_when_idle = false;
  bool enable_ip_forward = true;
  std::string nft_filter_table = "beacon_runner_filter";
  std::string nft_nat_table = "beacon_runner_nat";
  std::string nft_bridge_table = "beacon_runner_bridge";  // family bridge: anti-spoofing

  // Addresses a container can get: the subnet minus network, broadcast and gateway.
  uint32_t PoolSize() const;
};

// Parses the plugin's TOML table (keys documented in README.md) and checks every
// value; `state_dir` gives the default db_path. Touches nothing on the system.
Result<BridgeConfig> ParseBridgeConfig(std::string_view toml_text, const std::string& state_dir);

// A valid Linux interface name for us: 1..15 chars, no '/', ':' or whitespace.
bool IsValidInterfaceName(std::string_view name);

}  // namespace beaconbox::net
