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
  std::string address;  // IPv4 dotted, or IPv6 ("fd00::5")
  unsigned prefix_length = 0;
};

struct InterfaceRoute {
  std::string destination;  // CIDR; "0.0.0.0/0" and "::/0" for the default routes
  std::string gateway;      // "" for a route on the link
};

struct InterfaceConfig {
  std::string mac;  // "aa:bb:cc:dd:ee:ff"
  uint32_t mtu = 0;
  // IPv4 addresses, then global IPv6 ones (link-local ones are the guest kernel's
  // own to make, and a duplicate one is left out), each in the kernel's order.
  std::vector<InterfaceAddress> addresses;
  // The main table's unicast routes out of the interface, IPv4 then IPv6, those on
  // the link first (a gateway must be reachable before a route through it is
  // added, whatever the family); the routes the kernel derives from an address are left out (the
  // guest's kernel makes them from the same address), and so are IPv6 routes learnt from router
  // advertisements (the guest does not take them: it is configured statically).
  std::vector<InterfaceRoute> routes;
};

// `ifname`'s MAC, MTU, IPv4 and global IPv6 addresses and routes. kNotFound when
// there is no such device; kFailedPrecondition when it has no MAC or neither an IPv4
// nor a global IPv6 address.
Result<InterfaceConfig> ReadInterfaceConfig(const std::string& ifname);

}  // namespace beaconbox::cni
