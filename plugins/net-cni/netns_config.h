// What CNI left on the pod's interface, read back from the kernel: with
// `configured_netns = true` (CRI has run CNI in the pod's network namespace already),
// net-cni runs no list and gives the guest the interface as it is. Through rtnetlink
// (libnl-3), in the calling thread's network namespace (plugins::RunInNetns).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace beaconbox::cni {

struct InterfaceAddress {
  std::string address;  // IPv4, dotted
  unsigned prefix_length = 0;
};

struct InterfaceRoute {
  std::string destination;  // IPv4 CIDR, "0.0.0.0/0" for the default route
  std::string gateway;      // "" for a route on the link
};

struct InterfaceConfig {
  std::string mac;  // "aa:bb:cc:dd:ee:ff"
  uint32_t mtu = 0;
  std::vector<InterfaceAddress> addresses;  // IPv4 only, in the kernel's order
  // The main table's IPv4 unicast routes out of the interface, those on the link
  // first (a gateway must be reachable before a route through it is added); the
  // routes the kernel derives from an address are left out (the guest's kernel
  // makes them from the same address).
  std::vector<InterfaceRoute> routes;
};

// `ifname`'s MAC, MTU, IPv4 addresses and routes. kNotFound when there is no such
// device; kFailedPrecondition when it has no MAC or no IPv4 address (an IPv6-only
// interface: the guest gets IPv4 only).
Result<InterfaceConfig> ReadInterfaceConfig(const std::string& ifname);

}  // namespace beaconbox::cni
