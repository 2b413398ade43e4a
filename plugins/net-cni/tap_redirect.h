// A TAP coupled to a CNI interface with tc, in the network namespace of the calling
// thread: every frame arriving on one is sent out of the other (an ingress qdisc on
// each, a u32 filter matching all with a mirred egress redirect), so a VM on the TAP is on the
// CNI network with the interface's MAC and addresses. firecracker-go-sdk's
// tc-redirect-tap does the same; beaconbox's binary (tc_redirect_tap_main.cc) and the
// net-cni plugin (for a conflist without that plugin) both use this. Through
// rtnetlink (libnl-3) and /dev/net/tun.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
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

// Who may open a TAP without CAP_NET_ADMIN (TUNSETOWNER / TUNSETGROUP).
struct TapOwner {
  uid_t uid = 0;
  gid_t gid = 0;
  bool operator==(const TapOwner&) const = default;
};

// The calling process's effective uid and gid: the owner of a TAP nobody asked for
// (as firecracker-go-sdk's tc-redirect-tap does).
TapOwner ProcessTapOwner();

// Creates the persistent TAP `tap_name` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, owned by
// `owner`, the MTU of `peer`, up; an existing TAP of that name is reused, and given
// `owner` when it has another) and redirects both ways between it and `peer`.
// Running it again replaces the redirect. Returns the TAP's facts. On failure the TAP
// it made is removed.
Result<LinkFacts> CreateRedirectedTap(const std::string& peer, const std::string& tap_name,
                                      const TapOwner& owner);
Result<LinkFacts> CreateRedirectedTap(const std::string& peer, const std::string& tap_name);

// The owner of the TAP `tap_name` as the kernel reports it (IFLA_TUN_OWNER and
// IFLA_TUN_GROUP; nullopt for one that is not set). kNotFound when there is no such
// device, kInvalidArgument when it is not a TAP.
struct TapOwnership {
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
};
Result<TapOwnership> TapOwnershipOf(const std::string& tap_name);

// CNI CHECK of a redirected TAP: `tap_name` exists and is a TAP, is owned by `owner`,
// and each of it and `peer` has an ingress filter redirecting every frame to the other.
// kFailedPrecondition naming what differs otherwise.
Status CheckRedirectedTap(const std::string& peer, const std::string& tap_name,
                          const TapOwner& owner);

// Deletes the TAP (its filters go with it) and the ingress qdisc of `peer` (when
// `peer` still exists). Missing devices are fine.
Status DeleteRedirectedTap(const std::string& peer, const std::string& tap_name);

// A usable interface name: 1..15 characters, no '/', ':' or whitespace.
bool IsValidInterfaceName(const std::string& name);

}  // namespace beaconbox::cni
