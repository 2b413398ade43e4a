// The net-bridge plugin's configuration and the IPv4/IPv6 arithmetic it rests on.
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

// Host-order IPv6 address as one 128-bit number (the arithmetic the pool needs).
__extension__ typedef unsigned __int128 Ipv6;

Result<Ipv6> ParseIpv6(std::string_view text);
std::string FormatIpv6(Ipv6 address);

struct Prefix6 {
  Ipv6 network = 0;
  uint32_t prefix_length = 0;

  Ipv6 Last() const;  // the highest address in the prefix
  bool Contains(Ipv6 address) const;
  bool Overlaps(const Prefix6& other) const;
  std::string ToString() const;  // "fd57:dba9:ddb6::/64"
};

// The lowest and highest address of the IPv6 lease range. The prefix's low block is
// kept for the host side (the gateway and any router the admin adds): <prefix>::0 ..
// ::ff when the prefix has 512 addresses or more (/119 or shorter), else ::0 and ::1;
// leases are the rest, up to the last address. <prefix>::0 (the subnet-router anycast)
// is never used. A configured gateway must lie in the low block, outside this range.
struct LeaseRange6 {
  Ipv6 first = 0, last = 0;
};
LeaseRange6 LeaseRangeOf(const Prefix6& prefix);

// "fd57:dba9:ddb6::/64"; host bits must be zero; prefix 64..126 (any /64 or longer
// that leaves room for a gateway and a lease); never link-local, multicast, loopback,
// IPv4-mapped or the unspecified range.
Result<Prefix6> ParsePrefix6(std::string_view text);

// The default IPv6 prefix: a ULA /64 (RFC 4193) whose 40-bit global ID is the low 40
// bits of FNV-1a-64("beaconbox"), subnet ID 0: fd57:dba9:ddb6::/64. Stable across
// hosts and versions, so a container's address does not change with an upgrade.
Prefix6 DefaultPrefix6();

struct BridgeConfig {
  std::string bridge = "beacon0";
  Subnet subnet{0x0a580000u, 16};  // 10.88.0.0/16
  Ipv4 gateway = 0x0a580001u;      // 10.88.0.1
  bool ipv4 = true;                // false: IPv6-only (no IPv4 address or rule)
  bool ipv6 = true;                // dual stack by default
  Prefix6 prefix6 = DefaultPrefix6();
  Ipv6 gateway6 = DefaultPrefix6().network + 1;
  bool ipv6_masquerade = false;  // IPv6 is routed; masquerade only when asked
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
  // The same for IPv6, saturated at 2^64 - 1 (a /64 holds more than any store).
  uint64_t PoolSize6() const;
};

// Parses the plugin's TOML table (keys documented in README.md) and checks every
// value; `state_dir` gives the default db_path. Touches nothing on the system.
Result<BridgeConfig> ParseBridgeConfig(std::string_view toml_text, const std::string& state_dir);

// A valid Linux interface name for us: 1..15 chars, no '/', ':' or whitespace.
bool IsValidInterfaceName(std::string_view name);

}  // namespace beaconbox::net
