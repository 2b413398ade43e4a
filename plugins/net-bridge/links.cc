#include "plugins/net-bridge/links.h"

#include <fcntl.h>
#include <linux/if_addr.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "common/base/errno_error.h"
#include "common/base/unique_fd.h"

namespace beaconbox::net {
namespace {

template <typename T, void (*Free)(T*)>
struct NlDeleter {
  void operator()(T* object) const {
    if (object != nullptr) Free(object);
  }
};
void PutLink(rtnl_link* link) { rtnl_link_put(link); }
void PutAddr(rtnl_addr* addr) { rtnl_addr_put(addr); }
void PutNlAddr(nl_addr* addr) { nl_addr_put(addr); }
void FreeCache(nl_cache* cache) { nl_cache_free(cache); }
using LinkPtr = std::unique_ptr<rtnl_link, NlDeleter<rtnl_link, PutLink>>;
using AddrPtr = std::unique_ptr<rtnl_addr, NlDeleter<rtnl_addr, PutAddr>>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlDeleter<nl_addr, PutNlAddr>>;
using CachePtr = std::unique_ptr<nl_cache, NlDeleter<nl_cache, FreeCache>>;

Error NlError(std::string_view operation, std::string_view object, int nl_error) {
  int code = nl_error < 0 ? -nl_error : nl_error;
  ErrorCode error_code = ErrorCode::kInternal;
  std::string hint;
  if (code == NLE_PERM) {
    error_code = ErrorCode::kPermission;
    hint = ": the shim needs CAP_NET_ADMIN";
  } else if (code == NLE_EXIST) {
    error_code = ErrorCode::kAlreadyExists;
  } else if (code == NLE_OBJ_NOTFOUND || code == NLE_NODEV) {
    error_code = ErrorCode::kNotFound;
  }
  return MakeError(error_code, std::string(operation) + " " + std::string(object) + ": " +
                                   nl_geterror(code) + hint);
}

// nullptr when the link does not exist.
Result<LinkPtr> GetLink(nl_sock* socket, const std::string& name) {
  rtnl_link* link = nullptr;
  int rc = rtnl_link_get_kernel(socket, 0, name.c_str(), &link);
  if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV) return LinkPtr();
  if (rc < 0) return NlError("look up device", name, rc);
  return LinkPtr(link);
}

std::string KindOf(rtnl_link* link) {
  const char* type = rtnl_link_get_type(link);
  return type != nullptr ? type : "";
}

// A fixed MAC for the bridge, so it does not follow its ports' addresses around.
NlAddrPtr BridgeMac(const std::string& name) {
  uint32_t hash = 2166136261u;
  for (unsigned char c : name) hash = (hash ^ c) * 16777619u;
  uint8_t mac[6] = {
      0x02, 0xbb, uint8_t(hash >> 24), uint8_t(hash >> 16), uint8_t(hash >> 8), uint8_t(hash)};
  return NlAddrPtr(nl_addr_build(AF_LLC, mac, sizeof(mac)));
}

}  // namespace

Result<std::unique_ptr<Links>> Links::Open() {
  nl_sock* socket = nl_socket_alloc();
  if (socket == nullptr) return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
  int rc = nl_connect(socket, NETLINK_ROUTE);
  if (rc < 0) {
    nl_socket_free(socket);
    return NlError("connect", "rtnetlink", rc);
  }
  return std::unique_ptr<Links>(new Links(socket));
}

Links::~Links() { nl_socket_free(socket_); }

Result<int> Links::EnsureBridge(const std::string& name, Ipv4 gateway, uint32_t prefix_length,
                                uint32_t mtu, Ipv6 gateway6, uint32_t prefix6_length, bool ipv4,
                                bool* added_gateway) {
  std::lock_guard lock(mutex_);
  if (added_gateway != nullptr) *added_gateway = false;
  BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket_, name));
  if (link && KindOf(link.get()) != "bridge") {
    return MakeError(ErrorCode::kAlreadyExists,
                     "device " + name + " exists and is not a bridge (it is \"" +
                         KindOf(link.get()) +
                         "\"): remove it or set the net-bridge config key bridge to another name");
  }
  if (!link) {
    LinkPtr bridge(rtnl_link_bridge_alloc());
    if (!bridge) return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
    rtnl_link_set_name(bridge.get(), name.c_str());
    rtnl_link_set_mtu(bridge.get(), mtu);
    NlAddrPtr mac = BridgeMac(name);
    rtnl_link_set_addr(bridge.get(), mac.get());
    int rc = rtnl_link_add(socket_, bridge.get(), NLM_F_CREATE | NLM_F_EXCL);
    if (rc < 0 && rc != -NLE_EXIST) return NlError("create bridge", name, rc);
    BBX_ASSIGN_OR_RETURN(link, GetLink(socket_, name));
    if (!link || KindOf(link.get()) != "bridge") {
      return MakeError(ErrorCode::kInternal,
                       "bridge " + name + " vanished or changed after creation");
    }
  }
  int ifindex = rtnl_link_get_ifindex(link.get());

  if (gateway6 != 0) BBX_RETURN_IF_ERROR(AddGateway6(ifindex, name, gateway6, prefix6_length));
  if (!ipv4) return BringUp(link.get(), name, ifindex);
  // The gateway address; an existing one is fine.
  AddrPtr address(rtnl_addr_alloc());
  uint32_t gateway_be = htonl(gateway);
  NlAddrPtr local(nl_addr_build(AF_INET, &gateway_be, sizeof(gateway_be)));
  if (!address || !local) return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
  nl_addr_set_prefixlen(local.get(), static_cast<int>(prefix_length));
  rtnl_addr_set_ifindex(address.get(), ifindex);
  rtnl_addr_set_family(address.get(), AF_INET);
  rtnl_addr_set_local(address.get(), local.get());
  uint32_t broadcast_be = htonl(gateway | (0xffffffffu >> prefix_length));
  NlAddrPtr broadcast(nl_addr_build(AF_INET, &broadcast_be, sizeof(broadcast_be)));
  rtnl_addr_set_broadcast(address.get(), broadcast.get());
  int rc = rtnl_addr_add(socket_, address.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (rc < 0 && rc != -NLE_EXIST) {
    return NlError("add address " + FormatIpv4(gateway) + " to", name, rc);
  }
  if (rc >= 0 && added_gateway != nullptr) *added_gateway = true;

  return BringUp(link.get(), name, ifindex);
}

Result<bool> Links::RemoveAddress(const std::string& name, Ipv4 address_value,
                                  uint32_t prefix_length) {
  std::lock_guard lock(mutex_);
  BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket_, name));
  if (!link) return false;
  AddrPtr address(rtnl_addr_alloc());
  uint32_t address_be = htonl(address_value);
  NlAddrPtr local(nl_addr_build(AF_INET, &address_be, sizeof(address_be)));
  if (!address || !local) return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
  nl_addr_set_prefixlen(local.get(), static_cast<int>(prefix_length));
  rtnl_addr_set_ifindex(address.get(), rtnl_link_get_ifindex(link.get()));
  rtnl_addr_set_family(address.get(), AF_INET);
  rtnl_addr_set_local(address.get(), local.get());
  rtnl_addr_set_prefixlen(address.get(), static_cast<int>(prefix_length));
  int rc = rtnl_addr_delete(socket_, address.get(), 0);
  // EADDRNOTAVAIL comes back from libnl as NLE_NOADDR: the address is gone already.
  if (rc == -NLE_NOADDR || rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV) return false;
  if (rc < 0) return NlError("remove address " + FormatIpv4(address_value) + " from", name, rc);
  return true;
}

Result<int> Links::BringUp(rtnl_link* link, const std::string& name, int ifindex) {
  if (!(rtnl_link_get_flags(link) & IFF_UP)) {
    LinkPtr change(rtnl_link_alloc());
    rtnl_link_set_flags(change.get(), IFF_UP);
    int rc = rtnl_link_change(socket_, link, change.get(), 0);
    if (rc < 0) return NlError("bring up", name, rc);
  }
  return ifindex;
}

Status Links::AddGateway6(int ifindex, const std::string& name, Ipv6 gateway6,
                          uint32_t prefix6_length) {
  uint8_t raw[16];
  Ipv6 value = gateway6;
  for (int i = 15; i >= 0; --i, value >>= 8) raw[i] = uint8_t(value);
  const Prefix6 prefix{gateway6 & ~(prefix6_length >= 128 ? Ipv6(0) : (~Ipv6(0)) >> prefix6_length),
                       prefix6_length};
  // Another device with an address in our prefix: two links would claim one network.
  nl_cache* cache = nullptr;
  int rc = rtnl_addr_alloc_cache(socket_, &cache);
  if (rc < 0) return NlError("list addresses of", "the network namespace", rc);
  std::string clash;
  for (nl_object* object = nl_cache_get_first(cache); object != nullptr && clash.empty();
       object = nl_cache_get_next(object)) {
    auto* address = reinterpret_cast<rtnl_addr*>(object);
    if (rtnl_addr_get_family(address) != AF_INET6 || rtnl_addr_get_ifindex(address) == ifindex)
      continue;
    nl_addr* local = rtnl_addr_get_local(address);
    if (local == nullptr || nl_addr_get_len(local) != 16) continue;
    Ipv6 other = 0;
    auto* bytes = static_cast<const uint8_t*>(nl_addr_get_binary_addr(local));
    for (int i = 0; i < 16; ++i) other = (other << 8) | bytes[i];
    const Prefix6 theirs{other & ~(rtnl_addr_get_prefixlen(address) >= 128
                                       ? Ipv6(0)
                                       : (~Ipv6(0)) >> rtnl_addr_get_prefixlen(address)),
                         uint32_t(rtnl_addr_get_prefixlen(address))};
    if (prefix.Overlaps(theirs)) {
      char ifname[IFNAMSIZ] = "?";
      if_indextoname(rtnl_addr_get_ifindex(address), ifname);
      clash = FormatIpv6(other) + "/" + std::to_string(theirs.prefix_length) + " on " + ifname;
    }
  }
  nl_cache_free(cache);
  if (!clash.empty()) {
    return MakeError(ErrorCode::kAlreadyExists, "config key ipv6_prefix: " + prefix.ToString() +
                                                    " overlaps " + clash +
                                                    ": choose another ipv6_prefix");
  }
  AddrPtr address(rtnl_addr_alloc());
  NlAddrPtr local(nl_addr_build(AF_INET6, raw, sizeof(raw)));
  if (!address || !local) return MakeError(ErrorCode::kExhausted, "netlink: out of memory");
  nl_addr_set_prefixlen(local.get(), static_cast<int>(prefix6_length));
  rtnl_addr_set_ifindex(address.get(), ifindex);
  rtnl_addr_set_family(address.get(), AF_INET6);
  rtnl_addr_set_local(address.get(), local.get());
  rtnl_addr_set_flags(address.get(), IFA_F_NODAD);  // no DAD wait: the prefix is ours
  rc = rtnl_addr_add(socket_, address.get(), NLM_F_CREATE | NLM_F_EXCL);
  if (rc < 0 && rc != -NLE_EXIST) {
    return NlError("add address " + FormatIpv6(gateway6) + " to", name, rc);
  }
  return Status::Ok();
}

Status Links::EnsureTap(const std::string& name, int bridge_ifindex, uint32_t mtu,
                        const std::string& owner_mark) {
  if (!IsValidInterfaceName(name)) {
    return MakeError(ErrorCode::kInvalidArgument, "bad TAP name \"" + name + "\"");
  }
  std::lock_guard lock(mutex_);
  BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket_, name));
  if (link && KindOf(link.get()) != "tun") {
    return MakeError(ErrorCode::kAlreadyExists,
                     "device " + name + " exists and is not a TAP: remove it");
  }
  if (link) {
    const char* alias = rtnl_link_get_ifalias(link.get());
    if (alias != nullptr && *alias != '\0' && owner_mark != alias) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "TAP " + name + " belongs to another network configuration (alias \"" +
                           alias + "\"): detach the container there, or delete the TAP");
    }
  }
  if (!link) {
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) return ErrnoError("open", "/dev/net/tun").Wrap("create TAP " + name);
    ifreq request{};
    std::strncpy(request.ifr_name, name.c_str(), IFNAMSIZ - 1);
    // QEMU opens it later with IFF_TAP | IFF_NO_PI (| IFF_VNET_HDR); persistence
    // keeps the device when our fd closes.
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(tun.get(), TUNSETIFF, &request) != 0) {
      return ErrnoError("TUNSETIFF", name).Wrap("create TAP");
    }
    if (::ioctl(tun.get(), TUNSETPERSIST, 1) != 0) {
      return ErrnoError("TUNSETPERSIST", name).Wrap("create TAP");
    }
    BBX_ASSIGN_OR_RETURN(link, GetLink(socket_, name));
    if (!link) return MakeError(ErrorCode::kInternal, "TAP " + name + " vanished after creation");
  }
  const char* alias = rtnl_link_get_ifalias(link.get());
  bool configured =
      rtnl_link_get_master(link.get()) == bridge_ifindex && rtnl_link_get_mtu(link.get()) == mtu &&
      (rtnl_link_get_flags(link.get()) & IFF_UP) && alias != nullptr && owner_mark == alias;
  if (!configured) {
    LinkPtr change(rtnl_link_alloc());
    rtnl_link_set_ifalias(change.get(), owner_mark.c_str());
    rtnl_link_set_master(change.get(), bridge_ifindex);
    rtnl_link_set_mtu(change.get(), mtu);
    rtnl_link_set_flags(change.get(), IFF_UP);
    int rc = rtnl_link_change(socket_, link.get(), change.get(), 0);
    if (rc < 0) return NlError("attach TAP to bridge:", name, rc);
  }
  return Status::Ok();
}

Result<bool> Links::Delete(const std::string& name) {
  std::lock_guard lock(mutex_);
  BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket_, name));
  if (!link) return false;
  int rc = rtnl_link_delete(socket_, link.get());
  if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV) return false;
  if (rc < 0) return NlError("delete device", name, rc);
  return true;
}

Result<std::vector<TapDevice>> Links::ListTaps(const std::string& prefix) {
  std::lock_guard lock(mutex_);
  nl_cache* raw_cache = nullptr;
  int rc = rtnl_link_alloc_cache(socket_, AF_UNSPEC, &raw_cache);
  if (rc < 0) return NlError("list", "devices", rc);
  CachePtr cache(raw_cache);
  std::vector<TapDevice> taps;
  for (nl_object* object = nl_cache_get_first(cache.get()); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* link = reinterpret_cast<rtnl_link*>(object);
    const char* name = rtnl_link_get_name(link);
    if (name == nullptr || !std::string_view(name).starts_with(prefix) || KindOf(link) != "tun") {
      continue;
    }
    const char* alias = rtnl_link_get_ifalias(link);
    taps.push_back(TapDevice{name, rtnl_link_get_ifindex(link), rtnl_link_get_carrier(link) != 0,
                             rtnl_link_get_master(link), alias != nullptr ? alias : ""});
  }
  return taps;
}

Result<std::optional<std::string>> Links::Alias(const std::string& name) {
  std::lock_guard lock(mutex_);
  BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket_, name));
  if (!link) return std::optional<std::string>();
  const char* alias = rtnl_link_get_ifalias(link.get());
  return std::optional<std::string>(alias != nullptr ? alias : "");
}

Result<std::string> Links::Kind(const std::string& name) {
  std::lock_guard lock(mutex_);
  BBX_ASSIGN_OR_RETURN(LinkPtr link, GetLink(socket_, name));
  if (!link) return MakeError(ErrorCode::kNotFound, "device " + name + " not found");
  return KindOf(link.get());
}

Result<bool> EnableIpForwarding(bool ipv4, bool ipv6) {
  bool changed = false;
  for (auto [on, path] : {std::pair{ipv4, "/proc/sys/net/ipv4/ip_forward"},
                          std::pair{ipv6, "/proc/sys/net/ipv6/conf/all/forwarding"}}) {
    if (!on) continue;
    std::ifstream in(path);
    char value = 0;
    if (!(in >> value)) return ErrnoError("read", path);
    if (value == '1') continue;
    UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
    if (!fd || ::write(fd.get(), "1\n", 2) != 2) {
      return ErrnoError("write", path).Wrap("enable forwarding (config enable_ip_forward)");
    }
    changed = true;
  }
  return changed;
}

}  // namespace beaconbox::net
