// A TAP coupled to a CNI interface with tc, in the network namespace of the calling
// thread: every frame arriving on one is sent out of the other (an ingress qdisc on
// each, a u32 filter matching all with a mirred egress redirect), so a VM on the TAP is on the
// CNI network with the interface's MAC and addresses. firecracker-go-sdk's
// tc-redirect-tap does the same; beaconbox's binary (tc_redirect_tap_main.cc) and the
// net-cni plugin (for a conflist without that plugin) both use this. Through
// rtnetlink (libnl-3) and /dev/net/tun.
#pragma once

#include <cstdint>
#include <string>

#include "common/base/result.h"

namespace beaconbox::cni {

struct LinkFacts {
  int ifindex = 0;
  std::string mac;  // "aa:bb:cc:dd:ee:ff"
  uint32_t mtu = 0;
};

// The device `name` in the calling thread's namespace; kNotFound when missing.
Result<LinkFacts> LinkFactsOf(const std::string& name);

// Creates the persistent TAP `tap_name` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, the
// MTU of `peer`, up; an existing TAP of that name is reused) and redirects both ways
// between it and `peer`. Running it again replaces the redirect. Returns the TAP's
// facts. On failure the TAP it made is removed.
Result<LinkFacts> CreateRedirectedTap(const std::string& peer, const std::string& tap_name);

// Deletes the TAP (its filters go with it) and the ingress qdisc of `peer` (when
// `peer` still exists). Missing devices are fine.
Status DeleteRedirectedTap(const std::string& peer, const std::string& tap_name);

// A usable interface name: 1..15 characters, no '/', ':' or whitespace.
bool IsValidInterfaceName(const std::string& name);

}  // namespace beaconbox::cni
