// Pure parts of the guest network setup (network.cc does the system calls).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::guest {

struct Cidr4 {
  uint32_t address = 0;  // network byte order
  uint32_t netmask = 0;  // network byte order
  unsigned prefix = 0;
};

// Parses "10.88.0.2/16" (IPv4 only; the prefix is required).
Result<Cidr4> ParseCidr4(std::string_view text);

struct Cidr6 {
  uint8_t address[16] = {};  // network byte order
  unsigned prefix = 0;
};

// True when `text` is meant as IPv6 (holds a ':'); the parsers decide if it is valid.
inline bool LooksIpv6(std::string_view text) { return text.find(':') != std::string_view::npos; }

// Parses "fd57:dba9:ddb6::100/64" (the prefix is required, 0..128). Link-local,
// multicast, loopback, unspecified and IPv4-mapped addresses are refused when
// `host_address` (an address for the NIC, not a route destination).
Result<Cidr6> ParseCidr6(std::string_view text, bool host_address);

// Parses a NIC's MAC "02:ab:cd:ef:01:23" (hex, either case): a unicast address, not
// all zeros (the host names the NIC's own address with it).
Result<std::array<uint8_t, 6>> ParseMac(std::string_view text);

// Renders /etc/resolv.conf from name servers and search domains (bounded, one line
// each; anything holding whitespace or control characters is rejected).
Result<std::string> RenderResolvConf(const std::vector<std::string>& servers,
                                     const std::vector<std::string>& search);

}  // namespace beaconbox::guest
