#include "plugins/net-cni/netns_config.h"

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>

#include <algorithm>

#include "plugins/net-cni/rtnl_socket.h"
#include "plugins/net-cni/tap_redirect.h"

namespace beaconbox::cni {
namespace {

struct CacheFree {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using CachePtr = std::unique_ptr<nl_cache, CacheFree>;

// An IPv4 nl_addr as dotted text; "" for anything else.
std::string Ipv4Text(nl_addr* address) {
  if (address == nullptr || nl_addr_get_family(address) != AF_INET ||
      nl_addr_get_len(address) != 4) {
    return "";
  }
  char text[INET_ADDRSTRLEN] = {};
  if (::inet_ntop(AF_INET, nl_addr_get_binary_addr(address), text, sizeof(text)) == nullptr) {
    return "";
  }
  return text;
}

}  // namespace

Result<InterfaceConfig> ReadInterfaceConfig(const std::string& ifname) {
  if (!IsValidInterfaceName(ifname)) {
    return MakeError(ErrorCode::kInvalidArgument, "\"" + ifname + "\" is not an interface name");
  }
  auto facts = LinkFactsOf(ifname);
  if (!facts.ok()) {
    if (facts.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kNotFound, "there is no " + ifname + " (CNI makes it: was CNI " +
                                                 "run in this network namespace?)");
    }
    return facts.error();
  }
  InterfaceConfig config;
  config.mac = facts->mac;
  config.mtu = facts->mtu;
  if (config.mac.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     ifname +
                         " has no Ethernet address: the VM can only take an Ethernet "
                         "interface's place (CNI's bridge, ptp, macvlan make one)");
  }

  BBX_ASSIGN_OR_RETURN(NlSockPtr socket, ConnectRtnl());
  nl_cache* raw = nullptr;
  if (int rc = rtnl_addr_alloc_cache(socket.get(), &raw); rc < 0) {
    return NlError("list addresses", rc);
  }
  CachePtr addresses(raw);
  for (nl_object* object = nl_cache_get_first(addresses.get()); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* address = reinterpret_cast<rtnl_addr*>(object);
    if (rtnl_addr_get_ifindex(address) != facts->ifindex ||
        rtnl_addr_get_family(address) != AF_INET) {
      continue;
    }
    std::string text = Ipv4Text(rtnl_addr_get_local(address));
    const int prefix = rtnl_addr_get_prefixlen(address);
    if (text.empty() || prefix < 0 || prefix > 32) continue;
    config.addresses.push_back({std::move(text), static_cast<unsigned>(prefix)});
  }
  if (config.addresses.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     ifname + " has no IPv4 address (the guest is given IPv4 only; an IPv6-only " +
                         "pod network is not supported): check the CNI configuration's IPAM");
  }

  raw = nullptr;
  if (int rc = rtnl_route_alloc_cache(socket.get(), AF_INET, 0, &raw); rc < 0) {
    return NlError("list routes", rc);
  }
  CachePtr routes(raw);
  std::vector<InterfaceRoute> via_gateway;
  for (nl_object* object = nl_cache_get_first(routes.get()); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* route = reinterpret_cast<rtnl_route*>(object);
    if (rtnl_route_get_table(route) != RT_TABLE_MAIN || rtnl_route_get_type(route) != RTN_UNICAST ||
        rtnl_route_get_protocol(route) == RTPROT_KERNEL || rtnl_route_get_nnexthops(route) != 1) {
      continue;
    }
    rtnl_nexthop* hop = rtnl_route_nexthop_n(route, 0);
    if (hop == nullptr || rtnl_route_nh_get_ifindex(hop) != facts->ifindex) continue;
    nl_addr* destination = rtnl_route_get_dst(route);
    std::string network = destination == nullptr ? "0.0.0.0" : Ipv4Text(destination);
    const unsigned prefix = destination == nullptr ? 0 : nl_addr_get_prefixlen(destination);
    if (network.empty() && destination != nullptr && nl_addr_get_len(destination) == 0) {
      network = "0.0.0.0";  // the default route's empty destination
    }
    if (network.empty() || prefix > 32) continue;
    InterfaceRoute out{network + "/" + std::to_string(prefix), ""};
    if (nl_addr* gateway = rtnl_route_nh_get_gateway(hop); gateway != nullptr) {
      out.gateway = Ipv4Text(gateway);
      if (out.gateway.empty()) continue;  // not an IPv4 gateway
      via_gateway.push_back(std::move(out));
    } else {
      config.routes.push_back(std::move(out));
    }
  }
  config.routes.insert(config.routes.end(), via_gateway.begin(), via_gateway.end());
  return config;
}

}  // namespace beaconbox::cni
