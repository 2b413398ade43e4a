// Pure parts of the guest network setup (network.cc does the system calls).
#pragma once

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

// Renders /etc/resolv.conf from name servers and search domains (bounded, one line
// each; anything holding whitespace or control characters is rejected).
Result<std::string> RenderResolvConf(const std::vector<std::string>& servers,
                                     const std::vector<std::string>& search);

}  // namespace beaconbox::guest
