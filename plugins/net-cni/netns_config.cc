#include "plugins/net-cni/netns_config.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
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

// An nl_addr of `family` (AF_INET, AF_INET6) as text; "" for anything else.
std::string AddressText(nl_addr* address, int family) {
  const unsigned length = family == AF_INET ? 4 : 16;
  if (address == nullptr || nl_addr_get_family(address) != family ||
      nl_addr_get_len(address) != length) {
    return "";
  }
  char text[INET6_ADDRSTRLEN] = {};
  if (::inet_ntop(family, nl_addr_get_binary_addr(address), text, sizeof(text)) == nullptr) {
    return "";
  }
  return text;
}

// The addresses of `ifindex` of `family`: IPv4 all, IPv6 the global ones that did
// not fail duplicate address detection.
void ReadAddresses(nl_cache* cache, int ifindex, int family, std::vector<InterfaceAddress>* out) {
  const int max_prefix = family == AF_INET ? 32 : 128;
  for (nl_object* object = nl_cache_get_first(cache); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* address = reinterpret_cast<rtnl_addr*>(object);
    if (rtnl_addr_get_ifindex(address) != ifindex || rtnl_addr_get_family(address) != family) {
      continue;
    }
    if (family == AF_INET6 && (rtnl_addr_get_scope(address) != RT_SCOPE_UNIVERSE ||
                               (rtnl_addr_get_flags(address) & IFA_F_DADFAILED) != 0)) {
      continue;
    }
    std::string text = AddressText(rtnl_addr_get_local(address), family);
    const int prefix = rtnl_addr_get_prefixlen(address);
    if (text.empty() || prefix < 0 || prefix > max_prefix) continue;
    out->push_back({std::move(text), static_cast<unsigned>(prefix)});
  }
}

// The main table's unicast routes of `family` out of `ifindex` that neither the
// kernel (from an address) nor a router advertisement made: those on the link go
// to `on_link`, those through a gateway to `via_gateway`.
void ReadRoutes(nl_cache* cache, int ifindex, int family, std::vector<InterfaceRoute>* on_link,
                std::vector<InterfaceRoute>* via_gateway) {
  const unsigned max_prefix = family == AF_INET ? 32 : 128;
  const char* any = family == AF_INET ? "0.0.0.0" : "::";
  for (nl_object* object = nl_cache_get_first(cache); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* route = reinterpret_cast<rtnl_route*>(object);
    if (rtnl_route_get_family(route) != family || rtnl_route_get_table(route) != RT_TABLE_MAIN ||
        rtnl_route_get_type(route) != RTN_UNICAST ||
        rtnl_route_get_protocol(route) == RTPROT_KERNEL ||
        rtnl_route_get_protocol(route) == RTPROT_RA || rtnl_route_get_nnexthops(route) != 1) {
      continue;
    }
    rtnl_nexthop* hop = rtnl_route_nexthop_n(route, 0);
    if (hop == nullptr || rtnl_route_nh_get_ifindex(hop) != ifindex) continue;
    nl_addr* destination = rtnl_route_get_dst(route);
    std::string network = destination == nullptr ? any : AddressText(destination, family);
    const unsigned prefix = destination == nullptr ? 0 : nl_addr_get_prefixlen(destination);
    if (network.empty() && destination != nullptr && nl_addr_get_len(destination) == 0) {
      network = any;  // the default route's empty destination
    }
    if (network.empty() || prefix > max_prefix) continue;
    InterfaceRoute out{network + "/" + std::to_string(prefix), ""};
    if (nl_addr* gateway = rtnl_route_nh_get_gateway(hop); gateway != nullptr) {
      out.gateway = AddressText(gateway, family);
      if (out.gateway.empty()) continue;  // not a gateway of this family
      via_gateway->push_back(std::move(out));
    } else {
      on_link->push_back(std::move(out));
    }
  }
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
  ReadAddresses(addresses.get(), facts->ifindex, AF_INET, &config.addresses);
  ReadAddresses(addresses.get(), facts->ifindex, AF_INET6, &config.addresses);
  if (config.addresses.empty()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     ifname + " has neither an IPv4 nor a global IPv6 address: check the CNI " +
                         "configuration's IPAM");
  }

  std::vector<InterfaceRoute> via_gateway;
  for (int family : {AF_INET, AF_INET6}) {
    raw = nullptr;
    if (int rc = rtnl_route_alloc_cache(socket.get(), family, 0, &raw); rc < 0) {
      return NlError("list routes", rc);
    }
    CachePtr routes(raw);
    ReadRoutes(routes.get(), facts->ifindex, family, &config.routes, &via_gateway);
  }
  config.routes.insert(config.routes.end(), via_gateway.begin(), via_gateway.end());
  return config;
}

}  // namespace beaconbox::cni
