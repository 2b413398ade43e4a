// An rtnetlink socket through libnl-3 and its errors, for the net-cni code that talks
// to the kernel (tap_redirect.cc, netns_config.cc): in the calling thread's network
// namespace.
#pragma once

#include <netlink/netlink.h>

#include <memory>
#include <string>

#include "common/base/result.h"

namespace beaconbox::cni {

struct NlSockFree {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
using NlSockPtr = std::unique_ptr<nl_sock, NlSockFree>;

// "<what>: <libnl's message>", kPermission (naming CAP_NET_ADMIN) for NLE_PERM.
Error NlError(const std::string& what, int rc);

// A connected NETLINK_ROUTE socket.
Result<NlSockPtr> ConnectRtnl();

}  // namespace beaconbox::cni
